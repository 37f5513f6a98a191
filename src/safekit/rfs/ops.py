"""Replicated operations and handshake messages: typed values and their payload layout (see wire.py).

Every mutating file system operation of the primary becomes one of these, applied in the same
order on the secondary (`apply.py`). Layout of each payload, in order (u16-prefixed paths, u32-
prefixed blobs, big-endian integers), is given by the `encode` methods and docs/replication.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from safekit.rfs.wire import (
    FLAG_DATASYNC,
    FrameType,
    Reader,
    WireError,
    Writer,
    check_relpath,
)


@dataclass(frozen=True, slots=True)
class Create:
    path: bytes
    mode: int
    uid: int
    gid: int
    type = FrameType.CREATE

    def encode(self) -> bytes:
        return Writer().path(self.path).u32(self.mode).u32(self.uid).u32(self.gid).bytes()


@dataclass(frozen=True, slots=True)
class Write:
    path: bytes
    offset: int
    data: bytes
    type = FrameType.WRITE

    def encode(self) -> bytes:
        return Writer().path(self.path).u64(self.offset).bytes() + self.data


@dataclass(frozen=True, slots=True)
class Truncate:
    path: bytes
    size: int
    type = FrameType.TRUNCATE

    def encode(self) -> bytes:
        return Writer().path(self.path).u64(self.size).bytes()


@dataclass(frozen=True, slots=True)
class Fallocate:
    path: bytes
    mode: int
    offset: int
    length: int
    type = FrameType.FALLOCATE

    def encode(self) -> bytes:
        return Writer().path(self.path).u32(self.mode).u64(self.offset).u64(self.length).bytes()


@dataclass(frozen=True, slots=True)
class SetAttr:
    """Changed attributes only: `mask` says which of mode/uid/gid/atime/mtime/size are set."""

    path: bytes
    mask: int
    mode: int = 0
    uid: int = 0
    gid: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    size: int = 0
    type = FrameType.SETATTR

    def encode(self) -> bytes:
        w = Writer().path(self.path).u32(self.mask).u32(self.mode).u32(self.uid).u32(self.gid)
        return w.i64(self.atime_ns).i64(self.mtime_ns).u64(self.size).bytes()


@dataclass(frozen=True, slots=True)
class SetXattr:
    path: bytes
    name: bytes
    value: bytes
    type = FrameType.SETXATTR

    def encode(self) -> bytes:
        return Writer().path(self.path).blob(self.name).blob(self.value).bytes()


@dataclass(frozen=True, slots=True)
class RemoveXattr:
    path: bytes
    name: bytes
    type = FrameType.REMOVEXATTR

    def encode(self) -> bytes:
        return Writer().path(self.path).blob(self.name).bytes()


@dataclass(frozen=True, slots=True)
class Mkdir:
    path: bytes
    mode: int
    uid: int
    gid: int
    type = FrameType.MKDIR

    def encode(self) -> bytes:
        return Writer().path(self.path).u32(self.mode).u32(self.uid).u32(self.gid).bytes()


@dataclass(frozen=True, slots=True)
class Rmdir:
    path: bytes
    type = FrameType.RMDIR

    def encode(self) -> bytes:
        return Writer().path(self.path).bytes()


@dataclass(frozen=True, slots=True)
class Unlink:
    path: bytes
    type = FrameType.UNLINK

    def encode(self) -> bytes:
        return Writer().path(self.path).bytes()


@dataclass(frozen=True, slots=True)
class Rename:
    old: bytes
    new: bytes
    flags: int = 0  # RENAME_NOREPLACE=1, RENAME_EXCHANGE=2 (Linux values)
    type = FrameType.RENAME

    def encode(self) -> bytes:
        return Writer().path(self.old).path(self.new).u32(self.flags).bytes()


@dataclass(frozen=True, slots=True)
class Symlink:
    path: bytes
    target: bytes
    uid: int
    gid: int
    type = FrameType.SYMLINK

    def encode(self) -> bytes:
        return Writer().path(self.path).blob(self.target).u32(self.uid).u32(self.gid).bytes()


@dataclass(frozen=True, slots=True)
class Mknod:
    path: bytes
    mode: int
    rdev: int
    uid: int
    gid: int
    type = FrameType.MKNOD

    def encode(self) -> bytes:
        w = Writer().path(self.path).u32(self.mode).u64(self.rdev).u32(self.uid).u32(self.gid)
        return w.bytes()


@dataclass(frozen=True, slots=True)
class Fsync:
    """A durability barrier: the primary waits for its ACK. With `async="none"` the secondary
    fsyncs `path` (the whole copy with an empty path) before acknowledging."""

    path: bytes
    datasync: bool = False
    type = FrameType.FSYNC

    def encode(self) -> bytes:
        return Writer().path(self.path).bytes()


@dataclass(frozen=True, slots=True)
class ClearXattrs:
    """Resynchronisation: remove every extended attribute of `path` (the primary's follow)."""

    path: bytes
    type = FrameType.CLEAR_XATTRS

    def encode(self) -> bytes:
        return Writer().path(self.path).bytes()


@dataclass(frozen=True, slots=True)
class RemoveTree:
    """Resynchronisation: remove whatever is at `path` on the secondary (file or whole tree)."""

    path: bytes
    type = FrameType.REMOVE_TREE

    def encode(self) -> bytes:
        return Writer().path(self.path).bytes()


Operation = (
    Create
    | Write
    | Truncate
    | Fallocate
    | SetAttr
    | SetXattr
    | RemoveXattr
    | Mkdir
    | Rmdir
    | Unlink
    | Rename
    | Symlink
    | Mknod
    | Fsync
    | RemoveTree
    | ClearXattrs
)


def op_flags(op: Operation) -> int:
    if isinstance(op, Fsync) and op.datasync:
        return FLAG_DATASYNC
    return 0


def decode_op(ftype: FrameType, payload: bytes, flags: int = 0) -> Operation:  # noqa: PLR0912
    r = Reader(payload)
    op: Operation
    match ftype:
        case FrameType.CREATE:
            op = Create(r.path(), r.u32(), r.u32(), r.u32())
        case FrameType.WRITE:
            path = r.path()
            offset = r.u64()
            return Write(path, offset, r.rest())
        case FrameType.TRUNCATE:
            op = Truncate(r.path(), r.u64())
        case FrameType.FALLOCATE:
            op = Fallocate(r.path(), r.u32(), r.u64(), r.u64())
        case FrameType.SETATTR:
            op = SetAttr(r.path(), r.u32(), r.u32(), r.u32(), r.u32(), r.i64(), r.i64(), r.u64())
        case FrameType.SETXATTR:
            op = SetXattr(r.path(), r.blob(), r.blob())
        case FrameType.REMOVEXATTR:
            op = RemoveXattr(r.path(), r.blob())
        case FrameType.MKDIR:
            op = Mkdir(r.path(), r.u32(), r.u32(), r.u32())
        case FrameType.RMDIR:
            op = Rmdir(r.path())
        case FrameType.UNLINK:
            op = Unlink(r.path())
        case FrameType.RENAME:
            op = Rename(r.path(), r.path(), r.u32())
        case FrameType.SYMLINK:
            op = Symlink(r.path(), r.blob(), r.u32(), r.u32())
        case FrameType.MKNOD:
            op = Mknod(r.path(), r.u32(), r.u64(), r.u32(), r.u32())
        case FrameType.FSYNC:
            op = Fsync(r.path(), bool(flags & FLAG_DATASYNC))
        case FrameType.REMOVE_TREE:
            op = RemoveTree(r.path())
        case FrameType.CLEAR_XATTRS:
            op = ClearXattrs(r.path())
        case _:
            raise WireError(f"{ftype.name} is not an operation")
    r.end()
    return op


# --------------------------------------------------------------------------- control payloads
# Handshake, acknowledgements, errors and manifests are small and rare: JSON objects (UTF-8), so
# that they can grow fields without a protocol version bump. Paths inside them are latin-1 strings
# of the raw bytes (every byte maps to one code point), never reinterpreted.


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def decode_json(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise WireError(f"bad JSON payload: {exc}") from None
    except RecursionError:
        raise WireError("bad JSON payload: nested too deeply") from None
    if not isinstance(obj, dict):
        raise WireError("JSON payload is not an object")
    return obj


def path_to_json(path: bytes) -> str:
    return path.decode("latin-1")


def path_from_json(text: object) -> bytes:
    if not isinstance(text, str):
        raise WireError("path is not a string")
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raise WireError("path is not a latin-1 encoded byte string") from None
    return check_relpath(raw)


# ACK payload: received u64, applied u64, durable u64 (highest primary sequence numbers)
def encode_ack(received: int, applied: int, durable: int) -> bytes:
    return Writer().u64(received).u64(applied).u64(durable).bytes()


def decode_ack(payload: bytes) -> tuple[int, int, int]:
    r = Reader(payload)
    v = (r.u64(), r.u64(), r.u64())
    r.end()
    return v
