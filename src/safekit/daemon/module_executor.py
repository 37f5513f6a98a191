"""The executor of a module's state machine, the same for both kinds (ADR 0002, 0012).

A module at run time is a pure machine (`safekit.mirror` or `safekit.farm`) and this executor
around it: one queue and one task that takes events in order, calls the machine's `step`, and
executes the actions it returns in order. What every kind of module does the same way lives here:

- the queue and its single task (`next_item`: what has arrived before an overdue deadline first);
- the operator's commands and what `boot="auto"` follows, the run-time switches (errd, checker,
  failover on|off);
- the restart scripts, run in tasks of their own and reported back as `ScriptDone`;
- the checkers (probes, custom checkers through `safekit set`) and errd, whose verdicts the
  machine gates (`checker_applies`, `errd_classes`);
- the heartbeat incarnation, the module log, the state shown in the metrics.

`daemon/mirror_module.py` and `daemon/farm_module.py` subclass it with what differs (the
machine, the heartbeat status, the VIP, replication or the farm's rules); neither imports the
other. `ModuleRuntime` is what the node sees of any module.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import logging.handlers
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from safekit.aio import within
from safekit.checkers import errd
from safekit.checkers.icmp import Pinger
from safekit.checkers.link_events import LinkEvents
from safekit.config import ClusterConfig, CustomCheck, ModuleConfig, ProcCheck
from safekit.daemon import diagnostics
from safekit.daemon.checker_tasks import CheckerSpec, CheckerVerdicts, checker_specs, run_checker, run_custom
from safekit.daemon.heartbeats import HeartbeatLink
from safekit.daemon.metrics import Metrics
from safekit.daemon.module_journal import ModuleJournal
from safekit.host import logfiles, persist
from safekit.host.paths import Paths
from safekit.lifecycle import (
    CheckerAction,
    CheckerVerdict,
    CommandReply,
    Log,
    LogLevel,
    Readiness,
    ResourceUp,
    Script,
    ScriptAction,
    ScriptDone,
    ScriptOutcome,
    Tick,
)
from safekit.scripts import ScriptEnvironment, ScriptRunner

LOG_LEVELS = {LogLevel.INFO: logging.INFO, LogLevel.WARNING: logging.WARNING, LogLevel.ERROR: logging.ERROR}
"""The module log's level of each machine log line."""

BOOT_INTENT = {
    "start": True,
    "prim": True,
    "second": True,
    "primforce": True,
    "stopstart": True,
    "stop": False,
    "forcestop": False,
}
"""What an operator's accepted command leaves for `boot="auto"`: start the module with the daemon
(True) or not (False); the other commands leave it as it was."""

Shared = ScriptDone | CheckerVerdict | ResourceUp | Tick
"""The events both machines take (their `Event` unions include these)."""


class ShownState(Protocol):
    """What both machines' states show operators: SafeKit's state, readiness, and why."""

    @property
    def module_state(self) -> StrEnum: ...
    @property
    def readiness(self) -> Readiness: ...
    @property
    def reason(self) -> str: ...


T = TypeVar("T")
StateT = TypeVar("StateT", bound=ShownState)
EventT = TypeVar("EventT")
ActionT = TypeVar("ActionT")


class ModuleError(Exception):
    """A module that cannot be loaded as configured; the message says what to change."""


class ScriptRequest(Protocol):
    """A machine's `RunScript` action (both kinds have one, with their own state names)."""

    @property
    def run_id(self) -> int: ...
    @property
    def script(self) -> Script: ...
    @property
    def current(self) -> object: ...
    @property
    def next(self) -> object: ...
    @property
    def action(self) -> ScriptAction: ...
    @property
    def forced(self) -> bool: ...
    def argv(self) -> tuple[str, ...]: ...


class ModuleRuntime(Protocol):
    """What the node (`daemon/node.py`) and its control socket use of a loaded module."""

    kind: ClassVar[str]
    name: str
    config: ModuleConfig
    log: logging.Logger
    link: HeartbeatLink[Any]

    @property
    def module_state(self) -> str: ...
    @property
    def readiness(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def start_at_boot(self) -> bool: ...
    async def start(self, *, boot: bool) -> None: ...
    async def shutdown(self) -> None: ...
    async def command(self, kind: str, *, operator: bool = True) -> CommandReply: ...
    def set_errd(self, on: bool) -> str: ...
    def set_checkers(self, on: bool) -> str: ...
    def set_failover(self, on: bool) -> str: ...
    def controls(self) -> dict[str, str]: ...
    def set_resource(self, resource: str, value: str) -> None: ...
    def status(self, verbose: bool = False) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class ModuleContext:
    """What the node gives each module it loads."""

    name: str
    config: ModuleConfig
    cluster: ClusterConfig
    local_node: str
    key: bytes
    paths: Paths
    metrics: Metrics
    pinger: Pinger
    link_events: LinkEvents | None = None
    """The kernel's link changes, which wake the `<intf>` checkers (None: they only poll)."""


@dataclasses.dataclass
class Queued(Generic[EventT]):
    event: EventT
    reply: asyncio.Future[CommandReply] | None = None


class ModuleExecutor(abc.ABC, Generic[StateT, EventT, ActionT]):
    """The executor both kinds of module share; a subclass gives its machine and its own actions."""

    kind: ClassVar[str]
    failover_means: ClassVar[str]
    """What `safekit failover on|off` turns on or off, for the operator's answer and the log."""
    state: StateT
    link: HeartbeatLink[Any]

    def __init__(self, context: ModuleContext) -> None:
        name, config, paths, pinger = context.name, context.config, context.paths, context.pinger
        self.name = name
        self.config = config
        self.local_node = context.local_node
        self.paths = paths
        self.metrics = context.metrics
        self.pinger = pinger
        self.link_events = context.link_events
        self.log = module_logger(name, paths)
        self.journal = ModuleJournal(paths.module_journal(name), self.log)  # `safekit report`
        self.resources: dict[str, str] = {}
        self.metrics.add_resources(name, lambda: self.resources)
        self.scripts: ScriptRunner | None = script_runner(name, config, paths)
        self._checker_specs = checker_specs(config.check, pinger)
        self._checks: dict[str, tuple[str, str]] = check_actions(config, self._checker_specs)
        # <virtual_addr check="on">'s checkers: a "down" counts only while the module holds its VIPs
        self._vip_checks = frozenset(f"ip.{ip.ident}" for ip in config.check.ip if ip.vip)
        for resource in sorted(self._vip_checks):
            self.log.info('virtual IP checked by %s (<virtual_addr check="on">)', resource)
        for intf in config.check.intf:
            if intf.vip:
                self.log.info('VIP interface checked by intf.%s (<interface check="on">)', intf.ident)
        self._verdicts = CheckerVerdicts()
        self._queue: asyncio.Queue[Queued[EventT | Shared]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._script_tasks: dict[int, asyncio.Task[None]] = {}
        # `safekit errd|checker on|off`: run-time switches, back on when the daemon starts again.
        self.errd_enabled = True
        self.checkers_enabled = True

    # ------------------------------------------------------------------ what a kind gives
    @abc.abstractmethod
    def _transition(self, event: EventT | Shared) -> tuple[StateT, Sequence[ActionT]]:
        """The machine's step: the new state and the actions to execute in order."""

    @abc.abstractmethod
    def _next_deadline(self) -> float | None:
        """When the machine wants a Tick (monotonic), or None."""

    @abc.abstractmethod
    async def _execute_own(self, action: ActionT) -> None:
        """Execute an action of the kind's own (the shared ones are handled here)."""

    @abc.abstractmethod
    def _command_event(self, kind: str, now: float) -> EventT | None:
        """The machine's event for an operator command by SafeKit name; None: not one of this kind."""

    @abc.abstractmethod
    def _refusal(self, kind: str) -> str:
        """Why `kind` is not a command of this kind of module."""

    @abc.abstractmethod
    def _checker_applies(self, when: str) -> bool:
        """The machine's gate: whether a checker of `when` acts on a "down" now."""

    def _holds_vips(self) -> bool:
        """Whether the module holds its virtual IPs now (a kind with VIPs says when)."""
        return True

    def _script_running(self) -> bool:
        """Whether one of the module's scripts runs now (a kind with scripts says when)."""
        return False

    @abc.abstractmethod
    def _errd_classes(self) -> frozenset[str]:
        """The machine's gate: the `<errd>` process classes that must be running now."""

    @property
    def module_state(self) -> str:
        """The state shown to operators (STOP, WAIT, ALONE, PRIM, SECOND, UP)."""
        return str(self.state.module_state)

    @property
    def readiness(self) -> str:
        """NotReady, Transient or Ready."""
        return str(self.state.readiness)

    @property
    def reason(self) -> str:
        """Why the module is in its state (the machine's words)."""
        return self.state.reason

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Serving and ready: what the health endpoint answers 200 for."""

    @property
    @abc.abstractmethod
    def stopped(self) -> bool:
        """STOP and settled: no script runs, nothing is held (what uninstall and config need)."""

    @property
    @abc.abstractmethod
    def failover_enabled(self) -> bool:
        """`safekit failover on|off`."""

    @abc.abstractmethod
    def _set_failover(self, on: bool) -> None: ...

    def _after_actions(self) -> None:
        """After the actions of one step (a kind may reconcile what they changed)."""

    async def _script_starting(self, script: Script) -> None:
        """Before a script runs (a kind may record what a restarted daemon must undo)."""

    async def _script_ended(self, action: ScriptRequest, outcome: ScriptOutcome) -> None:
        """After a script ended, before the machine hears of it."""

    # ------------------------------------------------------------------ life cycle
    def _start_tasks(self) -> None:
        """The event loop, the checkers and errd: what every started module runs."""
        self._spawn(self._event_loop(), "events")
        for spec in self._checker_specs:
            checker = run_checker(spec, self.set_resource, self.log, self.link_events)
            self._tasks.append(asyncio.create_task(checker, name=spec.resource))
        for custom in self.config.check.custom:
            self._spawn(self._custom_checker(custom), f"custom.{custom.ident}")
        if self.config.errd is not None and self.config.errd.procs:
            self._spawn(self._errd_loop(), "errd")

    def _spawn(self, coroutine: Any, what: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=f"{self.name}-{what}"))

    async def _stop_and_cancel(self) -> None:
        """The daemon is stopping: stop the module (scripts, VIP), then end its tasks."""
        if not self.stopped:
            budget = self._stop_budget()
            try:
                reply = await within(self.command("stop", operator=False), budget)
                self.log.info("daemon shutdown: %s", reply.reason)
                stopped = await self.wait_for(lambda: self.stopped, timeout=budget)
            except TimeoutError:
                stopped = False
            if not stopped:
                # Never hang the daemon's exit: say where the module is stuck, then end its tasks.
                self.log.error(
                    "daemon shutdown: the module did not stop within %g s (state %s); its tasks are "
                    "ended now: check that the application and the virtual IP are gone",
                    budget,
                    self.module_state,
                )
                diagnostics.dump_state()
        await end_tasks([*self._tasks, *self._script_tasks.values()], self.log)

    def _stop_budget(self) -> float:
        user = self.config.user
        return 10.0 + (2 * (user.nicestoptimeout + user.forcestoptimeout) if user else 0.0)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # ------------------------------------------------------------------ inputs
    def submit(self, event: EventT | Shared) -> None:
        self._queue.put_nowait(Queued(event))

    async def command(self, kind: str, *, operator: bool = True) -> CommandReply:
        """Run an operator command by SafeKit name. An operator's start or stop is also what
        `boot="auto"` follows."""
        event = self._command_event(str(kind), time.monotonic())
        if event is None:
            return CommandReply(str(kind), False, self._refusal(str(kind)))
        future: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Queued(event, future))
        reply = await future
        intent = BOOT_INTENT.get(str(kind))
        if operator and reply.accepted and intent is not None:
            persist.write_json(self.paths.boot_file(self.name), {"start_at_boot": intent})
        return reply

    @property
    def start_at_boot(self) -> bool:
        """Whether the operator left the module started (`boot="auto"` restarts it with the daemon)."""
        try:
            data = persist.read_json(self.paths.boot_file(self.name))
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
                if self.resources.get(resource) == "down" and self._check_counts(resource, when):
                    self._verdicts.given(resource)
                    self.submit(_verdict(action, resource, now))
        return self._switched("checker", before, on, "checkers and failover rules")

    def set_failover(self, on: bool) -> str:
        """`safekit failover on|off`: whether a lost node's service is taken over."""
        before = self.failover_enabled
        self._set_failover(on)
        return self._switched("failover", before, on, self.failover_means)

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
            "failover": "on" if self.failover_enabled else "off",
        }

    def set_resource(self, resource: str, value: str) -> None:
        """A checker reports a resource state (probes here, custom checkers through `safekit set`)."""
        before = self.resources.get(resource)
        self.resources[resource] = value
        changed = before != value
        if changed:
            self.log.info("resource %s: %s -> %s", resource, before or "unknown", value)
        check = self._checks.get(resource)
        if check is None:
            return
        when, action = check
        now = time.monotonic()
        if value == "up" and changed:
            self.submit(ResourceUp(resource, now))
        counts = value == "down" and self._check_counts(resource, when)
        if counts and not self.checkers_enabled:
            if changed:
                self.log.warning("checker off: %s down, action %s not taken", resource, action)
            return
        if self._verdicts.on_report(resource, value, counts):
            if not changed:
                self.log.warning(
                    "resource %s still down after the module's reaction: %s again", resource, action
                )
            self.submit(_verdict(action, resource, now))

    def _check_counts(self, resource: str, when: str) -> bool:
        """Whether a "down" of this checker counts now: its `when` applies in the machine's state,
        and for a `<virtual_addr check="on">` checker, the VIP is placed here (elsewhere its
        absence is expected)."""
        if resource in self._vip_checks and not self._holds_vips():
            return False
        return self._checker_applies(when)

    def _rearm_checkers(self) -> None:
        """After each step: a checker whose verdict was given acts again on its next "down" once a
        script ran or it stopped counting (CheckerVerdicts)."""
        running = self._script_running()
        self._verdicts.rearm(
            lambda r: not running and r in self._checks and self._check_counts(r, self._checks[r][0])
        )

    # ------------------------------------------------------------------ the loop
    async def _event_loop(self) -> None:
        while True:
            item = await next_item(self._queue, self._next_deadline(), lambda now: Queued(Tick(now)))
            try:
                await self._step(item)
            except Exception:  # a bug must not silently stop the module: log it loudly, go on
                self.log.exception("internal error while handling %s", type(item.event).__name__)
                if item.reply is not None and not item.reply.done():
                    item.reply.set_exception(RuntimeError("internal error; see the module log"))

    async def _step(self, item: Queued[EventT | Shared]) -> None:
        shown = (self.module_state, self.readiness)
        self.state, actions = self._transition(item.event)
        if shown != (self.module_state, self.readiness):
            self.journal.transition(
                f"{shown[0]} ({shown[1]})", f"{self.module_state} ({self.readiness})", self.reason
            )
        replies: list[CommandReply] = []
        for action in actions:
            match action:
                case Log(reason=reason, level=level):
                    self.log.log(LOG_LEVELS[level], "%s", reason)
                case CommandReply():
                    replies.append(action)
                case _ if type(action).__name__ in UNTIMED_ACTIONS:
                    await self._execute_own(action)
                case _:
                    began, ok = time.time(), False
                    try:
                        await self._execute_own(action)
                        ok = True
                    finally:
                        self.journal.step(type(action).__name__, began, ok=ok)
        self._after_actions()
        self._rearm_checkers()
        if item.reply is not None and not item.reply.done():
            reply = replies[0] if replies else CommandReply(str(item.event), True, self.reason)
            item.reply.set_result(reply)
        # The machine logs every displayed change itself ("OLD (r) -> NEW (r): reason").
        if shown != (self.module_state, self.readiness):
            if shown[0] != self.module_state:
                self.metrics.transitions.labels(self.name, shown[0], self.module_state).inc()
            self._show_state()

    def _show_state(self) -> None:
        ready = self.readiness == Readiness.READY  # SECOND (Ready) too, not only the serving node
        self.metrics.set_state(self.name, self.module_state, ready, self.ready)

    # ------------------------------------------------------------------ scripts
    def _run_script(self, action: ScriptRequest) -> None:
        """Start a script in a task of its own; its end comes back as `ScriptDone`."""
        runner = self.scripts

        async def run() -> None:
            outcome, detail = ScriptOutcome.OK, "no <user>: no script runs"
            began = time.time()
            if runner is not None:
                await self._script_starting(action.script)
                result = await runner.run(
                    action.script,
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
                if not result.missing:  # a module need not have every script
                    self.metrics.script_duration.labels(
                        self.name, action.script, outcome.name.lower()
                    ).observe(result.duration_s)
                    self.journal.script(str(action.script), began, str(outcome))
                await self._script_ended(action, outcome)
            self._script_tasks.pop(action.run_id, None)
            self.submit(ScriptDone(action.run_id, action.script, outcome, time.monotonic(), detail))

        self.log.info("running %s %s", action.script, " ".join(action.argv()))
        self._script_tasks[action.run_id] = asyncio.create_task(run(), name=f"{self.name}-{action.script}")

    def _kill_script(self, run_id: int) -> None:
        task = self._script_tasks.pop(run_id, None)
        if task is not None:
            task.cancel()

    # ------------------------------------------------------------------ checkers
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
        rules = [process_rule(p) for p in errd_cfg.procs]
        classes = [p.process_class for p in errd_cfg.procs]
        while True:
            await asyncio.sleep(errd_cfg.polltimer)
            active = self._errd_classes()
            if not active:
                continue
            watched = [(rule, cls) for rule, cls in zip(rules, classes, strict=True) if cls in active]
            verdicts = await errd.look(
                [rule for rule, _ in watched],
                lambda: asyncio.to_thread(errd.scan),
                recheck=ERRD_RECHECK,
                on_recheck=lambda reasons: self.log.info(
                    "errd: %s: looking again in %g s", reasons, ERRD_RECHECK
                ),
            )
            active = self._errd_classes()  # the role may have changed while errd looked
            for verdict, (_, cls) in zip(verdicts, watched, strict=True):
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
        event = CheckerVerdict(CheckerAction(verdict.rule.action), resource, time.monotonic(), verdict.reason)
        self.submit(event)

    # ------------------------------------------------------------------ views
    def _status_head(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.module_state,
            "readiness": self.readiness,
            "reason": self.reason,
            "node": self.local_node,
        }


# ----------------------------------------------------------------------------- building blocks
ERRD_RECHECK = 1.0
"""Seconds errd waits before it looks again at a count above `atmax`: a process the watched one
has just forked carries its parent's command line until it renames itself."""


def process_rule(proc: ProcCheck) -> errd.ProcessRule:
    """The errd rule of one `<proc>`: with both name and nameregex (as SafeKit's own templates
    write them), the regex matches and the name is the check's ident (resource proc.NAME)."""
    return errd.ProcessRule(
        ident=proc.ident,
        name=proc.matched_name,
        nameregex=proc.nameregex,
        argregex=proc.argregex,
        atleast=proc.atleast,
        atmax=proc.atmax,
        action=proc.action,
    )


def _verdict(action: str, resource: str, now: float) -> CheckerVerdict:
    return CheckerVerdict(CheckerAction(action), resource, now, "checker reports down")


def script_runner(name: str, config: ModuleConfig, paths: Paths) -> ScriptRunner | None:
    """The module's restart scripts; None without `<user>` (then no script runs)."""
    if config.user is None:
        return None
    return ScriptRunner(
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


def check_actions(config: ModuleConfig, specs: Iterable[CheckerSpec]) -> dict[str, tuple[str, str]]:
    """Each checker resource's (when, action): the probe checkers' and the custom ones'."""
    checks = {spec.resource: (spec.when, spec.action) for spec in specs}
    for custom in config.check.custom:
        checks[f"custom.{custom.ident}"] = (custom.when, custom.action)
    return checks


async def end_tasks(tasks: Sequence[asyncio.Task[Any]], log: logging.Logger, grace: float = 5.0) -> None:
    """Cancel `tasks` and wait for them, at most `grace` seconds: the daemon's exit never hangs on
    a task that does not end (one that swallowed its cancellation is named in the log)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        log.error("task %s did not end %g s after it was cancelled: left behind", task.get_name(), grace)


async def next_item(queue: asyncio.Queue[T], deadline: float | None, tick: Callable[[float], T]) -> T:
    """The next thing a module's single task handles: what has already arrived first, else what
    arrives before `deadline` (monotonic), else `tick(now)` at the deadline.

    Events that arrived while a long step ran (a lease renewal answered while the replication
    process started) must be handled before the deadline they may have moved: a tick taken first
    would judge their absence (`asyncio.wait_for` with a deadline already past times out even when
    the queue holds items).
    """
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return await within(queue.get(), timeout)
    except TimeoutError:
        return tick(time.monotonic())


def previous_incarnation(paths: Paths, name: str) -> int | None:
    """The heartbeat incarnation the module's last run used (the next run takes a higher one)."""
    try:
        data = persist.read_json(paths.module_var(name) / "incarnation")
        return int(data["incarnation"]) if data else None
    except (ValueError, KeyError, TypeError):
        return None


def record_incarnation(paths: Paths, name: str, incarnation: int) -> None:
    persist.write_json(paths.module_var(name) / "incarnation", {"incarnation": incarnation})


UNTIMED_ACTIONS = frozenset({"Announce", "RunScript", "KillScript", "QueryWitness"})
"""Actions not journaled as steps: instant, or (scripts) journaled when they end."""


def module_logger(name: str, paths: Paths) -> logging.Logger:
    """The module log (`safekit logview -m AM`): every decision with the machine's reason."""
    logger = logging.getLogger(f"safekit.module.{name}")
    path = paths.module_log(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path) for h in logger.handlers):
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=logfiles.MAX_BYTES, backupCount=logfiles.BACKUPS
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger
