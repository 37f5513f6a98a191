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
import ipaddress
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safekit import mirror
from safekit.checkers import errd
from safekit.checkers.icmp import Pinger
from safekit.config import ClusterConfig, CustomCheck, ModuleConfig
from safekit.config import evaluate as evaluate_rule
from safekit.daemon import persist
from safekit.daemon.checker_tasks import checker_specs, run_checker, run_custom
from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink
from safekit.daemon.metrics import Metrics
from safekit.daemon.paths import Paths
from safekit.daemon.timing import Timing
from safekit.membership.counters import Counters, RttStats
from safekit.membership.liveness import LanDown, LanUp, LivenessEvent, PeerLost, PeerUp
from safekit.mirror import (
    AcquireVip,
    Action,
    ActionFailed,
    Announce,
    CheckerAction,
    CheckerVerdict,
    Command,
    CommandKind,
    CommandReply,
    Event,
    KillScript,
    Log,
    LogLevel,
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
    ReplicaStatus,
    ReplicationRole,
    ResourceUp,
    RunScript,
    ScriptDone,
    ScriptOutcome,
    StartReplication,
    StopReplication,
    Tick,
    WitnessResult,
)
from safekit.mirror import (
    PeerLost as MachinePeerLost,
)
from safekit.scripts import Script, ScriptEnvironment, ScriptRunner
from safekit.vip import VipError, VipProvider, VipSpec, create_provider

DEFAULT_HEARTBEAT_PORT = 4800
VIP_CALL_TIMEOUT = 5.0
_BOOT_INTENT = {
    CommandKind.START: True,
    CommandKind.PRIM: True,
    CommandKind.SECOND: True,
    CommandKind.PRIMFORCE: True,
    CommandKind.STOPSTART: True,
    CommandKind.STOP: False,
    CommandKind.FORCESTOP: False,
}
_LEVELS = {LogLevel.INFO: logging.INFO, LogLevel.WARNING: logging.WARNING, LogLevel.ERROR: logging.ERROR}


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
        if config.rfs is not None:
            raise ModuleError(
                f"module {name}: <rfs> replication is not available in this version; remove <rfs> "
                "(the module then fails over the application and its VIP, without replicated data)"
            )
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
        )
        self.state_file = paths.module_var(name) / "state.json"
        self.persisted = _load_record(self.state_file)
        self.state = mirror.initial_state(self.settings, self.persisted)
        self.log = _module_logger(name, paths)
        self.resources: dict[str, str] = {f"heartbeat.{lan.name}": "init" for lan in lans}
        if config.check.splitbrain is not None:
            self.resources["splitbrain.witness"] = "init"
        self.link = HeartbeatLink(
            module=name,
            local_node=local_node,
            peer_node=self.peer_node,
            key=key,
            lans=lans,
            on_status=self._on_peer_status,
            on_liveness=self._on_liveness,
            previous_incarnation=_load_incarnation(paths.module_var(name) / "incarnation"),
        )
        persist.write_json(paths.module_var(name) / "incarnation", {"incarnation": self.link.incarnation})
        self.vips: list[VipProvider] = _vip_providers(config)
        self.scripts: ScriptRunner | None = None
        if config.user is not None:
            self.scripts = ScriptRunner(
                ScriptEnvironment(
                    safe=paths.safe,
                    module=name,
                    safevar=paths.var,
                    userbin=paths.module_dir(name) / "bin",
                    userconf=paths.module_dir(name) / "conf",
                    uservar=paths.module_var(name),
                    user_vars={v.name: v.value for v in config.user.vars},
                ),
                paths.user_log(name),
                nicestoptimeout=config.user.nicestoptimeout,
                forcestoptimeout=config.user.forcestoptimeout,
            )
        self._checker_specs = checker_specs(config.check, pinger)
        self._checks: dict[str, tuple[str, str]] = {
            spec.resource: (spec.when, spec.action) for spec in self._checker_specs
        }
        for custom in config.check.custom:
            self._checks[f"custom.{custom.ident}"] = (custom.when, custom.action)
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._script_tasks: dict[int, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._witness_wake = asyncio.Event()
        self._replication = ReplicationRole.NONE
        self._fed_generation: int | None = None
        self._last_peer_status: NodeStatus | None = None
        self._last_shown: tuple[ModuleState, Readiness] | None = None
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
            self.timing.takeover_after,
            f", witness {' '.join(self.config.check.splitbrain.witnesses)}"
            if self.config.check.splitbrain
            else "",
        )
        # A crash may have left the VIP here; nothing may hold it before the state machine says so.
        for provider in self.vips:
            try:
                if await provider.release(timeout=VIP_CALL_TIMEOUT):
                    self.log.warning(
                        "virtual IP %s was still here (left by a crash): released", provider.spec.address
                    )
            except VipError as exc:
                self.log.error(
                    "virtual IP %s: could not check for a leftover: %s", provider.spec.address, exc
                )
        await self.link.start()
        self._tasks.append(asyncio.create_task(self._event_loop(), name=f"{self.name}-events"))
        if self.config.check.splitbrain is not None:
            self._tasks.append(asyncio.create_task(self._witness_loop(), name=f"{self.name}-witness"))
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
        await self.link.close()

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
                if self.resources.get(resource) == "down" and self._when_applies(when):
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
        elif value == "down" and self._when_applies(when):
            if not self.checkers_enabled:
                self.log.warning("checker off: %s down, action %s not taken", resource, action)
                return
            self.submit(CheckerVerdict(CheckerAction(action), resource, now, "checker reports down"))

    def _when_applies(self, when: str) -> bool:
        """`when` of a checker: prim = while primary, both = primary or secondary, pre = always."""
        state = self.state.module_state
        if when == "pre":
            return True
        if when == "both":
            return state in (ModuleState.PRIM, ModuleState.ALONE, ModuleState.SECOND)
        return state in (ModuleState.PRIM, ModuleState.ALONE)

    def _on_peer_status(self, status: NodeStatus, now: float) -> None:
        # Only what changes is news for the state machine: an unchanged status every pulse would
        # cost a full step for nothing (liveness is tracked by membership, not here).
        if status != self._last_peer_status:
            self._last_peer_status = status
            self.submit(PeerHeartbeat(status, now))
        # Without <rfs> there is no data to copy: a secondary is up to date with its primary as soon
        # as it follows it. (With replication, the rfs process reports this instead.)
        if (
            self._replication is ReplicationRole.SECONDARY
            and status.serving
            and status.generation != self._fed_generation
        ):
            self._fed_generation = status.generation
            self.submit(ReplicaStatus(True, now, status.generation))

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
        elif isinstance(event, PeerUp):
            self.log.info("peer %s is back", event.peer)

    # ------------------------------------------------------------------ the loop
    async def _event_loop(self) -> None:
        while True:
            deadline = mirror.next_deadline(self.settings, self.state)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                item = _Queued(Tick(time.monotonic()))
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
                self.log.log(_LEVELS[level], "%s", reason)
            case Announce(status=status):
                self.link.announce(status)
            case Persist(record=record):
                persist.write_json(self.state_file, _record_json(record))
            case RunScript():
                self._run_script(action)
            case KillScript(run_id=run_id):
                task = self._script_tasks.pop(run_id, None)
                if task is not None:
                    task.cancel()
            case AcquireVip():
                await self._acquire_vips(action)
            case ReleaseVip():
                await self._release_vips(action)
            case StartReplication(role=role):
                self._replication = role
                self._fed_generation = None
                if role is ReplicationRole.SECONDARY and self.state.peer is not None:
                    self._on_peer_status(self.state.peer, time.monotonic())
            case StopReplication():
                self._replication = ReplicationRole.NONE
            case QueryWitness():
                self._witness_wake.set()
            case CommandReply():
                replies.append(action)

    # ------------------------------------------------------------------ actions
    def _run_script(self, action: RunScript) -> None:
        runner = self.scripts

        async def run() -> None:
            outcome, detail = ScriptOutcome.OK, "no <user>: no script runs"
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
            self._script_tasks.pop(action.run_id, None)
            self.submit(ScriptDone(action.run_id, action.script, outcome, time.monotonic(), detail))

        self.log.info("running %s %s", action.script, " ".join(action.argv()))
        self._script_tasks[action.run_id] = asyncio.create_task(run(), name=f"{self.name}-{action.script}")

    async def _acquire_vips(self, action: AcquireVip) -> None:
        for provider in self.vips:
            try:
                await provider.acquire(timeout=VIP_CALL_TIMEOUT)
                self.log.info("virtual IP %s acquired", provider.spec.address)
            except VipError as exc:
                self.log.error("virtual IP %s not acquired: %s", provider.spec.address, exc)
                self.submit(ActionFailed(action, str(exc), time.monotonic()))
                return

    async def _release_vips(self, action: ReleaseVip) -> None:
        # A VIP that stays on a node that must not serve is how split brain hurts: retry within
        # the split-brain bound before reporting a failure.
        deadline = time.monotonic() + self.settings.split_brain_bound
        for provider in self.vips:
            while True:
                try:
                    await provider.release(timeout=max(0.1, deadline - time.monotonic()))
                    self.log.info("virtual IP %s released", provider.spec.address)
                    break
                except VipError as exc:
                    if time.monotonic() >= deadline:
                        self.log.error("virtual IP %s not released: %s", provider.spec.address, exc)
                        self.submit(ActionFailed(action, str(exc), time.monotonic()))
                        return
                    await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ checkers
    async def _witness_loop(self) -> None:
        splitbrain = self.config.check.splitbrain
        assert splitbrain is not None
        witnesses = list(splitbrain.witnesses)
        last: bool | None = None
        while True:
            reachable = await self.pinger.ping_any(witnesses, self.timing.witness_timeout)
            if reachable != last:
                self.resources[f"splitbrain.{splitbrain.ident}"] = "up" if reachable else "down"
                last = reachable
            self.submit(WitnessResult(reachable, time.monotonic()))
            self._witness_wake.clear()
            # Fast while the peer is away (the split-brain rules run on these answers), slow while
            # it is there; a lost peer wakes this loop at once (QueryWitness).
            interval = (
                self.timing.witness_interval if self.state.peer is None else self.timing.witness_idle_interval
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._witness_wake.wait(), interval)

    async def _failover_rules_loop(self) -> None:
        """`<failover>` rules: every `period`, a rule whose condition has held for `handle_time` fires.

        A rule fires once per time its condition becomes true (it fires again only after the
        condition was false once), so a lasting condition does not count toward maxloop forever.
        """
        failover = self.config.failover
        true_since: dict[str, float] = {}
        fired: set[str] = set()
        while True:
            await asyncio.sleep(failover.period)
            if not self.checkers_enabled:  # `checker off`: rules count again from `checker on`
                true_since.clear()
                fired.clear()
                continue
            now = time.monotonic()
            resources = self.status(verbose=True)["resources"]
            for rule in failover.rules:
                if not evaluate_rule(rule.condition, resources):
                    true_since.pop(rule.label, None)
                    fired.discard(rule.label)
                    continue
                since = true_since.setdefault(rule.label, now)
                if rule.label in fired or now - since < failover.handle_time:
                    continue
                fired.add(rule.label)
                self.log.warning(
                    "failover rule %s: condition true for %.1f s: %s()", rule.label, now - since, rule.action
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
            active = self._errd_active()
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

    def _errd_active(self) -> set[str]:
        """Process classes that must be running now (only in a settled, Ready state)."""
        if self.state.readiness is not Readiness.READY or self.state.running is not None:
            return set()
        if self.state.module_state in (ModuleState.PRIM, ModuleState.ALONE):
            return {"prim", "both", "pre"}
        if self.state.module_state is ModuleState.SECOND:
            return {"second", "sec", "both", "pre"}
        return set()

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
            data["resources"] = resources
            data["generation"] = self.state.generation
            data["peer_state"] = str(self.state.peer.state) if self.state.peer else None
            data["vips"] = [str(p.spec.address) for p in self.vips]
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
        lans.append(HeartbeatLan(hb.name, me.addr, others[0].addr, port, hb.pulse, hb.timeout))
    if len(peers) != 1:
        raise ModuleError(f"module {name}: the heartbeat LANs name different peers: {sorted(peers)}")
    return peers.pop(), lans


def _vip_providers(config: ModuleConfig) -> list[VipProvider]:
    providers: list[VipProvider] = []
    if config.vip is None:
        return providers
    for interface in config.vip.interfaces:
        for addr in interface.addresses:
            spec = VipSpec(
                address=ipaddress.IPv4Address(addr.addr),
                prefixlen=addr.prefix_length,
                interface=interface.name,
            )
            providers.append(create_provider(spec))
    return providers


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
