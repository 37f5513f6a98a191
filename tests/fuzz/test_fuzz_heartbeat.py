"""Fuzz the heartbeat decoder (membership.wire), the receive path (membership.receiver) and the
mirror status extension (daemon.status_codec): the bytes of the heartbeat port are untrusted.

Contract: `decode` returns a Heartbeat or raises a `HeartbeatError` subclass with a message;
valid packets round-trip; a packet changed by anyone without the cluster key is never accepted;
a packet re-signed after the change (a buggy or newer peer) is parsed or refused, never crashes.
The receiver never raises and counts every packet exactly once.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from fuzz_support import count, fuzz_settings, mutated, run_decoder, timeout_seconds
from hypothesis import given
from hypothesis import strategies as st

from safekit.daemon.status_codec import StatusDecodeError, status_from, wire_fields
from safekit.lifecycle import Readiness
from safekit.membership import wire
from safekit.membership.counters import Counters
from safekit.membership.liveness import LanTiming, Liveness
from safekit.membership.receiver import HeartbeatReceiver
from safekit.membership.wire import (
    MAX_NAME_BYTES,
    MAX_PACKET_SIZE,
    TAG_SIZE,
    BadSignature,
    Extension,
    Heartbeat,
    HeartbeatError,
    ModuleState,
    RoleIntent,
    SubState,
)
from safekit.mirror.states import Intent, NodeStatus, Role
from safekit.mirror.states import ModuleState as MirrorState

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
U64 = st.integers(0, 2**64 - 1)

pytestmark = pytest.mark.timeout(timeout_seconds())


def _name(max_bytes: int = MAX_NAME_BYTES) -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=24).filter(
        lambda s: 1 <= len(s.encode()) <= max_bytes
    ) | st.sampled_from(("web", "node1", "node2", "default", "é" * 64, "x" * MAX_NAME_BYTES))


def _extensions() -> st.SearchStrategy[tuple[Extension, ...]]:
    hint = st.builds(Extension, st.integers(0, 0x7FFF), st.binary(max_size=40))
    known = st.builds(Extension, st.just(wire.EXTENSION_MIRROR_STATUS), st.binary(max_size=40))
    return st.lists(hint | known, max_size=4, unique_by=lambda e: e.type).map(tuple)


heartbeats = st.builds(
    Heartbeat,
    module=_name(),
    sender=_name(),
    target=_name(),
    lan=_name(),
    incarnation=U64,
    sequence=U64,
    sent_at_us=U64,
    echo_sent_at_us=U64,
    echo_hold_us=st.integers(0, 2**32 - 1),
    state=st.sampled_from(ModuleState),
    substate=st.sampled_from(SubState),
    replica_generation=U64,
    up_to_date=st.booleans(),
    role_intent=st.sampled_from(RoleIntent),
    extensions=_extensions(),
)


@st.composite
def packets(draw: st.DrawFn) -> tuple[Heartbeat, bytes]:
    """A valid heartbeat and its bytes (redrawn if the names and extensions do not fit 1200 bytes)."""
    while True:
        hb = draw(heartbeats)
        try:
            return hb, wire.encode(hb, KEY)
        except ValueError:
            continue


def _resign(data: bytes) -> bytes:
    """What a peer holding the key would send: the changed body with a valid tag and length field."""
    body = bytearray(data[:-TAG_SIZE] if len(data) > TAG_SIZE else data)
    if len(body) >= 8:
        body[6:8] = (len(body) + TAG_SIZE).to_bytes(2, "big") if len(body) + TAG_SIZE <= 0xFFFF else body[6:8]
    return bytes(body) + hmac.new(KEY, bytes(body), hashlib.sha256).digest()


def _decode(data: bytes, key: bytes = KEY) -> tuple[Heartbeat | None, BaseException | None]:
    hb, error = run_decoder("heartbeat decode", lambda: wire.decode(data, key), HeartbeatError)
    if hb is not None:
        assert isinstance(hb, Heartbeat)
        # Whatever was accepted is canonical: it encodes and decodes to itself.
        assert wire.decode(wire.encode(hb, key), key) == hb
    return hb, error


@given(packets())
@fuzz_settings()
def test_valid_heartbeats_round_trip(packet: tuple[Heartbeat, bytes]) -> None:
    count("heartbeat: valid round trip")
    hb, data = packet
    assert len(data) <= MAX_PACKET_SIZE
    assert wire.decode(data, KEY) == hb
    with pytest.raises(BadSignature):
        wire.decode(data, OTHER_KEY)


@given(st.data())
@fuzz_settings()
def test_a_changed_packet_is_never_accepted_without_the_key(data: st.DataObject) -> None:
    count("heartbeat: mutated, unsigned")
    _, original = data.draw(packets())
    changed = data.draw(mutated(original))
    hb, error = _decode(changed)
    if changed != original:
        assert hb is None, f"accepted a packet changed without the key: {changed!r}"
        assert isinstance(error, HeartbeatError)


@given(st.data())
@fuzz_settings()
def test_a_changed_and_re_signed_packet_is_parsed_or_refused(data: st.DataObject) -> None:
    count("heartbeat: mutated, re-signed")
    _, original = data.draw(packets())
    if data.draw(st.booleans(), label="keep magic and version"):
        changed = _resign(original[:5] + data.draw(mutated(original[5:])))
    else:
        changed = _resign(data.draw(mutated(original)))
    hb, error = _decode(changed)
    if len(changed) > MAX_PACKET_SIZE:
        assert isinstance(error, wire.Oversized)
    if hb is not None:
        assert not any(
            ext.critical and ext.type not in wire.KNOWN_CRITICAL_EXTENSIONS for ext in hb.extensions
        )


@given(st.binary(max_size=MAX_PACKET_SIZE + 64) | st.binary(max_size=200).map(lambda b: wire.MAGIC + b))
@fuzz_settings()
def test_raw_bytes_are_refused(data: bytes) -> None:
    count("heartbeat: raw bytes")
    hb, error = _decode(data)
    assert hb is None and isinstance(error, HeartbeatError)
    # ... and so are the same bytes signed, unless they happen to be a heartbeat.
    _decode(_resign(data))


def _receiver() -> HeartbeatReceiver:
    lans = {"lan1": LanTiming(pulse=0.1, timeout=1.0), "lan2": LanTiming(pulse=0.1, timeout=1.0)}
    return HeartbeatReceiver(
        key=KEY, local_node="node1", module="web", liveness=Liveness(lans, {"node2": ["lan1", "lan2"]})
    )


def _total(counters: Counters) -> int:
    return (
        counters.received
        + counters.dropped_bad_signature
        + counters.dropped_malformed
        + counters.dropped_misdirected
        + counters.dropped_replay
        + counters.dropped_stale
    )


@given(st.data())
@fuzz_settings()
def test_the_receiver_never_raises_and_counts_every_packet(data: st.DataObject) -> None:
    count("heartbeat: receiver")
    receiver = _receiver()
    base = Heartbeat(
        module="web",
        sender="node2",
        target="node1",
        lan="lan1",
        incarnation=data.draw(U64),
        sequence=data.draw(U64),
        sent_at_us=data.draw(U64),
        state=ModuleState.SECOND,
        substate=SubState.READY,
    )
    original = wire.encode(base, KEY)
    now = 1000.0
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(("valid", "unsigned", "re-signed", "raw")))
        if kind == "valid":
            packet = original
        elif kind == "unsigned":
            packet = data.draw(mutated(original))
        elif kind == "re-signed":
            packet = _resign(data.draw(mutated(original)))
        else:
            packet = data.draw(st.binary(max_size=300))
        lan = data.draw(st.sampled_from(("lan1", "lan2", "lan3")))
        before = _total(receiver.counters(lan))
        now += data.draw(st.floats(0, 5))
        with_hb = receiver.receive(packet, lan=lan, now=now)
        assert _total(receiver.counters(lan)) == before + 1
        if (with_hb.heartbeat is None and with_hb.verdict is None) or with_hb.stale:
            assert with_hb.reason, "a dropped packet says why"
        receiver.tick(now)


# --------------------------------------------------------------------------- mirror status extension

statuses = st.builds(
    NodeStatus,
    node=st.just("node2"),
    state=st.sampled_from(MirrorState),
    readiness=st.sampled_from(Readiness),
    role=st.sampled_from(Role),
    generation=U64,
    uptodate=st.booleans(),
    intent=st.sampled_from(Intent),
    last_primary=st.none() | _name(60),
    verdict=st.none() | _name(60),
)


def _carrying(status: NodeStatus, extensions: tuple[Extension, ...] | None = None) -> Heartbeat:
    fields = wire_fields(status)
    if extensions is not None:
        fields["extensions"] = extensions
    return Heartbeat(
        module="web",
        sender=status.node,
        target="node1",
        lan="lan1",
        incarnation=1,
        sequence=1,
        sent_at_us=1,
        **fields,  # type: ignore[arg-type]
    )


@given(statuses)
@fuzz_settings()
def test_mirror_status_round_trips_through_the_wire(status: NodeStatus) -> None:
    count("mirror status: round trip")
    hb = _carrying(status)
    assert status_from(wire.decode(wire.encode(hb, KEY), KEY)) == status


@given(st.data())
@fuzz_settings()
def test_a_damaged_mirror_status_is_refused_with_a_reason(data: st.DataObject) -> None:
    count("mirror status: mutated")
    status = data.draw(statuses)
    (ext,) = wire_fields(status)["extensions"]  # type: ignore[misc]
    value = data.draw(mutated(ext.value) | st.binary(max_size=80))
    hb = _carrying(status, (Extension(ext.type, value),))
    decoded, error = run_decoder("mirror status", lambda: status_from(hb), StatusDecodeError)
    if decoded is not None:
        assert isinstance(decoded, NodeStatus)
        assert decoded.node == "node2"
        assert _carrying(decoded).extensions[0].value == value, "an accepted status is canonical"
    else:
        assert isinstance(error, StatusDecodeError)
