"""The arbiter's datagrams: round trips, and everything a receiver must refuse without crashing."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.arbiter import wire
from safekit.arbiter.keys import cluster_id, derive_arbiter_key
from safekit.arbiter.leases import Reason

KEY = derive_arbiter_key(b"k" * 32)
CID = cluster_id(KEY)
WRONG_KEY = derive_arbiter_key(b"x" * 32)


def keys_for(cid: bytes) -> bytes | None:
    return KEY if cid == CID else None


def request(**changes: object) -> wire.Request:
    fields: dict[str, object] = {
        "kind": wire.Kind.REQUEST,
        "cluster": CID,
        "node": "node1",
        "module": "mirror-am",
        "nonce": os.urandom(16),
        "boot_id": os.urandom(16),
        "sequence": 7,
        "duration_ms": 3000,
    }
    fields.update(changes)
    return wire.Request(**fields)  # type: ignore[arg-type]


def answer(**changes: object) -> wire.Answer:
    fields: dict[str, object] = {
        "kind": wire.Kind.REQUEST,
        "cluster": CID,
        "nonce": os.urandom(16),
        "arbiter_boot_id": os.urandom(16),
        "reason": Reason.HELD,
        "remaining_ms": 812,
        "holder": "node2",
    }
    fields.update(changes)
    return wire.Answer(**fields)  # type: ignore[arg-type]


def resign(data: bytes, key: bytes = KEY) -> bytes:
    """Fix up the length field and the tag after a test edited the body: reaches the post-MAC checks."""
    body = bytearray(data[:-32])
    struct.pack_into(">H", body, 6, len(body) + 32)
    return bytes(body) + hmac.new(key, bytes(body), hashlib.sha256).digest()


@pytest.mark.parametrize("kind", list(wire.Kind))
def test_request_round_trip(kind: wire.Kind) -> None:
    msg = request(kind=kind, duration_ms=3000 if kind is wire.Kind.REQUEST else 0)
    assert wire.decode_request(wire.encode_request(msg, KEY), keys_for) == msg


def test_status_request_may_name_no_module() -> None:
    msg = request(kind=wire.Kind.STATUS, module="", duration_ms=0)
    assert wire.decode_request(wire.encode_request(msg, KEY), keys_for).module == ""


def test_answer_round_trip() -> None:
    msg = answer()
    assert wire.decode_answer(wire.encode_answer(msg, KEY), KEY) == msg
    granted = answer(reason=Reason.GRANTED, holder="node1", remaining_ms=3000)
    decoded = wire.decode_answer(wire.encode_answer(granted, KEY), KEY)
    assert decoded.granted and decoded.holder == "node1"
    grace = answer(reason=Reason.GRACE, holder="")
    assert wire.decode_answer(wire.encode_answer(grace, KEY), KEY).holder == ""


def test_status_answer_round_trip_and_truncation() -> None:
    entries = tuple(wire.LeaseEntry(f"module{i}", "node1", i * 10) for i in range(3))
    msg = answer(kind=wire.Kind.STATUS, reason=Reason.STATUS, holder="", entries=entries)
    assert wire.decode_answer(wire.encode_answer(msg, KEY), KEY) == msg
    many = tuple(wire.LeaseEntry("m" * 100 + str(i), "n" * 100, 1) for i in range(20))
    data = wire.encode_answer(
        answer(kind=wire.Kind.STATUS, reason=Reason.STATUS, holder="", entries=many), KEY
    )
    assert len(data) <= wire.MAX_DATAGRAM
    decoded = wire.decode_answer(data, KEY)
    assert decoded.truncated and 0 < len(decoded.entries) < 20
    assert decoded.entries == many[: len(decoded.entries)]


def test_tampered_request_is_refused() -> None:
    data = bytearray(wire.encode_request(request(), KEY))
    data[-40] ^= 0x01  # a byte of the module name
    with pytest.raises(wire.BadSignature):
        wire.decode_request(bytes(data), keys_for)
    data = bytearray(wire.encode_request(request(), KEY))
    data[-1] ^= 0x80  # the tag itself
    with pytest.raises(wire.BadSignature):
        wire.decode_request(bytes(data), keys_for)


def test_request_signed_with_another_key_is_refused() -> None:
    # Forged with the right cluster id but a key the forger guessed.
    with pytest.raises(wire.BadSignature):
        wire.decode_request(wire.encode_request(request(), WRONG_KEY), keys_for)


def test_request_for_an_unknown_cluster_is_refused() -> None:
    data = wire.encode_request(request(cluster=cluster_id(WRONG_KEY)), WRONG_KEY)
    with pytest.raises(wire.UnknownCluster, match="no key on this arbiter"):
        wire.decode_request(data, keys_for)


def test_answer_with_bad_mac_or_wrong_key_is_refused() -> None:
    data = bytearray(wire.encode_answer(answer(), KEY))
    data[50] ^= 0xFF  # remaining ms
    with pytest.raises(wire.BadSignature):
        wire.decode_answer(bytes(data), KEY)
    with pytest.raises(wire.BadSignature):
        wire.decode_answer(wire.encode_answer(answer(), WRONG_KEY), KEY)


def test_truncated_and_oversize_datagrams_are_refused() -> None:
    data = wire.encode_request(request(), KEY)
    for cut in (0, 3, 10, wire.MIN_REQUEST_SIZE - 1, len(data) - 1):
        with pytest.raises(wire.Truncated):
            wire.decode_request(data[:cut], keys_for)
    with pytest.raises(wire.Oversized):
        wire.decode_request(data + b"\0" * wire.MAX_DATAGRAM, keys_for)
    with pytest.raises(wire.Malformed, match="after the end"):
        wire.decode_request(data + b"\0", keys_for)
    with pytest.raises(wire.Truncated):
        wire.decode_answer(wire.encode_answer(answer(), KEY)[:-1], KEY)


def test_foreign_traffic_and_other_versions_are_refused() -> None:
    with pytest.raises(wire.BadMagic):
        wire.decode_request(b"GET / HTTP/1.1\r\n\r\n" + b"\0" * 100, keys_for)
    data = bytearray(wire.encode_request(request(), KEY))
    data[4] = wire.VERSION + 1
    with pytest.raises(wire.UnsupportedVersion):
        wire.decode_request(bytes(data), keys_for)


def version1_request() -> bytes:
    """A REQUEST exactly as a version 1 node sent it (no generation), correctly signed."""
    body = (
        struct.pack(">4sBBH8s16s16sQI", b"SKAR", 1, 1, 0, CID, os.urandom(16), os.urandom(16), 7, 3000)
        + b"\x05node1\x02am"
    )
    return resign(body + b"\0" * 32)


def version1_answer() -> bytes:
    """A granted answer exactly as a version 1 arbiter sent it, correctly signed."""
    body = (
        struct.pack(">4sBBH8s16s16sBBI", b"SKAR", 1, 0x81, 0, CID, os.urandom(16), os.urandom(16), 0, 1, 3000)
        + b"\x05node1"
    )
    return resign(body + b"\0" * 32)


def test_version_1_datagrams_are_refused_by_name_not_misread() -> None:
    """An old node's request, or an old arbiter's answer, is refused as an old version (never parsed
    with the new layout, which would read its names as a generation)."""
    with pytest.raises(wire.UnsupportedVersion, match="version 1; this side speaks versions 2 and 3"):
        wire.decode_request(version1_request(), keys_for)
    with pytest.raises(wire.UnsupportedVersion, match="version 1"):
        wire.decode_answer(version1_answer(), KEY)
    # also when the old datagram is shorter than the new minimum
    short = resign(
        struct.pack(">4sBBH8s16s16sQI", b"SKAR", 1, 3, 0, CID, b"n" * 16, b"b" * 16, 1, 0)
        + b"\x01a\x00"
        + b"\0" * 32
    )
    assert len(short) < wire.MIN_REQUEST_SIZE
    with pytest.raises(wire.UnsupportedVersion):
        wire.decode_request(short, keys_for)


@pytest.mark.parametrize("generation", [0, 1, 6, 2**32, 2**64 - 1])
def test_generations_round_trip(generation: int) -> None:
    msg = request(generation=generation)
    assert wire.decode_request(wire.encode_request(msg, KEY), keys_for).generation == generation
    for reason in (Reason.GRANTED, Reason.OUTDATED, Reason.RELEASED):
        ans = answer(reason=reason, generation=generation)
        assert wire.decode_answer(wire.encode_answer(ans, KEY), KEY) == ans


def test_status_entries_carry_generations_also_without_a_holder() -> None:
    entries = (wire.LeaseEntry("am1", "node1", 900, 6), wire.LeaseEntry("am2", "", 0, 2**64 - 1))
    msg = answer(kind=wire.Kind.STATUS, reason=Reason.STATUS, holder="", generation=0, entries=entries)
    decoded = wire.decode_answer(wire.encode_answer(msg, KEY), KEY)
    assert decoded.entries == entries


def test_generation_out_of_range_or_on_a_release_is_refused() -> None:
    with pytest.raises(ValueError, match="generation"):
        request(generation=2**64)
    with pytest.raises(ValueError, match="generation"):
        request(generation=-1)
    with pytest.raises(ValueError, match="carries no generation"):
        request(kind=wire.Kind.RELEASE, duration_ms=0, generation=3)
    release = bytearray(wire.encode_request(request(kind=wire.Kind.RELEASE, duration_ms=0), KEY))
    release[60:68] = (5).to_bytes(8, "big")
    with pytest.raises(wire.Malformed, match="no generation"):
        wire.decode_request(resign(bytes(release)), keys_for)


def test_answer_sent_to_the_arbiter_and_request_sent_to_a_client_are_refused() -> None:
    with pytest.raises(wire.ArbiterWireError):
        wire.decode_request(wire.encode_answer(answer(), KEY), keys_for)
    with pytest.raises(wire.Malformed):
        wire.decode_answer(wire.encode_request(request(), KEY), KEY)


def test_authentic_but_malformed_fields_are_refused() -> None:
    data = wire.encode_request(request(node="a"), KEY)
    bad_name = bytearray(data)
    bad_name[69] = ord("/")  # node "a" -> "/": not a name
    with pytest.raises(wire.Malformed, match="node name"):
        wire.decode_request(resign(bytes(bad_name)), keys_for)
    bad_kind = bytearray(data)
    bad_kind[5] = 9
    with pytest.raises(wire.Malformed, match="kind"):
        wire.decode_request(resign(bytes(bad_kind)), keys_for)
    no_duration = bytearray(data)
    no_duration[56:60] = b"\0\0\0\0"
    with pytest.raises(wire.Malformed, match="duration"):
        wire.decode_request(resign(bytes(no_duration)), keys_for)
    ans = bytearray(wire.encode_answer(answer(reason=Reason.HELD), KEY))
    ans[49] = wire.FLAG_GRANTED  # "granted" with reason HELD
    with pytest.raises(wire.Malformed, match="contradicts"):
        wire.decode_answer(resign(bytes(ans)), KEY)


def test_names_follow_the_config_rules() -> None:
    for bad in ("", "a b", "é", "x" * 129, "../etc"):
        with pytest.raises(ValueError, match="not a name"):
            request(node=bad)
    request(node="x" * 128, module="a.b-c_d")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1400))
def test_request_decoder_never_crashes_on_garbage(data: bytes) -> None:
    with contextlib.suppress(wire.ArbiterWireError):
        wire.decode_request(data, keys_for)
    with contextlib.suppress(wire.ArbiterWireError):
        wire.decode_answer(data, KEY)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.integers(0, 255), st.integers(0, 255))
def test_decoders_never_crash_on_authentic_garbage(tail: bytes, kind: int, flags: int) -> None:
    """Correctly signed bodies with random content: reaches every post-MAC check."""
    req = wire.MAGIC + bytes((wire.VERSION, kind)) + b"\0\0" + CID + tail
    with contextlib.suppress(wire.ArbiterWireError):
        wire.decode_request(resign(req + b"\0" * 32), keys_for)
    ans = (
        wire.MAGIC
        + bytes((wire.VERSION, kind))
        + b"\0\0"
        + CID
        + tail[:40].ljust(40, b"\0")
        + bytes((flags,))
        + tail[40:]
    )
    with contextlib.suppress(wire.ArbiterWireError):
        wire.decode_answer(resign(ans + b"\0" * 32), KEY)


# ------------------------------------------------------------------ version 3: confirmed generations


def test_version_3_requests_carry_the_confirmed_generation() -> None:
    v3 = request(generation=9, confirmed=4)
    v2 = request(generation=9)
    assert (v3.version, v2.version) == (3, 2)
    data3, data2 = wire.encode_request(v3, KEY), wire.encode_request(v2, KEY)
    assert (data3[4], data2[4]) == (3, 2) and len(data3) == len(data2) + 8
    assert wire.decode_request(data3, keys_for) == v3
    assert wire.decode_request(data2, keys_for).confirmed is None  # ranks (9, 9) at the arbiter


def test_a_confirmed_generation_above_the_generation_is_malformed() -> None:
    good = wire.encode_request(request(generation=5, confirmed=5), KEY)
    body = bytearray(good[: -wire.TAG_SIZE])
    struct.pack_into(">Q", body, 68, 6)  # confirmed 6 > generation 5, correctly signed
    with pytest.raises(wire.Malformed, match="confirmed generation 6 above the generation 5"):
        wire.decode_request(resign(bytes(body) + bytes(wire.TAG_SIZE)), keys_for)


def test_answers_in_both_versions() -> None:
    entries = (wire.LeaseEntry("am1", "node1", 900, 6, 4), wire.LeaseEntry("am2", "", 0, 8, 8))
    v3 = answer(
        kind=wire.Kind.STATUS, reason=Reason.STATUS, holder="", generation=6, confirmed=4, entries=entries
    )
    assert wire.decode_answer(wire.encode_answer(v3, KEY), KEY) == v3
    # version 2 (the answer to a version 2 request): no confirmed generations, read as equal
    v2 = answer(reason=Reason.OUTDATED, generation=6, confirmed=4, version=2)
    data = wire.encode_answer(v2, KEY)
    got = wire.decode_answer(data, KEY)
    assert data[4] == 2 and got.version == 2 and (got.generation, got.confirmed) == (6, 6)
