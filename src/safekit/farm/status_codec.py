"""A farm node's announced status in heartbeat packets, and back: its state and readiness.

Pure. A farm heartbeat carries only the fixed fields (state, sub-state); the link that sends and
receives it is the mirror's (`daemon/heartbeats.py`), given these two functions as its codec.
"""

from __future__ import annotations

from dataclasses import dataclass

from safekit.farm.states import FarmState
from safekit.lifecycle import Readiness
from safekit.membership.wire import Heartbeat, SubState
from safekit.membership.wire import ModuleState as WireState

_STATES = {FarmState.STOP: WireState.STOP, FarmState.WAIT: WireState.WAIT, FarmState.UP: WireState.UP}
_READINESS = {
    Readiness.NOT_READY: SubState.NOT_READY,
    Readiness.TRANSIENT: SubState.TRANSIENT,
    Readiness.READY: SubState.READY,
}
_FROM_STATE = {wire: state for state, wire in _STATES.items()}
_FROM_READINESS = {wire: readiness for readiness, wire in _READINESS.items()}


@dataclass(frozen=True, slots=True)
class FarmStatus:
    """What a farm node announces: its state and readiness (UP Ready: in the balancing set)."""

    node: str
    state: FarmState
    readiness: Readiness


def wire_fields(status: FarmStatus) -> dict[str, object]:
    """Keyword arguments of `membership.wire.Heartbeat` that carry `status`."""
    return {"state": _STATES[status.state], "substate": _READINESS[status.readiness]}


def status_from(hb: Heartbeat) -> FarmStatus:
    """The sender's status. A state no farm node announces (a mirror's, from a peer configured
    with the wrong module on this port) reads as WAIT NotReady: heard, but not a member."""
    state = _FROM_STATE.get(hb.state)
    if state is None:
        return FarmStatus(hb.sender, FarmState.WAIT, Readiness.NOT_READY)
    return FarmStatus(hb.sender, state, _FROM_READINESS[hb.substate])
