"""One mirror module at run time: the executor of the pure state machine's actions.

Events (heartbeats, witness answers, script ends, checker verdicts, commands, ticks) go into one
queue; a single task takes them in order, calls `mirror.step`, and executes the actions it returns
in order. Scripts run in tasks of their own and report back as events, so a slow script never
holds heartbeats or the witness rule back. Every decision is logged in the module log with the
reason the state machine gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from safekit import mirror
from safekit.arbiter.client import ArbiterClient
from safekit.config import ClusterConfig, ModuleConfig
from safekit.config.failover_rules import RuleClock
from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink, StatusCodec
from safekit.daemon.mirror_replication import ModuleReplication, cross_check
from safekit.daemon.module_executor import (
    ModuleContext,
    ModuleError,
    ModuleExecutor,
    ScriptRequest,
    Shared,
    previous_incarnation,
    record_incarnation,
)
from safekit.daemon.module_vips import ModuleVips, providers_for
from safekit.daemon.status_codec import status_from, wire_fields
from safekit.daemon.timing import Timing
from safekit.daemon.witness_probes import WitnessProber, arbiter_client, two_way_liveness, witness_mode
from safekit.host import persist
from safekit.host.paths import Paths
from safekit.membership.counters import Counters, RttStats
from safekit.membership.liveness import LanDown, LanUp, LivenessEvent, PeerLost, PeerUp
from safekit.mirror import (
    AcquireVip,
    Action,
    Announce,
    CheckerAction,
    CheckerVerdict,
    Command,
    CommandKind,
    Event,
    FenceReplication,
    KillScript,
    MirrorSettings,
    MirrorState,
    ModuleState,
    NodeStatus,
    PeerHeartbeat,
    Persist,
    PersistedRecord,
    Phase,
    QueryWitness,
    Readiness,
    ReleaseVip,
    ReplicationRole,
    RunScript,
    Script,
    ScriptOutcome,
    StartReplication,
    StopReplication,
)
from safekit.mirror import (
    PeerLost as MachinePeerLost,
)
from safekit.rfs.spec import DirSpec, RfsSpec

DEFAULT_HEARTBEAT_PORT = 4800


class MirrorModule(ModuleExecutor[MirrorState, Event, Action]):
    kind: ClassVar[str] = "mirror"
    failover_means: ClassVar[str] = "automatic takeover by the secondary"

    def __init__(self, context: ModuleContext) -> None:
        super().__init__(context)
        name, config, cluster, local_node = context.name, context.config, context.cluster, context.local_node
        key, paths, metrics = context.key, context.paths, context.metrics
        heart = config.heart
        if heart is None:
            raise ModuleError(f"module {name}: a mirror module needs <heart>")
        self.peer_node, lans = _heartbeat_lans(name, config, cluster, local_node)
        self.timing = Timing.from_heartbeat(
            min(hb.pulse for hb in heart.heartbeats), max(hb.timeout for hb in heart.heartbeats)
        )
        service = config.service
        self.settings = MirrorSettings(
            local_node=local_node,
            peer_node=self.peer_node,
            defaultprim=service.defaultprim,
            failover=service.failover,
            maxloop=service.maxloop,
            loop_interval=service.loop_interval,
            witness_configured=config.check.splitbrain is not None,
            split_brain_bound=self.timing.split_brain_bound,
            detection_skew=self.timing.detection_skew,
            peer_timeout=self.timing.timeout,
            witness_mode=witness_mode(config),
            lease_duration=self.timing.lease_duration,
        )
        self.rfs_spec = _rfs_spec(
            name, config, local_node=local_node, peer=self.peer_node, lans=lans, paths=paths
        )
        self.replication_lan = lans[0].name if lans else None
        """The heartbeat LAN the replication stream runs on (`_rfs_spec`: the first)."""
        self.state_file = paths.module_var(name) / "state.json"
        self._app_record = paths.module_var(name) / "started.json"
        self.persisted = cross_check(_load_record(self.state_file), self.rfs_spec)
        self.state = mirror.initial_state(self.settings, self.persisted)
        self.resources.update({f"heartbeat.{lan.name}": "init" for lan in lans})
        if config.check.splitbrain is not None:
            self.resources["splitbrain.witness"] = "init"
        self.link = HeartbeatLink(
            module=name,
            local_node=local_node,
            key=key,
            lans=lans,
            codec=StatusCodec(wire_fields, status_from),
            on_status=self._on_peer_status,
            on_liveness=self._on_liveness,
            previous_incarnation=previous_incarnation(paths, name),
            two_way=two_way_liveness(config),
        )
        record_incarnation(paths, name, self.link.incarnation)
        self.vips = ModuleVips(
            providers_for(config, self.timing),
            self.log,
            self.submit,
            self.settings.split_brain_bound,
            observe=lambda provider, operation, outcome, took: metrics.vip_duration.labels(
                name, provider, operation, outcome
            ).observe(took),
        )
        metrics.add_cloud_calls(name, self.vips.cloud_calls)
        self._arbiter: ArbiterClient | None = arbiter_client(config, key, local_node)
        self.witness = (
            WitnessProber(
                name,
                config,
                self.settings,
                self.timing,
                pinger=self.pinger,
                arbiter=self._arbiter,
                vips=self.vips,
                state=lambda: self.state,
                submit=self.submit,
                resources=self.resources,
                log=self.log,
            )
            if config.check.splitbrain is not None
            else None
        )
        if self.witness is not None:
            seen = self.witness.seen
            metrics.add_witness(name, lambda: seen)
        self._last_peer_status: NodeStatus | None = None
        self.replication = ModuleReplication(
            self.rfs_spec,
            config,
            self.settings,
            log=self.log,
            resources=self.resources,
            submit=self.submit,
            state=lambda: self.state,
        )
        if self.rfs_spec is not None:
            metrics.add_replication(name, lambda: self.replication.figures)
        metrics.add_heartbeat_source(
            name,
            self._heartbeat_metrics,
            lambda: (self.name, self.link.lateness_p99(), self.link.lateness_histogram),
        )
        self._show_state()

    # ------------------------------------------------------------------ life cycle
    async def start(self, *, boot: bool) -> None:
        """Open the heartbeat sockets and start the event loop; with `boot`, start the module too."""
        self.log.info(
            "module %s loaded: node %s, peer %s, heartbeat pulse %.3f s timeout %.3f s, takeover "
            "after %.2f s%s",
            self.name,
            self.local_node,
            self.peer_node,
            self.timing.pulse,
            self.timing.timeout,
            self.timing.arbitrated_takeover_after
            if self._arbiter is not None
            else self.timing.takeover_after,
            self._describe_witness(),
        )
        await self._clean_up_after_crash()
        await self.link.start()
        self._start_tasks()
        if self.witness is not None:
            self._spawn(self.witness.run(), "witness")
        if self.vips.expiring:
            self._spawn(self.vips.renew_loop(lambda: self.state.vip_held), "vip-lifetime")
        if self.config.failover.rules:
            self._spawn(self._failover_rules_loop(), "rules")
        if boot:
            self.submit(Command(CommandKind.START, time.monotonic()))

    async def _clean_up_after_crash(self) -> None:
        """Before the first heartbeat: undo what a safekitd that died (killed, crashed) left running,
        whether or not its service manager killed its children - the VIP, the application its
        scripts started, its replication process, the mounts. Each step is logged."""
        # Nothing may hold the VIP before the state machine says so.
        await self.vips.release_leftovers()
        await self._stop_orphan_application()
        await asyncio.to_thread(self.replication.end_orphan)

    async def _stop_orphan_application(self) -> None:
        """The application a dead safekitd started (recorded when its start script ran) is stopped
        with the role's stop script, forced, as SafeKit does on a restart after a crash."""
        started = _load_started(self._app_record)
        if started is None:
            return
        stop = _STOP_FOR_START[started]
        if self.scripts is None:
            await asyncio.to_thread(_forget_started, self._app_record)
            return
        self.log.warning(
            "the previous safekitd died with %s started (%s ran): %s force runs before anything else",
            "the primary's application" if stop is Script.STOP_PRIM else "the secondary's application",
            started,
            stop,
        )
        was = str(self.persisted.state) if self.persisted is not None else "STOP"
        result = await self.scripts.run(stop, was, "STOP", "stop", forced=True)
        if result.ok:
            self.log.info("left by the dead safekitd: %s force done", stop)
        else:
            self.log.error(
                "left by the dead safekitd: %s force failed (%s): the application may still run",
                stop,
                result.describe(),
            )
        await asyncio.to_thread(_forget_started, self._app_record)

    async def shutdown(self) -> None:
        """The daemon is stopping: stop the module (scripts, VIP), then close everything."""
        await self._stop_and_cancel()
        if self.witness is not None:
            await self.witness.cancel()
        await self.replication.stop()
        await self.link.close()
        if self._arbiter is not None:
            self._arbiter.close()

    def _takeover_after(self) -> float:
        if self._arbiter is not None:
            return self.timing.arbitrated_takeover_after
        return self.timing.takeover_after

    def _describe_witness(self) -> str:
        splitbrain = self.config.check.splitbrain
        if splitbrain is None:
            return ", no split-brain witness (a split gives two primaries)"
        if self._arbiter is not None:
            return (
                f", split-brain arbitrator {splitbrain.witnesses[0]}:{splitbrain.port} "
                f"(lease {self.settings.lease_duration:g} s)"
            )
        return (
            f", ping witness {' '.join(splitbrain.witnesses)} (safe while the nodes share the VIP's "
            "LAN; see docs/mirror.md)"
        )

    # ------------------------------------------------------------------ the machine
    def _transition(self, event: Event | Shared) -> tuple[MirrorState, Sequence[Action]]:
        transition = mirror.step(self.settings, self.state, event)
        return transition.state, transition.actions

    def _next_deadline(self) -> float | None:
        return mirror.next_deadline(self.settings, self.state)

    def _command_event(self, kind: str, now: float) -> Event | None:
        try:
            return Command(CommandKind(kind), now)
        except ValueError:
            return None

    def _refusal(self, kind: str) -> str:
        return f"{kind} is not a mirror module command"

    def _checker_applies(self, when: str) -> bool:
        return mirror.checker_applies(self.state, when)

    def _errd_classes(self) -> frozenset[str]:
        return mirror.errd_classes(self.state)

    def _holds_vips(self) -> bool:
        return self.state.vip_held

    def _script_running(self) -> bool:
        return self.state.running is not None

    @property
    def ready(self) -> bool:
        """Serving as the primary and ready: what the health endpoint answers 200 for."""
        return (
            self.state.module_state in (ModuleState.PRIM, ModuleState.ALONE)
            and self.state.readiness is Readiness.READY
        )

    @property
    def stopped(self) -> bool:
        return self.state.phase is Phase.STOPPED

    @property
    def failover_enabled(self) -> bool:
        return self.settings.failover

    def _set_failover(self, on: bool) -> None:
        self.settings = dataclasses.replace(self.settings, failover=on)

    # ------------------------------------------------------------------ inputs
    def _on_peer_status(self, status: NodeStatus, now: float) -> None:
        # Only what changes is news for the state machine: an unchanged status every pulse would
        # cost a full step for nothing (liveness is tracked by membership, not here).
        if status != self._last_peer_status:
            self._last_peer_status = status
            self.submit(PeerHeartbeat(status, now))
        self.replication.on_peer_status(status, now)

    def _on_liveness(self, event: LivenessEvent, now: float) -> None:
        if isinstance(event, LanDown):
            self.resources[f"heartbeat.{event.lan}"] = "down"
            if event.unanswered:
                self.log.warning(
                    "heartbeat.%s down: %s no longer hears this node on LAN %s (its heartbeats arrive "
                    "but echo none of ours: a one-way link)",
                    event.lan,
                    event.peer,
                    event.lan,
                )
            else:
                self.log.warning(
                    "heartbeat.%s down: no heartbeat from %s on LAN %s", event.lan, event.peer, event.lan
                )
            # the stream's LAN gone while the peer is heard on another: do not wait for sendtimeout
            # (the peer lost on every LAN is PeerLost's, with its own reason)
            if (
                self.rfs_spec is not None
                and event.lan == self.replication_lan
                and self.link.receiver.liveness.peer_is_up(event.peer)
            ):
                self.replication.replication_lan_lost(event.lan)
        elif isinstance(event, LanUp):
            self.resources[f"heartbeat.{event.lan}"] = "up"
            self.log.info("heartbeat.%s up: %s heard on LAN %s", event.lan, event.peer, event.lan)
        elif isinstance(event, PeerLost):
            heard, unanswered = self.link.receiver.liveness.last_contact(event.peer)
            if heard is not None:  # the failover report's detection step: last contact -> now
                lans = ", ".join(self.link.receiver.liveness.lans_of(event.peer))
                what = (
                    f"{event.peer} no longer hears this node on {lans}"
                    if unanswered
                    else f"no heartbeat from {event.peer} on {lans}"
                )
                self.journal.detection(what, max(0.0, now - heard))
            self._last_peer_status = None  # the next heartbeat, whatever it says, is news
            self.submit(MachinePeerLost(now))
            self.replication.peer_lost()
        elif isinstance(event, PeerUp):
            self.log.info("peer %s is back", event.peer)

    # ------------------------------------------------------------------ actions
    async def _execute_own(self, action: Action) -> None:  # noqa: PLR0912 - one case per action
        match action:
            case Announce(status=status):
                self.link.announce(status)
            case Persist(record=record):
                # fsync in a thread: under I/O load it can take a second, and the heartbeat and
                # witness tasks must go on meanwhile (a starved witness loop fences a new primary)
                await asyncio.to_thread(persist.write_json, self.state_file, _record_json(record))
            case RunScript():
                self._run_script(action)
            case KillScript(run_id=run_id):
                self._kill_script(run_id)
            case AcquireVip():
                await self.vips.acquire(action)
            case ReleaseVip():
                await self.vips.release(action)
            case StartReplication(role=role):
                self.replication.began(role)
                if self.rfs_spec is not None:
                    await self.replication.start(action)
                elif role is ReplicationRole.SECONDARY and self.state.peer is not None:
                    self._on_peer_status(self.state.peer, time.monotonic())
            case StopReplication():
                self.replication.ended()
                await self.replication.stop()
            case FenceReplication():
                self.replication.fence()
            case QueryWitness():
                if self.witness is not None:
                    self.witness.wake.set()

    def _after_actions(self) -> None:
        self.replication.after_step()

    async def _script_starting(self, script: Script) -> None:
        if script in _STOP_FOR_START:
            # What a restarted safekitd must stop if this one dies while it runs.
            await asyncio.to_thread(_record_started, self._app_record, script)

    async def _script_ended(self, action: ScriptRequest, outcome: ScriptOutcome) -> None:
        if action.script.stops_application and (outcome is ScriptOutcome.OK or action.forced):
            await asyncio.to_thread(_forget_started, self._app_record)

    # ------------------------------------------------------------------ checkers
    async def _failover_rules_loop(self) -> None:
        """`<failover>` rules: every `period`, a rule whose condition has held for `handle_time` fires.

        A rule fires once per time its condition becomes true (it fires again only after the
        condition was false once), so a lasting condition does not count toward maxloop forever.
        """
        failover = self.config.failover
        clock = RuleClock(failover.handle_time)
        while True:
            await asyncio.sleep(failover.period)
            if not self.checkers_enabled:  # `checker off`: rules count again from `checker on`
                clock = clock.reset()
                continue
            now = time.monotonic()
            clock, firings = clock.evaluate(failover.rules, self.status(verbose=True)["resources"], now)
            for firing in firings:
                rule = firing.rule
                self.log.warning(
                    "failover rule %s: condition true for %.1f s: %s()",
                    rule.label,
                    firing.held_for,
                    rule.action,
                )
                if rule.action == "swap":
                    if self.state.module_state in (ModuleState.PRIM, ModuleState.ALONE):
                        self.submit(Command(CommandKind.SWAP, now))
                else:
                    self.submit(
                        CheckerVerdict(CheckerAction(rule.action), f"rule.{rule.label}", now, "failover rule")
                    )

    # ------------------------------------------------------------------ replication
    def request_fullsync(self) -> str:
        return self.replication.request_fullsync()

    async def rfs_verify(self, timeout: float = 600.0) -> dict[str, Any]:
        return await self.replication.verify(self.name, timeout)

    # ------------------------------------------------------------------ views
    def status(self, verbose: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {**self._status_head(), "peer": self.peer_node}
        if verbose:
            resources = dict(self.resources)
            resources["rfs.uptodate"] = "up" if self.state.uptodate else "down"
            view = self.replication.view()
            if view is not None:
                data["replication"] = view
            data["resources"] = resources
            if self.witness is not None:  # this node's view of it (daemon/witness_probes.py)
                data["witness"] = self.witness.seen.view(time.monotonic())
            data["generation"] = self.state.generation
            data["peer_state"] = str(self.state.peer.state) if self.state.peer else None
            data["vips"] = self.vips.addresses
            data["controls"] = self.controls()
        return data

    async def relink(self, cluster: ClusterConfig, lans: Sequence[str]) -> None:
        """A cluster.xml reload moved heartbeat networks of this running module (none that carries
        its replication: daemon/cluster_reload.py decides): its link binds them again at the new
        addresses; its state, peer and replication are untouched."""
        _, moved = _heartbeat_lans(self.name, self.config, cluster, self.local_node)
        chosen = [lan for lan in moved if lan.name in lans]
        await self.link.relink(chosen)
        for lan in chosen:
            self.log.info(
                "cluster.xml reloaded: heartbeats on %s now from %s to %s (no restart)",
                lan.name,
                lan.local_address,
                lan.peer_address,
            )

    def _heartbeat_metrics(self) -> Iterable[tuple[str, str, str, Counters, RttStats | None]]:
        for lan in self.link.lans:
            yield (
                self.name,
                self.peer_node,
                lan,
                self.link.receiver.counters(lan),
                self.link.receiver.rtt(self.peer_node, lan),
            )


def _heartbeat_lans(
    name: str, config: ModuleConfig, cluster: ClusterConfig, local_node: str
) -> tuple[str, list[HeartbeatLan]]:
    assert config.heart is not None
    port = config.heart.port or cluster.port or DEFAULT_HEARTBEAT_PORT
    peers: set[str] = set()
    lans: list[HeartbeatLan] = []
    for hb in config.heart.heartbeats:
        lan = cluster.lan(hb.name)
        if lan is None:
            raise ModuleError(f"module {name}: heartbeat LAN {hb.name!r} is not in cluster.xml")
        me = lan.node(local_node)
        if me is None:
            raise ModuleError(
                f"module {name}: this node ({local_node}) is not on LAN {hb.name!r} of cluster.xml"
            )
        others = [n for n in lan.nodes if n.name != local_node]
        if len(others) != 1:
            raise ModuleError(
                f"module {name}: a mirror has exactly two nodes, LAN {hb.name!r} has {len(lan.nodes)}"
            )
        peers.add(others[0].name)
        peer_on_lan = ((others[0].name, others[0].addr),)
        lans.append(HeartbeatLan(hb.name, me.addr, peer_on_lan, port, hb.pulse, hb.timeout))
    if len(peers) != 1:
        raise ModuleError(f"module {name}: the heartbeat LANs name different peers: {sorted(peers)}")
    return peers.pop(), lans


REPLICATION_PORT_OFFSET = 1
"""The replication TCP port is the module's heartbeat port + 1."""


def _rfs_spec(
    name: str, config: ModuleConfig, *, local_node: str, peer: str, lans: list[HeartbeatLan], paths: Paths
) -> RfsSpec | None:
    rfs = config.rfs
    if rfs is None:
        return None
    dirs: list[DirSpec] = []
    for rd in rfs.replicated:
        if not os.path.isabs(rd.dir):
            raise ModuleError(f"module {name}: <replicated dir={rd.dir!r}> must be an absolute path")
        dirs.append(
            DirSpec(
                rd.dir.rstrip("/") or "/",
                tuple(n.path for n in rd.notreplicated if n.path),
                tuple(n.regexpath for n in rd.notreplicated if n.regexpath),
            )
        )
    if not dirs:
        raise ModuleError(f"module {name}: <rfs> has no <replicated dir>")
    lan = lans[0]  # the first heartbeat LAN carries the replication stream
    return RfsSpec(
        module=name,
        node=local_node,
        peer=peer,
        dirs=tuple(dirs),
        local_addr=lan.local_address,
        peer_addr=lan.peer_address,
        port=lan.port + REPLICATION_PORT_OFFSET,
        key_file=str(paths.cluster_key),
        state_dir=str(paths.module_var(name) / "rfs"),
        async_mode=rfs.async_mode,
        sendtimeout=rfs.sendtimeout,
        writeback=rfs.writeback,
    )


_STOP_FOR_START = {
    Script.START_PRIM: Script.STOP_PRIM,
    Script.START_SECOND: Script.STOP_SECOND,
}
"""The stop script that undoes what a start script started (run forced after a daemon crash)."""


def _record_started(path: Path, script: Script) -> None:
    persist.write_json(path, {"started": str(script)})


def _forget_started(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _load_started(path: Path) -> Script | None:
    """The start script a previous safekitd ran without running its stop script since."""
    try:
        data = persist.read_json(path)
        script = Script(str(data["started"])) if isinstance(data, dict) else None
    except (ValueError, KeyError):
        return None  # corrupt: nothing known to stop (the stop scripts' own checks remain)
    return script if script in _STOP_FOR_START else None


def _record_json(record: PersistedRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    data["state"] = str(record.state)
    return data


def _optional_int(value: Any) -> int | None:
    """A field records written before it lack (ADR 0045): None, and the machine knows what it stood for."""
    return None if value is None else int(value)


def _load_record(path: Any) -> PersistedRecord | None:
    try:
        data = persist.read_json(path)
    except ValueError:
        return None  # a corrupt record: start as if new (STOP, not up to date), and say so below
    if not data:
        return None
    try:
        return PersistedRecord(
            state=ModuleState(data["state"]),
            last_primary=data.get("last_primary"),
            generation=int(data["generation"]),
            uptodate=bool(data["uptodate"]),
            peer_generation_seen=int(data.get("peer_generation_seen", 0)),
            generation_confirmed=_optional_int(data.get("generation_confirmed")),
            peer_confirmed_seen=_optional_int(data.get("peer_confirmed_seen")),
            forced_base=_optional_int(data.get("forced_base")),
            shared_generation=_optional_int(data.get("shared_generation")),
        )
    except (KeyError, ValueError, TypeError):
        return None
