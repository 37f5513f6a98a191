"""Fuzz the replication stream (rfs.wire.FrameDecoder) and the payload decoders (rfs.ops): the
secondary reads them from a TCP connection, the primary reads the secondary's answers.

Contract: only `WireError` (with a message) comes out of a decoder; frames round-trip whatever
the chunking of the stream; a stream damaged by anyone without the key yields only the frames
before the damage, intact, and then an error or a wait for more bytes - never a changed frame; a
length field out of range is refused before anything is allocated; a decoded operation's paths
never leave the replicated directory, and it re-encodes to the very payload it came from.
"""

from __future__ import annotations

import json

import pytest
from fuzz_support import count, fuzz_settings, mutated, run_decoder, timeout_seconds
from hypothesis import given
from hypothesis import strategies as st

from safekit.rfs import ops
from safekit.rfs.wire import (
    APPLIED,
    HEADER,
    HEADER_SIZE,
    MAC_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    VERSION,
    Frame,
    FrameDecoder,
    FrameType,
    WireError,
    check_relpath,
    encode_frame,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)

pytestmark = pytest.mark.timeout(timeout_seconds())

_component = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\0" not in b
) | st.sampled_from((b"a", b"file.txt", b"..a", b".hidden", b"\xff\xfe", "é".encode()))
relpaths = st.lists(_component.filter(lambda c: c not in (b".", b"..")), max_size=4).map(b"/".join)
nonempty_relpaths = relpaths.filter(bool)
blobs = st.binary(max_size=64)

operations: st.SearchStrategy[ops.Operation] = st.one_of(
    st.builds(ops.Create, nonempty_relpaths, U32, U32, U32),
    st.builds(ops.Write, nonempty_relpaths, U64, st.binary(max_size=200)),
    st.builds(ops.Truncate, nonempty_relpaths, U64),
    st.builds(ops.Fallocate, nonempty_relpaths, U32, U64, U64),
    st.builds(ops.SetAttr, relpaths, U32, U32, U32, U32, I64, I64, U64),
    st.builds(ops.SetXattr, relpaths, blobs, blobs),
    st.builds(ops.RemoveXattr, relpaths, blobs),
    st.builds(ops.Mkdir, nonempty_relpaths, U32, U32, U32),
    st.builds(ops.Rmdir, nonempty_relpaths),
    st.builds(ops.Unlink, nonempty_relpaths),
    st.builds(ops.Rename, nonempty_relpaths, nonempty_relpaths, U32),
    st.builds(ops.Symlink, nonempty_relpaths, blobs, U32, U32),
    st.builds(ops.Mknod, nonempty_relpaths, U32, U64, U32, U32),
    st.builds(ops.Fsync, relpaths, st.booleans()),
    st.builds(ops.RemoveTree, relpaths),
    st.builds(ops.ClearXattrs, relpaths),
)

frames = st.builds(
    Frame,
    type=st.sampled_from(FrameType),
    seq=U64,
    payload=st.binary(max_size=300),
    flags=st.integers(0, 0xFFFF),
    dir=U32,
)


def _paths(op: ops.Operation) -> list[bytes]:
    if isinstance(op, ops.Rename):
        return [op.old, op.new]
    return [op.path]


def _decode_stream(stream: bytes, cuts: list[int], key: bytes = KEY) -> tuple[list[Frame], WireError | None]:
    """Feed `stream` cut at `cuts`; the frames that came out, and the error that stopped it."""
    decoder = FrameDecoder(key)
    out: list[Frame] = []
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:
        decoder.feed(stream[previous:cut])
        previous = cut
        got, error = run_decoder("frame decoder", lambda: list(decoder.frames()), WireError)
        if error is not None:
            return out, error  # type: ignore[return-value]
        out.extend(got)
    # Anything not decoded is an incomplete frame the decoder is waiting for: never more than
    # was fed, and never a whole frame left behind.
    assert decoder.buffered <= len(stream)
    return out, None


@given(st.lists(frames, max_size=6), st.lists(st.integers(0, 4000), max_size=5))
@fuzz_settings()
def test_frames_round_trip_however_the_stream_is_cut(sent: list[Frame], cuts: list[int]) -> None:
    count("rfs frames: valid stream")
    stream = b"".join(encode_frame(KEY, f) for f in sent)
    received, error = _decode_stream(stream, [c for c in cuts if c <= len(stream)])
    assert error is None
    assert received == sent


@given(st.data())
@fuzz_settings()
def test_a_damaged_stream_yields_only_intact_frames_before_the_damage(data: st.DataObject) -> None:
    count("rfs frames: mutated stream")
    sent = data.draw(st.lists(frames, min_size=1, max_size=4))
    encoded = [encode_frame(KEY, f) for f in sent]
    stream = b"".join(encoded)
    damaged = data.draw(mutated(stream))
    cuts = data.draw(st.lists(st.integers(0, len(damaged)), max_size=3))
    received, error = _decode_stream(damaged, cuts)
    # The frames that came out are the first ones sent, unchanged ...
    assert received == sent[: len(received)]
    # ... and only those whose bytes were not touched.
    intact = 0
    offset = 0
    for chunk in encoded:
        if damaged[offset : offset + len(chunk)] != chunk:
            break
        intact += 1
        offset += len(chunk)
    assert len(received) <= intact or damaged == stream
    if error is not None:
        assert isinstance(error, WireError)


@given(st.lists(frames, min_size=1, max_size=3))
@fuzz_settings()
def test_frames_under_another_key_are_refused(sent: list[Frame]) -> None:
    count("rfs frames: wrong key")
    stream = b"".join(encode_frame(OTHER_KEY, f) for f in sent)
    received, error = _decode_stream(stream, [])
    assert received == []
    assert isinstance(error, WireError)


@given(
    st.integers(MAX_PAYLOAD + 1, 2**32 - 1) | st.sampled_from((MAX_PAYLOAD + 1, 2**32 - 1)),
    st.sampled_from(FrameType),
)
@fuzz_settings()
def test_a_length_above_the_limit_is_refused_from_the_header_alone(length: int, kind: FrameType) -> None:
    count("rfs frames: huge length")
    decoder = FrameDecoder(KEY)
    decoder.feed(HEADER.pack(MAGIC, VERSION, kind, 0, 1, length, 0))
    _, error = run_decoder("frame decoder", decoder.next_frame, WireError)
    assert isinstance(error, WireError)
    assert decoder.buffered == HEADER_SIZE, "nothing allocated for the announced payload"


@given(st.integers(0, MAX_PAYLOAD), st.binary(max_size=100))
@fuzz_settings()
def test_a_length_within_the_limit_waits_for_the_bytes(length: int, some: bytes) -> None:
    count("rfs frames: partial frame")
    decoder = FrameDecoder(KEY)
    data = HEADER.pack(MAGIC, VERSION, FrameType.WRITE, 0, 1, length, 0) + some
    decoder.feed(data)
    frame, error = run_decoder("frame decoder", decoder.next_frame, WireError)
    if len(some) < length + MAC_SIZE:
        assert frame is None and error is None, "an incomplete frame is waited for"
        assert decoder.buffered == len(data)
    else:
        assert frame is None and isinstance(error, WireError), "its MAC is not a valid one"


@given(st.binary(max_size=600) | st.binary(max_size=200).map(lambda b: MAGIC + bytes((VERSION,)) + b))
@fuzz_settings()
def test_raw_bytes_never_make_a_frame(data: bytes) -> None:
    count("rfs frames: raw bytes")
    received, _ = _decode_stream(data, [])
    assert received == []


# --------------------------------------------------------------------------- operations


@given(operations)
@fuzz_settings()
def test_operations_round_trip(op: ops.Operation) -> None:
    count("rfs ops: valid round trip")
    payload = op.encode()
    assert ops.decode_op(op.type, payload, ops.op_flags(op)) == op


def _check_decoded(op: ops.Operation, kind: FrameType, payload: bytes, flags: int) -> None:
    assert op.type is kind
    for path in _paths(op):
        assert check_relpath(path) == path  # never absolute, no NUL, no '.' or '..'
    assert op.encode() == payload, "an accepted payload is the canonical encoding of its operation"
    if kind is FrameType.FSYNC:
        assert ops.op_flags(op) == flags & ops.FLAG_DATASYNC


@given(st.data())
@fuzz_settings()
def test_a_damaged_operation_is_refused_or_decoded_safely(data: st.DataObject) -> None:
    count("rfs ops: mutated payload")
    op = data.draw(operations)
    payload = data.draw(mutated(op.encode()))
    flags = data.draw(st.integers(0, 0xFFFF))
    decoded, error = run_decoder("decode_op", lambda: ops.decode_op(op.type, payload, flags), WireError)
    if decoded is not None:
        _check_decoded(decoded, op.type, payload, flags)
    else:
        assert isinstance(error, WireError)


@given(st.sampled_from(FrameType), st.binary(max_size=300), st.integers(0, 0xFFFF))
@fuzz_settings()
def test_raw_payloads_of_any_frame_type(kind: FrameType, payload: bytes, flags: int) -> None:
    count("rfs ops: raw payload")
    decoded, error = run_decoder("decode_op", lambda: ops.decode_op(kind, payload, flags), WireError)
    if kind not in APPLIED:
        assert isinstance(error, WireError), f"{kind.name} is not an operation"
    if decoded is not None:
        _check_decoded(decoded, kind, payload, flags)


@given(st.data())
@fuzz_settings()
def test_acknowledgements(data: st.DataObject) -> None:
    count("rfs ack")
    values = (data.draw(U64), data.draw(U64), data.draw(U64))
    payload = ops.encode_ack(*values)
    assert ops.decode_ack(payload) == values
    damaged = data.draw(mutated(payload) | st.binary(max_size=40))
    decoded, _ = run_decoder("decode_ack", lambda: ops.decode_ack(damaged), WireError)
    if decoded is not None:
        assert ops.encode_ack(*decoded) == damaged


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@given(
    st.dictionaries(st.text(max_size=10), json_values, max_size=5).map(ops.encode_json)
    | st.binary(max_size=200)
    | st.integers(1, 200_000).map(_nested)
    | st.integers(1, 200_000).map(lambda n: b"[" * n)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
@fuzz_settings()
def test_json_control_payloads(payload: bytes) -> None:
    count("rfs json payload")
    decoded, _ = run_decoder("decode_json", lambda: ops.decode_json(payload), WireError)
    if decoded is not None:
        assert isinstance(decoded, dict)
        assert json.loads(ops.encode_json(decoded)) == decoded


@given(json_values | relpaths.map(ops.path_to_json) | st.text(max_size=30))
@fuzz_settings()
def test_paths_in_json_payloads(value: object) -> None:
    count("rfs json path")
    path, _ = run_decoder("path_from_json", lambda: ops.path_from_json(value), WireError)
    if path is not None:
        assert check_relpath(path) == path
        assert ops.path_from_json(ops.path_to_json(path)) == path
