"""What happens to a farm module: the events the daemon feeds to the farm state machine.

Every event carries `now`, the daemon's monotonic clock; the shared ones (script ends, checker
verdicts, resources up, ticks) are `safekit.lifecycle`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from safekit.farm.states import FarmState
from safekit.lifecycle import CheckerVerdict, Readiness, ResourceUp, ScriptDone, Tick


class CommandKind(StrEnum):
    START = "start"
    STOP = "stop"
    FORCESTOP = "forcestop"
    RESTART = "restart"
    STOPSTART = "stopstart"


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    now: float


@dataclass(frozen=True)
class PeerStatus:
    node: str
    state: FarmState
    readiness: Readiness
    now: float


@dataclass(frozen=True)
class PeerLost:
    node: str
    now: float


@dataclass(frozen=True)
class ServingFailed:
    """Loading the rules or adding the VIP failed."""

    detail: str
    now: float


Event = Command | PeerStatus | PeerLost | ScriptDone | CheckerVerdict | ResourceUp | ServingFailed | Tick
