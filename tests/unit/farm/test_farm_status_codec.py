"""A farm node's state and readiness survive the heartbeat wire; a mirror's state reads as not a member."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from safekit.farm.states import FarmState
from safekit.farm.status_codec import FarmStatus, status_from, wire_fields
from safekit.lifecycle import Readiness
from safekit.membership import wire
from safekit.membership.wire import Heartbeat, SubState
from safekit.membership.wire import ModuleState as WireState

KEY = bytes(range(32))


def heartbeat(sender: str, **fields: object) -> Heartbeat:
    return Heartbeat(
        module="web",
        sender=sender,
        target="node1",
        lan="default",
        incarnation=1,
        sequence=1,
        sent_at_us=1,
        **fields,  # type: ignore[arg-type]
    )


@given(st.sampled_from(FarmState), st.sampled_from(Readiness))
def test_a_farm_status_round_trips(state: FarmState, readiness: Readiness) -> None:
    status = FarmStatus("node2", state, readiness)
    packet = wire.decode(wire.encode(heartbeat("node2", **wire_fields(status)), KEY), KEY)
    assert status_from(packet) == status


def test_the_wire_values_are_safekits() -> None:
    assert wire_fields(FarmStatus("n", FarmState.UP, Readiness.READY)) == {
        "state": WireState.UP,
        "substate": SubState.READY,
    }
    assert wire_fields(FarmStatus("n", FarmState.STOP, Readiness.NOT_READY)) == {
        "state": WireState.STOP,
        "substate": SubState.NOT_READY,
    }


def test_a_mirror_state_is_heard_but_never_a_member() -> None:
    for state in (WireState.ALONE, WireState.PRIM, WireState.SECOND):
        status = status_from(heartbeat("node3", state=state, substate=SubState.READY))
        assert status == FarmStatus("node3", FarmState.WAIT, Readiness.NOT_READY)
