"""A mirror node's status survives the heartbeat wire, and a status a node cannot read is refused."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.daemon.status_codec import (
    MIRROR_STATUS_EXTENSION,
    StatusDecodeError,
    status_from,
    wire_fields,
)
from safekit.lifecycle import Readiness
from safekit.membership import wire
from safekit.membership.wire import Extension, Heartbeat, RoleIntent, SubState
from safekit.mirror.states import Intent, ModuleState, NodeStatus, Role

KEY = bytes(range(32))

node_names = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30).filter(
    lambda s: len(s.encode()) <= wire.MAX_NAME_BYTES
)
# An empty name travels as "none": only None or a non-empty name can round trip.
optional_names = st.none() | node_names

statuses = st.builds(
    NodeStatus,
    node=node_names,
    state=st.sampled_from(ModuleState),
    readiness=st.sampled_from(Readiness),
    role=st.sampled_from(Role),
    generation=st.integers(min_value=0, max_value=2**64 - 1),
    uptodate=st.booleans(),
    intent=st.sampled_from(Intent),
    last_primary=optional_names,
    verdict=optional_names,
)


def heartbeat_of(status: NodeStatus, **overrides: object) -> Heartbeat:
    fields: dict[str, object] = {
        "module": "AM",
        "sender": status.node,
        "target": "node2",
        "lan": "default",
        "incarnation": 7,
        "sequence": 42,
        "sent_at_us": 1_000_000,
        **wire_fields(status),
    }
    fields.update(overrides)
    return Heartbeat(**fields)  # type: ignore[arg-type]


def over_the_wire(hb: Heartbeat) -> Heartbeat:
    return wire.decode(wire.encode(hb, KEY), KEY)


def with_extension_value(status: NodeStatus, value: bytes) -> Heartbeat:
    """An authentic heartbeat for `status` whose mirror status extension holds `value`."""
    return over_the_wire(heartbeat_of(status, extensions=(Extension(MIRROR_STATUS_EXTENSION, value),)))


SAMPLE = NodeStatus(
    node="node1",
    state=ModuleState.PRIM,
    readiness=Readiness.READY,
    role=Role.PRIMARY,
    generation=12,
    uptodate=True,
    intent=Intent.AUTO,
    last_primary="node1",
    verdict="node1",
)


def status_extension(status: NodeStatus) -> Extension:
    extensions = wire_fields(status)["extensions"]
    assert isinstance(extensions, tuple) and len(extensions) == 1
    ext = extensions[0]
    assert isinstance(ext, Extension)
    return ext


def sample_extension() -> bytes:
    return status_extension(SAMPLE).value


@settings(max_examples=300, deadline=None)
@given(statuses)
def test_every_status_round_trips_through_a_signed_heartbeat(status: NodeStatus) -> None:
    assert status_from(over_the_wire(heartbeat_of(status))) == status


@pytest.mark.parametrize("state", list(ModuleState))
@pytest.mark.parametrize("readiness", list(Readiness))
@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("intent", list(Intent))
def test_every_enum_combination_round_trips(
    state: ModuleState, readiness: Readiness, role: Role, intent: Intent
) -> None:
    status = dataclasses.replace(SAMPLE, state=state, readiness=readiness, role=role, intent=intent)
    assert status_from(over_the_wire(heartbeat_of(status))) == status


def test_fixed_fields_are_readable_without_the_extension() -> None:
    """A tool that ignores the extension still sees state, readiness, generation and coarse role."""
    hb = over_the_wire(heartbeat_of(SAMPLE))
    assert hb.state is wire.ModuleState.PRIM
    assert int(hb.state) == 3  # SafeKit's `state -lq` code for PRIM
    assert hb.substate is SubState.READY
    assert hb.replica_generation == 12
    assert hb.up_to_date is True
    assert hb.role_intent is RoleIntent.PRIMARY


@pytest.mark.parametrize(
    ("role", "coarse"),
    [
        (Role.PRIMARY, RoleIntent.PRIMARY),
        (Role.SECONDARY, RoleIntent.SECONDARY),
        (Role.CANDIDATE, RoleIntent.NONE),
        (Role.NONE, RoleIntent.NONE),
    ],
)
def test_coarse_role_intent(role: Role, coarse: RoleIntent) -> None:
    assert wire_fields(dataclasses.replace(SAMPLE, role=role))["role_intent"] is coarse


def test_the_status_extension_is_critical() -> None:
    """A node that cannot read the election status must drop the packet, not decide on half of it."""
    assert Extension(MIRROR_STATUS_EXTENSION, b"").critical


def test_name_longer_than_255_bytes_is_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="too long"):
        wire_fields(dataclasses.replace(SAMPLE, last_primary="n" * 256))


def test_heartbeat_without_the_extension_is_refused() -> None:
    hb = over_the_wire(heartbeat_of(SAMPLE, extensions=()))
    with pytest.raises(StatusDecodeError, match="node1 carries no mirror status"):
        status_from(hb)


def test_other_extensions_alone_are_not_a_status() -> None:
    hb = over_the_wire(heartbeat_of(SAMPLE, extensions=(Extension(0x0001, b"hint"),)))
    with pytest.raises(StatusDecodeError, match="no mirror status"):
        status_from(hb)


def test_a_non_critical_extension_beside_the_status_is_ignored() -> None:
    extensions = (Extension(0x0123, b"hint"), status_extension(SAMPLE))
    hb = over_the_wire(heartbeat_of(SAMPLE, extensions=extensions))
    assert status_from(hb) == SAMPLE


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_extension_version_is_refused(version: int) -> None:
    value = bytes([version]) + sample_extension()[1:]
    with pytest.raises(StatusDecodeError, match=f"version {version} unknown"):
        status_from(with_extension_value(SAMPLE, value))


def test_every_truncation_of_the_extension_is_refused() -> None:
    value = sample_extension()
    for size in range(len(value)):
        with pytest.raises(StatusDecodeError):
            status_from(with_extension_value(SAMPLE, value[:size]))


def test_trailing_bytes_in_the_extension_are_refused() -> None:
    with pytest.raises(StatusDecodeError, match="trailing bytes"):
        status_from(with_extension_value(SAMPLE, sample_extension() + b"\x00"))


@pytest.mark.parametrize(("role_code", "intent_code"), [(4, 0), (0, 4), (255, 255)])
def test_unknown_role_or_intent_code_is_refused(role_code: int, intent_code: int) -> None:
    value = struct.pack(">BBB", 1, role_code, intent_code) + b"\x00\x00"
    with pytest.raises(StatusDecodeError, match="unreadable mirror status"):
        status_from(with_extension_value(SAMPLE, value))


def test_name_that_is_not_utf8_is_refused() -> None:
    value = struct.pack(">BBB", 1, 0, 0) + b"\x02\xff\xfe" + b"\x00"
    with pytest.raises(StatusDecodeError, match="unreadable mirror status"):
        status_from(with_extension_value(SAMPLE, value))


def test_farm_up_state_is_not_a_mirror_status() -> None:
    hb = over_the_wire(heartbeat_of(SAMPLE, state=wire.ModuleState.UP))
    with pytest.raises(StatusDecodeError, match="node1"):
        status_from(hb)


def test_decode_error_is_a_value_error() -> None:
    """Callers that drop unreadable peers with `except ValueError` keep working."""
    assert issubclass(StatusDecodeError, ValueError)


# --- the confirmed generation (ADR 0045) ---------------------------------------------------------


@given(
    st.integers(min_value=1, max_value=2**64 - 1).flatmap(
        lambda gen: st.tuples(st.just(gen), st.integers(min_value=0, max_value=gen - 1))
    )
)
def test_a_confirmed_generation_below_the_generation_round_trips(numbers: tuple[int, int]) -> None:
    gen, confirmed = numbers
    status = dataclasses.replace(SAMPLE, generation=gen, confirmed=confirmed)
    assert status_from(over_the_wire(heartbeat_of(status))) == status


def test_the_confirmed_generation_travels_only_when_it_says_more() -> None:
    assert len(heartbeat_of(SAMPLE).extensions) == 1
    hb = heartbeat_of(dataclasses.replace(SAMPLE, confirmed=9))
    (extra,) = [e for e in hb.extensions if e.type == wire.EXTENSION_REPLICA_CONFIRMED]
    # Optional: a node of an older version skips it and compares the fixed generation, as before.
    assert not extra.critical
    assert extra.value == (9).to_bytes(8, "big")


def test_a_peer_that_does_not_announce_it_ranks_by_its_generation() -> None:
    status = status_from(over_the_wire(heartbeat_of(SAMPLE)))
    assert status.confirmed is None
    assert status.rank == (12, 12)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"\x00" * 7, "of 7 bytes"),
        (b"\x00" * 9, "of 9 bytes"),
        ((13).to_bytes(8, "big"), "above its generation"),
    ],
)
def test_a_broken_confirmed_generation_is_refused(value: bytes, words: str) -> None:
    extensions = (status_extension(SAMPLE), Extension(wire.EXTENSION_REPLICA_CONFIRMED, value))
    with pytest.raises(StatusDecodeError, match=words):
        status_from(over_the_wire(heartbeat_of(SAMPLE, extensions=extensions)))


def test_a_forced_primarys_base_travels_optional_and_round_trips() -> None:
    """ADR 0047: a primary made by primforce says what its copy held before the force."""
    status = dataclasses.replace(SAMPLE, forced_base=7)
    hb = heartbeat_of(status)
    (extra,) = [e for e in hb.extensions if e.type == wire.EXTENSION_FORCED_BASE]
    assert not extra.critical and extra.value == (7).to_bytes(8, "big")
    assert status_from(over_the_wire(hb)) == status
    assert status_from(over_the_wire(heartbeat_of(SAMPLE))).forced_base is None


def test_a_broken_forced_base_is_refused() -> None:
    extensions = (status_extension(SAMPLE), Extension(wire.EXTENSION_FORCED_BASE, b"\x00" * 5))
    with pytest.raises(StatusDecodeError, match="forced base generation of 5 bytes"):
        status_from(over_the_wire(heartbeat_of(SAMPLE, extensions=extensions)))


def test_a_primarys_shared_generation_travels_optional_and_round_trips() -> None:
    """ADR 0072: a primary says where its copy and the peer's were last the same."""
    status = dataclasses.replace(SAMPLE, shared=4)
    hb = heartbeat_of(status)
    (extra,) = [e for e in hb.extensions if e.type == wire.EXTENSION_SHARED_GENERATION]
    assert not extra.critical and extra.value == (4).to_bytes(8, "big")
    assert status_from(over_the_wire(hb)) == status
    assert status_from(over_the_wire(heartbeat_of(SAMPLE))).shared is None


def test_a_broken_shared_generation_is_refused() -> None:
    extensions = (status_extension(SAMPLE), Extension(wire.EXTENSION_SHARED_GENERATION, b"\x00" * 3))
    with pytest.raises(StatusDecodeError, match="shared generation of 3 bytes"):
        status_from(over_the_wire(heartbeat_of(SAMPLE, extensions=extensions)))
