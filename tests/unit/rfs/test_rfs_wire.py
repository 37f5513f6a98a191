"""rfs wire format: frames round trip, split anywhere; every corruption, forgery or replay is refused."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.rfs import wire
from safekit.rfs.wire import (
    FLAG_ACK,
    FLAG_DATASYNC,
    FLAG_LAST,
    HEADER,
    HEADER_SIZE,
    MAC_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    NONCE_SIZE,
    VERSION,
    Frame,
    FrameDecoder,
    FrameType,
    Reader,
    SequenceCheck,
    WireError,
    Writer,
    check_relpath,
    derive_hello_key,
    derive_session_key,
    encode_frame,
    encode_frame_parts,
)

CLUSTER_KEY = bytes(range(32))
KEY = derive_hello_key(CLUSTER_KEY, "mod")
OTHER_KEY = derive_hello_key(bytes(range(1, 33)), "mod")
SHORT = settings(max_examples=100, deadline=None)

U32 = st.integers(min_value=0, max_value=2**32 - 1)
U64 = st.integers(min_value=0, max_value=2**64 - 1)
frames = st.builds(
    Frame,
    type=st.sampled_from(FrameType),
    seq=U64,
    payload=st.binary(max_size=300),
    flags=st.integers(min_value=0, max_value=0xFFFF),
    dir=U32,
)


def decode_all(key: bytes, data: bytes) -> list[Frame]:
    dec = FrameDecoder(key)
    dec.feed(data)
    return list(dec.frames())


# --------------------------------------------------------------------------- layout and round trips
def test_header_layout_is_the_documented_one() -> None:
    frame = Frame(FrameType.WRITE, 0x0102030405060708, b"xyz", FLAG_ACK | FLAG_LAST, 7)
    data = encode_frame(KEY, frame)
    assert HEADER_SIZE == 24
    assert len(data) == HEADER_SIZE + 3 + MAC_SIZE
    assert data[:4] == b"SKRF"
    assert data[4] == VERSION
    assert data[5] == FrameType.WRITE
    assert data[6:8] == (FLAG_ACK | FLAG_LAST).to_bytes(2, "big")
    assert data[8:16] == bytes.fromhex("0102030405060708")
    assert data[16:20] == (3).to_bytes(4, "big")
    assert data[20:24] == (7).to_bytes(4, "big")
    assert data[24:27] == b"xyz"
    assert data[27:] == hmac.digest(KEY, data[:27], "sha256")


def test_the_documented_header_size_is_the_real_one() -> None:
    assert f"header  {HEADER_SIZE} bytes" in (wire.__doc__ or "")


@pytest.mark.parametrize("ftype", list(FrameType))
def test_every_frame_type_round_trips(ftype: FrameType) -> None:
    frame = Frame(ftype, 42, b"payload of " + ftype.name.encode(), FLAG_DATASYNC, 3)
    (back,) = decode_all(KEY, encode_frame(KEY, frame))
    assert back == frame
    assert back.type is ftype


@pytest.mark.parametrize("ftype", list(FrameType))
def test_every_frame_type_round_trips_with_an_empty_payload(ftype: FrameType) -> None:
    frame = Frame(ftype, 0)
    assert decode_all(KEY, encode_frame(KEY, frame)) == [frame]


@SHORT
@given(st.lists(frames, max_size=6))
def test_a_stream_of_frames_round_trips(batch: list[Frame]) -> None:
    data = b"".join(encode_frame(KEY, f) for f in batch)
    assert decode_all(KEY, data) == batch


@SHORT
@given(frames, st.lists(st.binary(max_size=50), max_size=5))
def test_encode_frame_parts_is_encode_frame(frame: Frame, parts: list[bytes]) -> None:
    payload = b"".join(parts)
    pieces = encode_frame_parts(
        KEY, frame.type, frame.seq, tuple(memoryview(p) for p in parts), frame.flags, frame.dir
    )
    joined = b"".join(bytes(p) for p in pieces)
    assert joined == encode_frame(KEY, Frame(frame.type, frame.seq, payload, frame.flags, frame.dir))


def test_a_frame_split_at_every_byte_boundary_still_decodes() -> None:
    first = Frame(FrameType.WRITE, 1, bytes(range(256)) * 2, FLAG_ACK, 1)
    second = Frame(FrameType.FSYNC, 2, b"", FLAG_DATASYNC)
    data = encode_frame(KEY, first) + encode_frame(KEY, second)
    for cut in range(len(data) + 1):
        dec = FrameDecoder(KEY)
        dec.feed(data[:cut])
        got = list(dec.frames())
        dec.feed(data[cut:])
        got += list(dec.frames())
        assert got == [first, second], cut
        assert dec.buffered == 0


def test_a_stream_fed_one_byte_at_a_time_decodes() -> None:
    batch = [Frame(FrameType.WRITE, n, bytes([n]) * n, 0, n % 3) for n in range(12)]
    data = b"".join(encode_frame(KEY, f) for f in batch)
    dec = FrameDecoder(KEY)
    got: list[Frame] = []
    for i in range(len(data)):
        dec.feed(data[i : i + 1])
        got += dec.frames()
    assert got == batch


@SHORT
@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_frames_split_at_random_points_decode(batch: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(KEY, f) for f in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    dec = FrameDecoder(KEY)
    got: list[Frame] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        dec.feed(memoryview(stream)[last:cut])
        got += dec.frames()
        last = cut
    assert got == batch


def test_the_decoder_buffer_stays_small_over_a_long_stream() -> None:
    dec = FrameDecoder(KEY)
    one = encode_frame(KEY, Frame(FrameType.PING, 0, b"x" * 1000))
    for _ in range(3000):
        dec.feed(one[:500])
        assert dec.next_frame() is None
        dec.feed(one[500:])
        assert dec.next_frame() is not None
    assert len(dec._buf) < 4 * len(one)


def test_the_key_can_change_between_frames() -> None:
    hello = encode_frame(KEY, Frame(FrameType.HELLO, 0, b"{}"))
    session = derive_session_key(CLUSTER_KEY, "mod", b"p" * NONCE_SIZE, b"s" * NONCE_SIZE)
    op = encode_frame(session, Frame(FrameType.CREATE, 1, b"c"))
    dec = FrameDecoder(KEY)
    dec.feed(hello + op)
    assert dec.next_frame() == Frame(FrameType.HELLO, 0, b"{}")
    dec.key = session
    assert dec.next_frame() == Frame(FrameType.CREATE, 1, b"c")


# --------------------------------------------------------------------------- refusals
def test_a_flipped_bit_anywhere_is_refused() -> None:
    frame = Frame(FrameType.WRITE, 5, b"some payload bytes", FLAG_ACK, 2)
    good = encode_frame(KEY, frame)
    length_field = range(16 * 8, 20 * 8)
    for bit in range(len(good) * 8):
        bad = bytearray(good)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        dec = FrameDecoder(KEY)
        dec.feed(bad)
        if bit in length_field:
            # a larger announced length: the decoder waits for the rest, then refuses it
            (announced,) = HEADER.unpack_from(bad)[5:6]
            if announced <= MAX_PAYLOAD and announced > len(frame.payload):
                assert dec.next_frame() is None
                dec.feed(bytes(announced - len(frame.payload)))
        with pytest.raises(WireError):
            dec.next_frame()


def test_a_wrong_key_is_refused() -> None:
    data = encode_frame(KEY, Frame(FrameType.HELLO, 0, b"{}"))
    with pytest.raises(WireError, match="authentication"):
        decode_all(OTHER_KEY, data)


def test_a_truncated_mac_never_yields_a_frame() -> None:
    data = encode_frame(KEY, Frame(FrameType.HELLO, 0, b"{}"))
    assert decode_all(KEY, data[:-1]) == []


def test_an_oversized_length_is_refused_from_the_header_alone() -> None:
    header = HEADER.pack(MAGIC, VERSION, FrameType.WRITE, 0, 0, MAX_PAYLOAD + 1, 0)
    dec = FrameDecoder(KEY)
    dec.feed(header)
    with pytest.raises(WireError, match="limit"):
        dec.next_frame()
    huge = HEADER.pack(MAGIC, VERSION, FrameType.WRITE, 0, 0, 0xFFFFFFFF, 0)
    dec = FrameDecoder(KEY)
    dec.feed(huge)
    with pytest.raises(WireError, match="limit"):
        dec.next_frame()


def test_the_largest_length_is_waited_for_not_refused() -> None:
    dec = FrameDecoder(KEY)
    dec.feed(HEADER.pack(MAGIC, VERSION, FrameType.WRITE, 0, 0, MAX_PAYLOAD, 0))
    assert dec.next_frame() is None
    assert dec.buffered == HEADER_SIZE


def test_encoding_an_oversized_payload_is_refused() -> None:
    with pytest.raises(WireError):
        encode_frame(KEY, Frame(FrameType.WRITE, 0, bytes(MAX_PAYLOAD + 1)))
    half = bytes(MAX_PAYLOAD // 2 + 1)
    with pytest.raises(WireError):
        encode_frame_parts(KEY, FrameType.WRITE, 0, (half, memoryview(half)))


def test_the_largest_payload_round_trips() -> None:
    frame = Frame(FrameType.WRITE, 9, bytes(MAX_PAYLOAD))
    assert decode_all(KEY, encode_frame(KEY, frame)) == [frame]


def test_bad_magic_is_refused_before_the_frame_is_whole() -> None:
    data = bytearray(encode_frame(KEY, Frame(FrameType.PING, 0, b"x" * 100)))
    data[0:4] = b"HTTP"
    dec = FrameDecoder(KEY)
    dec.feed(data[:HEADER_SIZE])
    with pytest.raises(WireError, match="magic"):
        dec.next_frame()


def test_bad_version_is_refused() -> None:
    header = HEADER.pack(MAGIC, VERSION + 1, FrameType.PING, 0, 0, 0, 0)
    data = header + hmac.digest(KEY, header, "sha256")
    with pytest.raises(WireError, match="version"):
        decode_all(KEY, data)


def test_an_authenticated_unknown_frame_type_is_refused() -> None:
    header = HEADER.pack(MAGIC, VERSION, 99, 0, 0, 0, 0)
    mac = hmac.new(KEY, header, hashlib.sha256).digest()
    with pytest.raises(WireError, match="unknown frame type"):
        decode_all(KEY, header + mac)


def test_garbage_before_a_frame_is_refused() -> None:
    data = b"\0" + encode_frame(KEY, Frame(FrameType.PING, 0))
    with pytest.raises(WireError):
        decode_all(KEY, data)


@SHORT
@given(st.binary(min_size=HEADER_SIZE + MAC_SIZE, max_size=200))
def test_random_bytes_never_decode(junk: bytes) -> None:
    dec = FrameDecoder(KEY)
    dec.feed(junk)
    with contextlib.suppress(WireError):
        assert dec.next_frame() is None


@SHORT
@given(
    st.sampled_from(FrameType), U64, st.binary(max_size=100), st.binary(min_size=MAC_SIZE, max_size=MAC_SIZE)
)
def test_a_forged_frame_never_decodes(ftype: FrameType, seq: int, payload: bytes, mac: bytes) -> None:
    header = HEADER.pack(MAGIC, VERSION, ftype, 0, seq, len(payload), 0)
    with pytest.raises(WireError, match="authentication"):
        decode_all(KEY, header + payload + mac)


# --------------------------------------------------------------------------- sessions and sequences
def test_session_keys_depend_on_every_input() -> None:
    p, s = b"p" * NONCE_SIZE, b"s" * NONCE_SIZE
    base = derive_session_key(CLUSTER_KEY, "mod", p, s)
    assert len(base) == 32
    assert base == derive_session_key(CLUSTER_KEY, "mod", p, s)
    others = {
        derive_session_key(bytes(32), "mod", p, s),
        derive_session_key(CLUSTER_KEY, "mod2", p, s),
        derive_session_key(CLUSTER_KEY, "mod", b"q" * NONCE_SIZE, s),
        derive_session_key(CLUSTER_KEY, "mod", p, b"t" * NONCE_SIZE),
        derive_session_key(CLUSTER_KEY, "mod", s, p),  # roles swapped
        derive_hello_key(CLUSTER_KEY, "mod"),
    }
    assert base not in others
    assert len(others) == 6
    assert derive_hello_key(CLUSTER_KEY, "a") != derive_hello_key(CLUSTER_KEY, "b")


def test_new_nonce_is_random_and_sized() -> None:
    nonces = {wire.new_nonce() for _ in range(20)}
    assert len(nonces) == 20
    assert all(len(n) == NONCE_SIZE for n in nonces)


def test_a_frame_recorded_in_one_session_is_refused_in_another() -> None:
    primary_nonce = wire.new_nonce()
    first = derive_session_key(CLUSTER_KEY, "mod", primary_nonce, wire.new_nonce())
    second = derive_session_key(CLUSTER_KEY, "mod", primary_nonce, wire.new_nonce())
    recorded = encode_frame(first, Frame(FrameType.WRITE, 1, b"\0\1a" + bytes(8) + b"data"))
    assert decode_all(first, recorded)
    with pytest.raises(WireError, match="authentication"):
        decode_all(second, recorded)
    # nor under the hello key, where a HELLO is expected
    with pytest.raises(WireError):
        decode_all(derive_hello_key(CLUSTER_KEY, "mod"), recorded)


def test_sequence_check_accepts_consecutive_numbers() -> None:
    check = SequenceCheck(7)
    for n in range(7, 20):
        check.check(Frame(FrameType.WRITE, n))
    assert check.expected == 20


@pytest.mark.parametrize(
    ("seqs", "bad_at"),
    [
        ([1, 2, 4], 2),  # gap
        ([1, 2, 2], 2),  # repeat
        ([1, 3, 2], 1),  # reorder
        ([0], 0),  # before the first
        ([1, 2, 1], 2),  # replay of an old one
    ],
)
def test_sequence_check_refuses_gaps_repeats_and_reorders(seqs: list[int], bad_at: int) -> None:
    check = SequenceCheck(1)
    for i, n in enumerate(seqs):
        if i == bad_at:
            with pytest.raises(WireError, match="sequence"):
                check.check(Frame(FrameType.WRITE, n))
            return
        check.check(Frame(FrameType.WRITE, n))
    pytest.fail("no refusal")


def test_a_refused_sequence_number_does_not_advance_the_counter() -> None:
    check = SequenceCheck(1)
    with pytest.raises(WireError):
        check.check(Frame(FrameType.WRITE, 5))
    check.check(Frame(FrameType.WRITE, 1))
    assert check.expected == 2


@SHORT
@given(st.lists(st.integers(0, 30), min_size=1, max_size=20))
def test_sequence_check_accepts_exactly_the_consecutive_prefix(seqs: list[int]) -> None:
    check = SequenceCheck(0)
    for i, n in enumerate(seqs):
        if n != i:
            with pytest.raises(WireError):
                check.check(Frame(FrameType.WRITE, n))
            return
        check.check(Frame(FrameType.WRITE, n))


# --------------------------------------------------------------------------- paths and payload codecs
@pytest.mark.parametrize(
    "path",
    [
        b"/etc/passwd",
        b"/",
        b"..",
        b".",
        b"../x",
        b"a/../../x",
        b"a/..",
        b"a/./b",
        b"./a",
        b"a//b",
        b"a/",
        b"/a",
        b"a\0b",
        b"\0",
    ],
)
def test_check_relpath_refuses_paths_leaving_the_directory(path: bytes) -> None:
    with pytest.raises(WireError):
        check_relpath(path)


@pytest.mark.parametrize("path", [b"", b"a", b"a/b/c", b"...", b"..a", b"a..", b".hidden", b"\xff\xfe/x y"])
def test_check_relpath_accepts_relative_paths(path: bytes) -> None:
    assert check_relpath(path) == path


@SHORT
@given(st.lists(st.binary(min_size=1, max_size=8).filter(lambda b: b"/" not in b), min_size=1, max_size=4))
def test_check_relpath_property(parts: list[bytes]) -> None:
    path = b"/".join(parts)
    bad = any(p in (b".", b"..") or b"\0" in p for p in parts)
    if bad:
        with pytest.raises(WireError):
            check_relpath(path)
    else:
        assert check_relpath(path) == path


def test_reader_refuses_a_path_with_dotdot() -> None:
    payload = Writer().path(b"a/../b").bytes()
    with pytest.raises(WireError):
        Reader(payload).path()


@SHORT
@given(st.integers(0, 255), U32, U64, st.integers(-(2**63), 2**63 - 1), st.binary(max_size=40))
def test_writer_reader_round_trip(a: int, b: int, c: int, d: int, blob: bytes) -> None:
    data = Writer().u8(a).u32(b).u64(c).i64(d).blob(blob).path(b"x/y").bytes()
    r = Reader(data)
    assert (r.u8(), r.u32(), r.u64(), r.i64(), r.blob(), r.path()) == (a, b, c, d, blob, b"x/y")
    r.end()
    for cut in range(len(data)):
        r = Reader(data[:cut])
        with pytest.raises(WireError, match="truncated"):
            r.u8(), r.u32(), r.u64(), r.i64(), r.blob(), r.path()


def test_reader_end_refuses_trailing_bytes_and_rest_takes_them() -> None:
    r = Reader(b"\0\0\0\1xyz")
    assert r.u32() == 1
    with pytest.raises(WireError, match="unexpected bytes"):
        r.end()
    assert r.rest() == b"xyz"
    r.end()


def test_writer_refuses_a_path_too_long() -> None:
    with pytest.raises(WireError):
        Writer().path(b"a" * 0x10000)
    assert len(Writer().path(b"a" * 0xFFFF).bytes()) == 2 + 0xFFFF
