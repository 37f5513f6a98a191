"""The vocabulary of a module's life, shared by the mirror and the farm state machines.

Pure types, no I/O: the SafeKit restart scripts and why they run, what a checker asks for, what
comes back when a script ends or a resource is up again, time passing, a line of the module log and
the answer to an operator command. Each machine adds its own states, events and actions
(`safekit.mirror`, `safekit.farm`); the daemon's executor (`daemon/module_executor.py`) handles these
shared ones the same way for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Script(StrEnum):
    """The SafeKit restart scripts (the names are the file names in the module's bin/)."""

    PRESTART = "prestart"
    START_PRIM = "start_prim"
    STOP_PRIM = "stop_prim"
    START_SECOND = "start_second"
    STOP_SECOND = "stop_second"
    START_BOTH = "start_both"
    STOP_BOTH = "stop_both"
    POSTSTOP = "poststop"

    @property
    def is_stop(self) -> bool:
        """A stopping script: bounded by nicestoptimeout, then called again with `force`."""
        return self in (Script.STOP_PRIM, Script.STOP_SECOND, Script.STOP_BOTH, Script.POSTSTOP)

    @property
    def stops_application(self) -> bool:
        """A script that stops the application a start script started (not poststop)."""
        return self in (Script.STOP_PRIM, Script.STOP_SECOND, Script.STOP_BOTH)


class ScriptAction(StrEnum):
    """Third SafeKit script argument: why the script runs."""

    START = "start"
    STOP = "stop"
    STOPSTART = "stopstart"
    STOPWAIT = "stopwait"


class ScriptOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed out"


class CheckerAction(StrEnum):
    """What a checker, errd rule or failover rule asks for (SafeKit's action= / rule verbs)."""

    RESTART = "restart"
    STOPSTART = "stopstart"
    STOP = "stop"
    WAIT = "wait"


class Readiness(StrEnum):
    """SafeKit's second word of a state: whether the node is serving, changing, or not serving."""

    NOT_READY = "NotReady"
    TRANSIENT = "Transient"
    READY = "Ready"


class LogLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


# ----------------------------------------------------------------------------- events
@dataclass(frozen=True)
class ScriptDone:
    """A script the machine asked for ended (or could not be launched: FAILED)."""

    run_id: int
    script: Script
    outcome: ScriptOutcome
    now: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is ScriptOutcome.OK


@dataclass(frozen=True)
class CheckerVerdict:
    """A checker, errd rule or failover rule found its resource down and asks for `action`."""

    action: CheckerAction
    resource: str
    now: float
    detail: str = ""


@dataclass(frozen=True)
class ResourceUp:
    """A resource a WAIT verdict waited for is up again."""

    resource: str
    now: float


@dataclass(frozen=True)
class Tick:
    """Time passed; the daemon sends one at the machine's next deadline (and may send more)."""

    now: float


# ----------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Log:
    """One line of the module log: what was seen, which rule fired, what is done."""

    reason: str
    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True)
class CommandReply:
    """Answer to an operator command, for the CLI/API that sent it."""

    command: str
    accepted: bool
    reason: str
