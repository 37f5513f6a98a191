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
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safekit import mirror
from safekit.arbiter.client import ArbiterClient
from safekit.checkers import errd
from safekit.checkers.icmp import Pinger
from safekit.config import ClusterConfig, CustomCheck, ModuleConfig
from safekit.config.failover_rules import RuleClock
from safekit.daemon.checker_tasks import checker_specs, run_checker, run_custom
from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink, StatusCodec
from safekit.daemon.metrics import Metrics
from safekit.daemon.mirror_replication import LOG_LEVELS, ModuleReplication, cross_check
from safekit.daemon.module_parts import check_actions, next_item, script_runner
from safekit.daemon.module_vips import ModuleVips, providers_for
from safekit.daemon.status_codec import status_from, wire_fields
from safekit.daemon.timing import Timing
from safekit.daemon.witness_probes import WitnessProber, arbiter_client, witness_mode
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
    CommandReply,
    Event,
    FenceReplication,
    KillScript,
    Log,
    MirrorSettings,
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
    ResourceUp,
    RunScript,
    ScriptDone,
    ScriptOutcome,
    StartReplication,
    StopReplication,
    Tick,
)
from safekit.mirror import (
    PeerLost as MachinePeerLost,
)
from safekit.mirror import Script as MachineScript
from safekit.rfs.spec import DirSpec, RfsSpec
from safekit.scripts import Script, ScriptRunner

DEFAULT_HEARTBEAT_PORT = 4800
"""A cloud provider waits for the API's long-running operations (two of them to move an IP)."""
_BOOT_INTENT = {
    CommandKind.START: True,
    CommandKind.PRIM: True,
    CommandKind.SECOND: True,
    CommandKind.PRIMFORCE: True,
    CommandKind.STOPSTART: True,
    CommandKind.STOP: False,
    CommandKind.FORCESTOP: False,
}


class ModuleError(Exception):
    """A module that cannot be loaded as configured; the message says what to change."""


@dataclasses.dataclass
class _Queued:
    event: Event
    reply: asyncio.Future[CommandReply] | None = None


class MirrorModule:
    kind = "mirror"

    def __init__(
        self,
        *,
        name: str,
        config: ModuleConfig,
        cluster: ClusterConfig,
        local_node: str,
        key: bytes,
        paths: Paths,
        metrics: Metrics,
        pinger: Pinger,
    ) -> None:
        self.name = name
        self.config = config
        self.paths = paths
        self.metrics = metrics
        self.pinger = pinger
        self.local_node = local_node
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
        self.state_file = paths.module_var(name) / "state.json"
        self._app_record = paths.module_var(name) / "started.json"
        self.persisted = cross_check(_load_record(self.state_file), self.rfs_spec)
        self.state = mirror.initial_state(self.settings, self.persisted)
        self.log = _module_logger(name, paths)
        self.resources: dict[str, str] = {f"heartbeat.{lan.name}": "init" for lan in lans}
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
            previous_incarnation=_load_incarnation(paths.module_var(name) / "incarnation"),
        )
        persist.write_json(paths.module_var(name) / "incarnation", {"incarnation": self.link.incarnation})
        self.vips = ModuleVips(
            providers_for(config, self.timing), self.log, self.submit, self.settings.split_brain_bound
        )
        self.scripts: ScriptRunner | None = script_runner(name, config, paths)
        self._checker_specs = checker_specs(config.check, pinger)
        self._checks: dict[str, tuple[str, str]] = check_actions(config, self._checker_specs)
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._script_tasks: dict[int, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._arbiter: ArbiterClient | None = arbiter_client(config, key, local_node)
        self.witness = (
            WitnessProber(
                name,
                config,
                self.settings,
                self.timing,
                pinger=pinger,
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
        self._last_peer_status: NodeStatus | None = None
        self._last_shown: tuple[ModuleState, Readiness] | None = None
        self.replication = ModuleReplication(
            self.rfs_spec,
            config,
            self.settings,
            log=self.log,
            resources=self.resources,
            submit=self.submit,
            state=lambda: self.state,
        )
        # `safekit errd|checker on|off`: run-time switches, back on when the daemon starts again.
        self.errd_enabled = True
        self.checkers_enabled = True
        metrics.add_heartbeat_source(
            name, self._heartbeat_metrics, lambda: (self.name, self.link.lateness_p99())
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
        self._tasks.append(asyncio.create_task(self._event_loop(), name=f"{self.name}-events"))
        if self.witness is not None:
            self._tasks.append(asyncio.create_task(self.witness.run(), name=f"{self.name}-witness"))
        if self.vips.expiring:
            self._tasks.append(
                asyncio.create_task(
                    self.vips.renew_loop(lambda: self.state.vip_held), name=f"{self.name}-vip-lifetime"
                )
            )
        for spec in self._checker_specs:
            self._tasks.append(asyncio.create_task(run_checker(spec, self.set_resource), name=spec.resource))
        for custom in self.config.check.custom:
            self._tasks.append(
                asyncio.create_task(self._custom_checker(custom), name=f"custom.{custom.ident}")
            )
        if self.config.failover.rules:
            self._tasks.append(asyncio.create_task(self._failover_rules_loop(), name=f"{self.name}-rules"))
        if self.config.errd is not None and self.config.errd.procs:
            self._tasks.append(asyncio.create_task(self._errd_loop(), name=f"{self.name}-errd"))
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
            "the primary's application" if stop is MachineScript.STOP_PRIM else "the secondary's application",
            started,
            stop,
        )
        was = str(self.persisted.state) if self.persisted is not None else "STOP"
        result = await self.scripts.run(Script(stop.value), was, "STOP", "stop", forced=True)
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
        if not self._stopped():
            reply = await self.command(CommandKind.STOP, operator=False)
            self.log.info("daemon shutdown: %s", reply.reason)
            await self.wait_for(self._stopped, timeout=self._stop_budget())
        for task in [*self._tasks, *self._script_tasks.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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

    def _stopped(self) -> bool:
        return self.state.phase is Phase.STOPPED

    @property
    def stopped(self) -> bool:
        """STOP and settled: no script runs, nothing is held (what uninstall and config need)."""
        return self._stopped()

    def _stop_budget(self) -> float:
        user = self.config.user
        return 10.0 + (2 * (user.nicestoptimeout + user.forcestoptimeout) if user else 0.0)

    async def wait_for(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # ------------------------------------------------------------------ inputs
    def submit(self, event: Event) -> None:
        self._queue.put_nowait(_Queued(event))

    async def command(self, kind: CommandKind, *, operator: bool = True) -> CommandReply:
        """Run an operator command. An operator's start or stop is also what `boot="auto"` follows."""
        future: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Queued(Command(kind, time.monotonic()), future))
        reply = await future
        if operator and reply.accepted and kind in _BOOT_INTENT:
            persist.write_json(self._boot_file, {"start_at_boot": _BOOT_INTENT[kind]})
        return reply

    @property
    def _boot_file(self) -> Path:
        return self.paths.boot_file(self.name)

    @property
    def start_at_boot(self) -> bool:
        """Whether the operator left the module started (`boot="auto"` restarts it with the daemon)."""
        try:
            data = persist.read_json(self._boot_file)
        except ValueError:
            return False
        return bool(data and data.get("start_at_boot"))

    # ------------------------------------------------------------------ run-time switches
    def set_errd(self, on: bool) -> str:
        """`safekit errd on|off`: process monitoring acts (on) or only reports (off)."""
        before, self.errd_enabled = self.errd_enabled, on
        return self._switched("errd", before, on, "process monitoring")

    def set_checkers(self, on: bool) -> str:
        """`safekit checker on|off`: checkers and failover rules act (on) or only report (off).

        Heartbeats and the split-brain witness are not checkers: they protect the data and always
        run. A checker still down when checking is turned on acts at once.
        """
        before, self.checkers_enabled = self.checkers_enabled, on
        if on and not before:
            now = time.monotonic()
            for resource, (when, action) in self._checks.items():
                if self.resources.get(resource) == "down" and mirror.checker_applies(self.state, when):
                    self.submit(CheckerVerdict(CheckerAction(action), resource, now, "checker reports down"))
        return self._switched("checker", before, on, "checkers and failover rules")

    def set_failover(self, on: bool) -> str:
        """`safekit failover on|off`: whether the secondary takes over when the primary is lost."""
        before = self.settings.failover
        self.settings = dataclasses.replace(self.settings, failover=on)
        return self._switched("failover", before, on, "automatic takeover by the secondary")

    def _switched(self, switch: str, before: bool, on: bool, what: str) -> str:
        word = "on" if on else "off"
        if before == on:
            return f"{self.name}: {switch} already {word}"
        until = "" if on else f" until 'safekit {switch} on' or a restart of safekitd"
        done = f"{what} {'enabled' if on else 'disabled'}{until}"
        self.log.warning("operator: %s %s: %s", switch, word, done)
        return f"{self.name}: {switch} {word} ({done})"

    def controls(self) -> dict[str, str]:
        return {
            "errd": "on" if self.errd_enabled else "off",
            "checker": "on" if self.checkers_enabled else "off",
            "failover": "on" if self.settings.failover else "off",
        }

    def set_resource(self, resource: str, value: str) -> None:
        """A checker reports a resource state (probes here, custom checkers through `safekit set`)."""
        before = self.resources.get(resource)
        self.resources[resource] = value
        if before == value:
            return
        self.log.info("resource %s: %s -> %s", resource, before or "unknown", value)
        check = self._checks.get(resource)
        if check is None:
            return
        when, action = check
        now = time.monotonic()
        if value == "up":
            self.submit(ResourceUp(resource, now))
        elif value == "down" and mirror.checker_applies(self.state, when):
            if not self.checkers_enabled:
                self.log.warning("checker off: %s down, action %s not taken", resource, action)
                return
            self.submit(CheckerVerdict(CheckerAction(action), resource, now, "checker reports down"))

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
            self.log.warning(
                "heartbeat.%s down: no heartbeat from %s on LAN %s", event.lan, event.peer, event.lan
            )
        elif isinstance(event, LanUp):
            self.resources[f"heartbeat.{event.lan}"] = "up"
            self.log.info("heartbeat.%s up: %s heard on LAN %s", event.lan, event.peer, event.lan)
        elif isinstance(event, PeerLost):
            self._last_peer_status = None  # the next heartbeat, whatever it says, is news
            self.submit(MachinePeerLost(now))
            self.replication.peer_lost()
        elif isinstance(event, PeerUp):
            self.log.info("peer %s is back", event.peer)

    # ------------------------------------------------------------------ the loop
    async def _event_loop(self) -> None:
        while True:
            deadline = mirror.next_deadline(self.settings, self.state)
            item = await next_item(self._queue, deadline, lambda now: _Queued(Tick(now)))
            try:
                await self._step(item)
            except Exception:  # a bug must not silently stop the module: log it loudly, go on
                self.log.exception("internal error while handling %s", type(item.event).__name__)
                if item.reply is not None and not item.reply.done():
                    item.reply.set_exception(RuntimeError("internal error; see the module log"))

    async def _step(self, item: _Queued) -> None:
        before = self.state
        transition = mirror.step(self.settings, self.state, item.event)
        self.state = transition.state
        replies: list[CommandReply] = []
        for action in transition.actions:
            await self._execute(action, replies)
        self.replication.after_step()
        if item.reply is not None and not item.reply.done():
            reply = replies[0] if replies else CommandReply(str(item.event), True, self.state.reason)
            item.reply.set_result(reply)
        # The state machine logs every displayed change itself ("OLD (r) -> NEW (r): reason").
        if (before.module_state, before.readiness) != (self.state.module_state, self.state.readiness):
            if before.module_state != self.state.module_state:
                self.metrics.transitions.labels(self.name, before.module_state, self.state.module_state).inc()
            self._show_state()

    def _show_state(self) -> None:
        self.metrics.set_state(self.name, str(self.state.module_state), self.ready)

    @property
    def ready(self) -> bool:
        """Serving as the primary and ready: what the health endpoint answers 200 for."""
        return (
            self.state.module_state in (ModuleState.PRIM, ModuleState.ALONE)
            and self.state.readiness is Readiness.READY
        )

    async def _execute(self, action: Action, replies: list[CommandReply]) -> None:  # noqa: PLR0912
        match action:
            case Log(reason=reason, level=level):
                self.log.log(LOG_LEVELS[level], "%s", reason)
            case Announce(status=status):
                self.link.announce(status)
            case Persist(record=record):
                # fsync in a thread: under I/O load it can take a second, and the heartbeat and
                # witness tasks must go on meanwhile (a starved witness loop fences a new primary)
                await asyncio.to_thread(persist.write_json, self.state_file, _record_json(record))
            case RunScript():
                self._run_script(action)
            case KillScript(run_id=run_id):
                task = self._script_tasks.pop(run_id, None)
                if task is not None:
                    task.cancel()
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
            case CommandReply():
                replies.append(action)

    # ------------------------------------------------------------------ actions
    def _run_script(self, action: RunScript) -> None:
        runner = self.scripts

        async def run() -> None:
            outcome, detail = ScriptOutcome.OK, "no <user>: no script runs"
            if runner is not None and action.script in _STOP_FOR_START:
                # What a restarted safekitd must stop if this one dies while it runs.
                await asyncio.to_thread(_record_started, self._app_record, action.script)
            if runner is not None:
                result = await runner.run(
                    Script(action.script.value),
                    str(action.current),
                    str(action.next),
                    str(action.action),
                    forced=action.forced,
                )
                detail = result.describe()
                if result.timed_out:
                    outcome = ScriptOutcome.TIMED_OUT
                elif not result.ok:
                    outcome = ScriptOutcome.FAILED
            if action.script.is_stop_script and (outcome is ScriptOutcome.OK or action.forced):
                await asyncio.to_thread(_forget_started, self._app_record)
            self._script_tasks.pop(action.run_id, None)
            self.submit(ScriptDone(action.run_id, action.script, outcome, time.monotonic(), detail))

        self.log.info("running %s %s", action.script, " ".join(action.argv()))
        self._script_tasks[action.run_id] = asyncio.create_task(run(), name=f"{self.name}-{action.script}")

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

    async def _custom_checker(self, custom: CustomCheck) -> None:
        userbin = self.paths.module_dir(self.name) / "bin"
        program = custom.exec if custom.exec.startswith("/") else str(userbin / custom.exec)
        command = shlex.join([program]) + (f" {custom.arg}" if custom.arg else "")
        env = self.scripts.environment.variables() if self.scripts else {}
        # `safekit set` must be found by the checker whatever PATH the daemon was started with.
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["SAFEKIT_CHECKER"] = f"custom.{custom.ident}"
        await run_custom(f"custom.{custom.ident}", command, env=env, cwd=userbin, log=self.log)

    async def _errd_loop(self) -> None:
        errd_cfg = self.config.errd
        assert errd_cfg is not None
        rules = [
            errd.ProcessRule(
                ident=p.name or p.nameregex or "proc",
                name=p.name,
                nameregex=p.nameregex,
                argregex=p.argregex,
                atleast=p.atleast,
                atmax=p.atmax,
                action=p.action,
            )
            for p in errd_cfg.procs
        ]
        classes = [p.process_class for p in errd_cfg.procs]
        while True:
            await asyncio.sleep(errd_cfg.polltimer)
            active = mirror.errd_classes(self.state)
            if not active:
                continue
            processes = await asyncio.to_thread(errd.scan)
            for verdict, cls in zip(errd.evaluate(rules, processes), classes, strict=True):
                if cls in active:
                    self._errd_verdict(verdict)

    def _errd_verdict(self, verdict: errd.ProcessVerdict) -> None:
        resource = f"proc.{verdict.rule.ident}"
        self.resources[resource] = "up" if verdict.ok else "down"
        if verdict.ok or not self.errd_enabled:  # `errd off`: reported in `state -v`, never acted on
            return
        if verdict.rule.action == "noaction":
            self.log.warning("errd: %s (action noaction)", verdict.reason)
            return
        self.log.warning("errd: %s: action %s", verdict.reason, verdict.rule.action)
        action = CheckerAction(verdict.rule.action)
        self.submit(CheckerVerdict(action, resource, time.monotonic(), verdict.reason))

    # ------------------------------------------------------------------ replication
    def request_fullsync(self) -> str:
        return self.replication.request_fullsync()

    async def rfs_verify(self, timeout: float = 600.0) -> dict[str, Any]:
        return await self.replication.verify(self.name, timeout)

    # ------------------------------------------------------------------ views
    def status(self, verbose: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "state": str(self.state.module_state),
            "readiness": str(self.state.readiness),
            "reason": self.state.reason,
            "node": self.local_node,
            "peer": self.peer_node,
        }
        if verbose:
            resources = dict(self.resources)
            resources["rfs.uptodate"] = "up" if self.state.uptodate else "down"
            view = self.replication.view()
            if view is not None:
                data["replication"] = view
            data["resources"] = resources
            data["generation"] = self.state.generation
            data["peer_state"] = str(self.state.peer.state) if self.state.peer else None
            data["vips"] = self.vips.addresses
            data["controls"] = self.controls()
        return data

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
    )


_STOP_FOR_START = {
    MachineScript.START_PRIM: MachineScript.STOP_PRIM,
    MachineScript.START_SECOND: MachineScript.STOP_SECOND,
}
"""The stop script that undoes what a start script started (run forced after a daemon crash)."""


def _record_started(path: Path, script: MachineScript) -> None:
    persist.write_json(path, {"started": str(script)})


def _forget_started(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _load_started(path: Path) -> MachineScript | None:
    """The start script a previous safekitd ran without running its stop script since."""
    try:
        data = persist.read_json(path)
        script = MachineScript(str(data["started"])) if isinstance(data, dict) else None
    except (ValueError, KeyError):
        return None  # corrupt: nothing known to stop (the stop scripts' own checks remain)
    return script if script in _STOP_FOR_START else None


def _record_json(record: PersistedRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    data["state"] = str(record.state)
    return data


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
        )
    except (KeyError, ValueError, TypeError):
        return None


def _load_incarnation(path: Any) -> int | None:
    try:
        data = persist.read_json(path)
        return int(data["incarnation"]) if data else None
    except (ValueError, KeyError, TypeError):
        return None


def _module_logger(name: str, paths: Paths) -> logging.Logger:
    logger = logging.getLogger(f"safekit.module.{name}")
    path = paths.module_log(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger
