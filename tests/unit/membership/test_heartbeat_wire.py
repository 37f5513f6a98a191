"""Heartbeat wire format: round trips, and every way a packet must be refused."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import inspect
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.membership import wire
from safekit.membership.wire import (
    MAX_NAME_BYTES,
    MAX_PACKET_SIZE,
    BadMagic,
    BadSignature,
    Extension,
    Heartbeat,
    HeartbeatError,
    Malformed,
    ModuleState,
    Oversized,
    RoleIntent,
    SubState,
    Truncated,
    UnsupportedExtension,
    UnsupportedVersion,
    decode,
    encode,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
U64 = st.integers(min_value=0, max_value=2**64 - 1)
SHORT = settings(max_examples=200, deadline=None)

names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode("utf-8")) <= MAX_NAME_BYTES)
extensions = st.lists(
    st.tuples(st.integers(min_value=0, max_value=0x7FFF), st.binary(max_size=40)),
    max_size=4,
    unique_by=lambda pair: pair[0],
).map(lambda pairs: tuple(Extension(t, v) for t, v in pairs))

heartbeats = st.builds(
    Heartbeat,
    module=names,
    sender=names,
    target=names,
    lan=names,
    incarnation=U64,
    sequence=U64,
    sent_at_us=U64,
    echo_sent_at_us=U64,
    echo_hold_us=st.integers(min_value=0, max_value=2**32 - 1),
    state=st.sampled_from(ModuleState),
    substate=st.sampled_from(SubState),
    replica_generation=U64,
    up_to_date=st.booleans(),
    role_intent=st.sampled_from(RoleIntent),
    extensions=extensions,
)


def sample(**changes: object) -> Heartbeat:
    hb = Heartbeat(
        module="mirror",
        sender="node1",
        target="node2",
        lan="default",
        incarnation=1_700_000_000_000_000,
        sequence=42,
        sent_at_us=123_456,
        echo_sent_at_us=100_000,
        echo_hold_us=250,
        state=ModuleState.PRIM,
        substate=SubState.READY,
        replica_generation=7,
        up_to_date=True,
        role_intent=RoleIntent.PRIMARY,
    )
    return dataclasses.replace(hb, **changes)  # type: ignore[arg-type]


def resign(body: bytes, key: bytes = KEY) -> bytes:
    """Sign arbitrary bytes as a sender with the key would: tests what happens after authentication."""
    return body + hmac.new(key, body, hashlib.sha256).digest()


def with_length(body_without_tag: bytes) -> bytes:
    """Fix the length field of a hand-built body, then sign it."""
    length = len(body_without_tag) + wire.TAG_SIZE
    return resign(body_without_tag[:6] + struct.pack(">H", length) + body_without_tag[8:])


@SHORT
@given(heartbeats)
def test_round_trip(hb: Heartbeat) -> None:
    assert decode(encode(hb, KEY), KEY) == hb


@SHORT
@given(heartbeats, st.data())
def test_any_single_bit_flip_is_rejected(hb: Heartbeat, data: st.DataObject) -> None:
    packet = bytearray(encode(hb, KEY))
    bit = data.draw(st.integers(min_value=0, max_value=len(packet) * 8 - 1))
    packet[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(HeartbeatError):
        decode(bytes(packet), KEY)


def test_bit_flip_in_the_body_is_a_bad_signature() -> None:
    packet = bytearray(encode(sample(), KEY))
    packet[20] ^= 0x01  # inside the sequence number
    with pytest.raises(BadSignature):
        decode(bytes(packet), KEY)


def test_wrong_key_is_rejected() -> None:
    with pytest.raises(BadSignature):
        decode(encode(sample(), KEY), OTHER_KEY)


def test_layout_starts_with_magic_version_and_length() -> None:
    packet = encode(sample(), KEY)
    assert packet[:4] == b"SKHB"
    assert packet[4] == 1
    assert struct.unpack(">H", packet[6:8])[0] == len(packet)
    assert packet[-32:] == hmac.new(KEY, packet[:-32], hashlib.sha256).digest()


@pytest.mark.parametrize("cut", [1, 10, 32, 33])
def test_truncated_packet_is_rejected(cut: int) -> None:
    packet = encode(sample(), KEY)
    with pytest.raises(Truncated):
        decode(packet[:-cut], KEY)


@pytest.mark.parametrize("data", [b"", b"S", b"SKHB", b"SKHB" + bytes(50)])
def test_too_short_to_be_a_heartbeat(data: bytes) -> None:
    with pytest.raises(Truncated):
        decode(data, KEY)


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(Malformed):
        decode(encode(sample(), KEY) + b"\x00", KEY)


def test_oversized_datagram_is_rejected_before_parsing() -> None:
    with pytest.raises(Oversized):
        decode(b"SKHB" + bytes(MAX_PACKET_SIZE), KEY)


def test_encode_refuses_a_packet_over_the_size_bound() -> None:
    too_big = sample(extensions=(Extension(1, bytes(MAX_PACKET_SIZE)),))
    with pytest.raises(ValueError, match="more than"):
        encode(too_big, KEY)


def test_largest_names_fit_in_one_packet() -> None:
    name = "é" * (MAX_NAME_BYTES // 2)
    hb = sample(module=name, sender=name, target=name, lan=name)
    assert len(encode(hb, KEY)) <= MAX_PACKET_SIZE


def test_foreign_traffic_is_bad_magic() -> None:
    with pytest.raises(BadMagic):
        decode(b"GET / HTTP/1.1\r\n" + bytes(100), KEY)


def test_newer_version_is_reported_only_once_authentic() -> None:
    packet = encode(sample(), KEY)
    newer = bytearray(packet[:-32])
    newer[4] = 2
    with pytest.raises(UnsupportedVersion):
        decode(resign(bytes(newer)), KEY)
    with pytest.raises(BadSignature):
        decode(bytes(newer) + packet[-32:], KEY)


def test_unknown_optional_extension_is_passed_through() -> None:
    hb = sample(extensions=(Extension(0x0123, b"future"),))
    assert decode(encode(hb, KEY), KEY).extensions == (Extension(0x0123, b"future"),)


def test_unknown_critical_extension_is_refused() -> None:
    hb = sample(extensions=(Extension(0x80FE, b"must understand"),))
    with pytest.raises(UnsupportedExtension):
        decode(encode(hb, KEY), KEY)


def test_extension_running_past_the_end_is_malformed() -> None:
    body = encode(sample(), KEY)[:-32] + struct.pack(">HH", 5, 10) + b"abc"
    with pytest.raises(Malformed, match="past the end"):
        decode(with_length(body), KEY)


def test_duplicate_extension_is_malformed() -> None:
    body = encode(sample(), KEY)[:-32] + struct.pack(">HH", 5, 0) + struct.pack(">HH", 5, 0)
    with pytest.raises(Malformed, match="twice"):
        decode(with_length(body), KEY)


def test_unknown_state_value_is_malformed() -> None:
    body = bytearray(encode(sample(), KEY)[:-32])
    body[52] = 99
    with pytest.raises(Malformed):
        decode(resign(bytes(body)), KEY)


def test_invalid_utf8_name_is_malformed() -> None:
    body = bytearray(encode(sample(module="ab"), KEY)[:-32])
    body[wire.HEADER_SIZE + 1] = 0xFF
    with pytest.raises(Malformed, match="UTF-8"):
        decode(resign(bytes(body)), KEY)


def test_zero_length_name_is_malformed() -> None:
    body = bytearray(encode(sample(), KEY)[:-32])
    body[wire.HEADER_SIZE] = 0
    with pytest.raises(Malformed):
        decode(resign(bytes(body)), KEY)


def test_unknown_flag_and_reserved_bits_are_ignored_once_authentic() -> None:
    body = bytearray(encode(sample(up_to_date=False), KEY)[:-32])
    body[5] |= 0x80
    body[55] = 0xAA
    assert decode(resign(bytes(body)), KEY) == sample(up_to_date=False)


def test_up_has_its_own_wire_value() -> None:
    assert {s.name: s.value for s in ModuleState} == {
        "STOP": 0,
        "WAIT": 1,
        "ALONE": 2,
        "PRIM": 3,
        "SECOND": 4,
        "UP": 5,
    }


@pytest.mark.parametrize(
    "changes",
    [
        {"module": ""},
        {"sender": "x" * (MAX_NAME_BYTES + 1)},
        {"sequence": -1},
        {"incarnation": 2**64},
        {"echo_hold_us": 2**32},
        {"sequence": True},
        {"state": 3},
        {"extensions": (Extension(1, b""), Extension(1, b""))},
    ],
)
def test_invalid_fields_are_refused_at_construction(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        sample(**changes)


@pytest.mark.parametrize("key", [b"", b"short", bytes(33)])
def test_key_of_the_wrong_size_is_a_programming_error(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encode(sample(), key)
    with pytest.raises(ValueError, match="32 bytes"):
        decode(encode(sample(), KEY), key)


def test_wire_time_is_microseconds() -> None:
    assert wire.to_wire_us(1.5) == 1_500_000
    assert wire.to_wire_us(-1.0) == 0


# The test vector published in docs/heartbeat-protocol.md: an independent implementation must
# produce exactly these bytes, so a change here is a wire format change (bump VERSION).
VECTOR_HEX = (
    "534b4842010100790102030405060708000000000000002a00000000000f424000000000000dbba0000009c4"
    "000000000000000703020100066d6972726f72056e6f646531056e6f6465320764656661756c740123000268"
    "69adf06ea60b9d10be0037557aaf97a9a00e82c94a92621683204c98e6f001acfa"
)
VECTOR = Heartbeat(
    module="mirror",
    sender="node1",
    target="node2",
    lan="default",
    incarnation=0x0102030405060708,
    sequence=42,
    sent_at_us=1_000_000,
    echo_sent_at_us=900_000,
    echo_hold_us=2500,
    state=ModuleState.PRIM,
    substate=SubState.READY,
    replica_generation=7,
    up_to_date=True,
    role_intent=RoleIntent.PRIMARY,
    extensions=(Extension(0x0123, b"hi"),),
)


def test_published_test_vector() -> None:
    assert encode(VECTOR, KEY).hex() == VECTOR_HEX
    assert decode(bytes.fromhex(VECTOR_HEX), KEY) == VECTOR


# The link's packet writer (ADR 0085): a stream's names and status laid out once, per packet only
# the counters and clocks. It must write what `encode` writes, byte for byte.


@SHORT
@given(heartbeats, st.lists(st.tuples(U64, U64, U64, U64, st.integers(0, 2**32 - 1)), max_size=4))
def test_a_writer_made_once_writes_what_encode_writes_for_each_packet(
    template: Heartbeat, packets: list[tuple[int, int, int, int, int]]
) -> None:
    writer = wire.HeartbeatWriter(KEY, template)
    for incarnation, sequence, sent_at, echo_at, hold in packets:
        hb = dataclasses.replace(
            template,
            incarnation=incarnation,
            sequence=sequence,
            sent_at_us=sent_at,
            echo_sent_at_us=echo_at,
            echo_hold_us=hold,
        )
        data = writer.write(incarnation, sequence, sent_at, echo_at, hold)
        assert data == encode(hb, KEY)
        assert decode(data, KEY) == hb


def test_a_writer_refuses_a_counter_out_of_its_field() -> None:
    writer = wire.HeartbeatWriter(KEY, sample())
    with pytest.raises(ValueError, match="out of range"):
        writer.write(2**64, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="out of range"):
        writer.write(1, 1, 1, 0, 2**32)


def test_a_decoded_heartbeat_is_an_ordinary_heartbeat() -> None:
    """decode builds its Heartbeat without checking the fields again: it must be one all the same."""
    hb = sample(extensions=(Extension(0x0001, b"\x00" * 8),))
    got = decode(encode(hb, KEY), KEY)
    assert type(got) is Heartbeat
    assert got == hb
    assert hash(got) == hash(hb)
    assert dataclasses.replace(got, sequence=43) == dataclasses.replace(hb, sequence=43)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.sequence = 1  # type: ignore[misc]


def test_the_tag_is_hmac_sha256_with_each_key() -> None:
    body = encode(sample(), KEY)[: -wire.TAG_SIZE]
    for key in (KEY, OTHER_KEY, KEY):  # the keyed HMAC kept per key must not mix them up
        assert encode(sample(), key) == body + hmac.new(key, body, hashlib.sha256).digest()


def test_the_decoder_sets_every_field_of_a_heartbeat() -> None:
    """decode's constructor names each field: one added to Heartbeat must be added there too."""
    fields = [field.name for field in dataclasses.fields(Heartbeat)]
    assert list(inspect.signature(wire._checked_heartbeat).parameters) == fields
