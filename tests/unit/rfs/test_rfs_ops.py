"""rfs operations: payload codecs of every operation, ACKs, JSON control payloads and paths in them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.rfs import ops
from safekit.rfs.wire import (
    APPLIED,
    FLAG_DATASYNC,
    OPERATIONS,
    FrameType,
    WireError,
    Writer,
)

SHORT = settings(max_examples=60, deadline=None)

U32 = st.integers(min_value=0, max_value=2**32 - 1)
U64 = st.integers(min_value=0, max_value=2**64 - 1)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
names = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
paths = st.lists(names, min_size=1, max_size=4).map(b"/".join).filter(lambda p: len(p) <= 0xFFFF)
paths_or_root = st.one_of(st.just(b""), paths)
modes = st.integers(min_value=0, max_value=0o177777)
offsets = st.one_of(st.sampled_from([0, 1, 65535, 65536, 2**32, 2**63, 2**64 - 1]), U64)

operations = st.one_of(
    st.builds(ops.Create, paths, modes, U32, U32),
    st.builds(ops.Write, paths, offsets, st.binary(max_size=100)),
    st.builds(ops.Truncate, paths, offsets),
    st.builds(ops.Fallocate, paths, U32, offsets, offsets),
    st.builds(ops.SetAttr, paths_or_root, st.integers(0, 63), modes, U32, U32, I64, I64, U64),
    st.builds(ops.SetXattr, paths_or_root, st.binary(min_size=1, max_size=30), st.binary(max_size=60)),
    st.builds(ops.RemoveXattr, paths_or_root, st.binary(min_size=1, max_size=30)),
    st.builds(ops.Mkdir, paths, modes, U32, U32),
    st.builds(ops.Rmdir, paths),
    st.builds(ops.Unlink, paths),
    st.builds(ops.Rename, paths, paths, st.sampled_from([0, 1, 2, 4])),
    st.builds(ops.Symlink, paths, st.binary(max_size=60), U32, U32),
    st.builds(ops.Mknod, paths, modes, U64, U32, U32),
    st.builds(ops.Fsync, paths_or_root, st.booleans()),
    st.builds(ops.RemoveTree, paths),
)

EXAMPLES: list[ops.Operation] = [
    ops.Create(b"a/f", 0o100644, 1000, 1001),
    ops.Write(b"a/f", 65536, b"data"),
    ops.Truncate(b"a/f", 5),
    ops.Fallocate(b"a/f", 1, 0, 4096),
    ops.SetAttr(b"a/f", 63, 0o644, 1, 2, -5, 10**18, 7),
    ops.SetXattr(b"a/f", b"user.k", b"\0v"),
    ops.RemoveXattr(b"a/f", b"user.k"),
    ops.Mkdir(b"a", 0o40755, 0, 0),
    ops.Rmdir(b"a"),
    ops.Unlink(b"a/f"),
    ops.Rename(b"a/f", b"b/g", 2),
    ops.Symlink(b"l", b"../../etc/passwd", 0, 0),
    ops.Mknod(b"p", 0o10644, 0, 0, 0),
    ops.Fsync(b"a/f", True),
    ops.RemoveTree(b"a"),
    ops.ClearXattrs(b"a/f"),
]


def test_the_examples_cover_every_operation_type() -> None:
    assert {op.type for op in EXAMPLES} == set(APPLIED)
    assert set(OPERATIONS) < set(APPLIED)


@pytest.mark.parametrize("op", EXAMPLES, ids=lambda op: type(op).__name__)
def test_every_operation_round_trips(op: ops.Operation) -> None:
    assert ops.decode_op(op.type, op.encode(), ops.op_flags(op)) == op


@SHORT
@given(operations)
def test_operations_round_trip(op: ops.Operation) -> None:
    back = ops.decode_op(op.type, op.encode(), ops.op_flags(op))
    assert back == op
    assert type(back) is type(op)


def test_fsync_datasync_travels_in_the_frame_flags() -> None:
    assert ops.op_flags(ops.Fsync(b"f", True)) == FLAG_DATASYNC
    assert ops.op_flags(ops.Fsync(b"f", False)) == 0
    assert ops.op_flags(ops.Write(b"f", 0, b"")) == 0
    assert ops.Fsync(b"f", True).encode() == ops.Fsync(b"f", False).encode()
    assert ops.decode_op(FrameType.FSYNC, ops.Fsync(b"f").encode(), FLAG_DATASYNC) == ops.Fsync(b"f", True)


def test_write_payload_layout() -> None:
    payload = ops.Write(b"ab", 258, b"xyz").encode()
    assert payload == b"\0\2ab" + (258).to_bytes(8, "big") + b"xyz"
    assert ops.decode_op(FrameType.WRITE, payload) == ops.Write(b"ab", 258, b"xyz")


@SHORT
@given(operations.filter(lambda op: not isinstance(op, ops.Write)), st.binary(min_size=1, max_size=9))
def test_trailing_bytes_are_refused(op: ops.Operation, extra: bytes) -> None:
    with pytest.raises(WireError, match="unexpected bytes"):
        ops.decode_op(op.type, op.encode() + extra, ops.op_flags(op))


def test_trailing_bytes_of_a_write_are_its_data() -> None:
    op = ops.Write(b"f", 0, b"abc")
    assert ops.decode_op(FrameType.WRITE, op.encode() + b"d") == ops.Write(b"f", 0, b"abcd")


@pytest.mark.parametrize("op", EXAMPLES, ids=lambda op: type(op).__name__)
def test_every_truncated_payload_is_refused(op: ops.Operation) -> None:
    payload = op.encode()
    fixed = len(payload) - len(op.data) if isinstance(op, ops.Write) else len(payload)
    for cut in range(fixed):
        with pytest.raises(WireError):
            ops.decode_op(op.type, payload[:cut], ops.op_flags(op))


@SHORT
@given(operations, st.data())
def test_truncated_payloads_are_refused(op: ops.Operation, data: st.DataObject) -> None:
    payload = op.encode()
    fixed = len(payload) - len(op.data) if isinstance(op, ops.Write) else len(payload)
    cut = data.draw(st.integers(0, fixed - 1))
    with pytest.raises(WireError):
        ops.decode_op(op.type, payload[:cut], ops.op_flags(op))


@pytest.mark.parametrize(
    "ftype",
    [t for t in FrameType if t not in APPLIED],
    ids=lambda t: t.name,
)
def test_decode_op_refuses_what_is_not_an_operation(ftype: FrameType) -> None:
    with pytest.raises(WireError, match="not an operation"):
        ops.decode_op(ftype, ops.Unlink(b"f").encode())


@pytest.mark.parametrize("bad", [b"..", b"a/../../etc", b"/etc/passwd", b"a//b", b"./a", b"a\0"])
@pytest.mark.parametrize(
    "ftype", [FrameType.CREATE, FrameType.WRITE, FrameType.UNLINK, FrameType.REMOVE_TREE]
)
def test_a_path_leaving_the_directory_never_decodes(ftype: FrameType, bad: bytes) -> None:
    payload = Writer().path(bad).u32(0o644).u32(0).u32(0).bytes()
    if ftype in (FrameType.UNLINK, FrameType.REMOVE_TREE):
        payload = Writer().path(bad).bytes()
    with pytest.raises(WireError, match="refused path"):
        ops.decode_op(ftype, payload)


@pytest.mark.parametrize(("old", "new"), [(b"ok", b"../x"), (b"../x", b"ok"), (b"ok", b"/x")])
def test_a_rename_leaving_the_directory_never_decodes(old: bytes, new: bytes) -> None:
    payload = Writer().path(old).path(new).u32(0).bytes()
    with pytest.raises(WireError):
        ops.decode_op(FrameType.RENAME, payload)


def test_the_replicated_directory_itself_is_an_empty_path() -> None:
    op = ops.SetAttr(b"", 1, mode=0o755)
    assert ops.decode_op(FrameType.SETATTR, op.encode()) == op


def test_a_huge_blob_length_is_a_truncation_not_an_allocation() -> None:
    payload = Writer().path(b"f").u32(0xFFFFFFFF).bytes()
    with pytest.raises(WireError, match="truncated"):
        ops.decode_op(FrameType.SETXATTR, payload)


# --------------------------------------------------------------------------- ACK
@SHORT
@given(U64, U64, U64)
def test_ack_round_trips(received: int, applied: int, durable: int) -> None:
    payload = ops.encode_ack(received, applied, durable)
    assert len(payload) == 24
    assert ops.decode_ack(payload) == (received, applied, durable)


@pytest.mark.parametrize("payload", [b"", bytes(23), bytes(25), bytes(8)])
def test_a_malformed_ack_is_refused(payload: bytes) -> None:
    with pytest.raises(WireError):
        ops.decode_ack(payload)


# --------------------------------------------------------------------------- JSON and paths in it
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_json_round_trips(obj: dict[str, object]) -> None:
    payload = ops.encode_json(obj)
    assert ops.decode_json(payload) == obj
    assert payload == json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def test_json_is_compact_and_sorted() -> None:
    assert ops.encode_json({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b"1", b'"x"', b"null", b"\xff\xfe", b"{'a':1}"])
def test_bad_json_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(WireError):
        ops.decode_json(payload)


@SHORT
@given(st.binary(max_size=40))
def test_any_bytes_survive_path_to_json(raw: bytes) -> None:
    text = ops.path_to_json(raw)
    assert len(text) == len(raw)
    back = json.loads(ops.encode_json({"p": text}))["p"]
    assert back.encode("latin-1") == raw


@SHORT
@given(paths_or_root)
def test_paths_round_trip_through_json(path: bytes) -> None:
    payload = ops.encode_json({"paths": [ops.path_to_json(path)]})
    assert ops.path_from_json(ops.decode_json(payload)["paths"][0]) == path


@pytest.mark.parametrize("bad", [b"/abs", b"..", b"a/../b", b"a\0"])
def test_path_from_json_applies_the_path_rules(bad: bytes) -> None:
    with pytest.raises(WireError):
        ops.path_from_json(ops.path_to_json(bad))


@pytest.mark.parametrize("bad", [None, 1, b"a", ["a"]])
def test_path_from_json_refuses_what_is_not_a_string(bad: object) -> None:
    with pytest.raises(WireError):
        ops.path_from_json(bad)


def test_path_from_json_refuses_a_non_latin1_string_as_a_protocol_error() -> None:
    with pytest.raises(WireError):
        ops.path_from_json("\u20ac")
