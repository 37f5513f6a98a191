"""The replication wire protocol: authenticated, sequenced frames between a primary and a secondary.

Language-neutral (docs/replication.md is the reference); this module only encodes and decodes,
it does no I/O. A connection is a TCP stream of frames:

    header  24 bytes, big-endian: magic "SKRF", version u8, type u8, flags u16,
            seq u64, length u32 (payload bytes), dir u32 (replicated directory index)
    payload `length` bytes, layout per type (below)
    mac     32 bytes: HMAC-SHA256(key, header || payload)

The two HELLO frames are authenticated with the *hello key* (derived from the cluster key); every
later frame with the *session key*, derived from the cluster key and both HELLO nonces, so a frame
recorded in one session is rejected in every other. Inside a session the primary's operations carry
consecutive sequence numbers (a gap, a repeat or a reordering is a protocol error), and the
secondary's frames carry their own counter in `seq` the same way.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = b"SKRF"
VERSION = 1
HEADER = struct.Struct(">4sBBHQII")
HEADER_SIZE = HEADER.size  # 24
MAC_SIZE = 32
MAX_PAYLOAD = 32 << 20
"""Largest payload accepted (a frame above it is a protocol error, never an allocation)."""
NONCE_SIZE = 16


class WireError(Exception):
    """A frame that is malformed, forged, replayed or out of order: the connection must be dropped."""


class FrameType(enum.IntEnum):
    # handshake
    HELLO = 1  # primary -> secondary
    HELLO_OK = 2  # secondary -> primary
    # operations, primary -> secondary, in the order the primary applied them
    CREATE = 10
    WRITE = 11
    TRUNCATE = 12
    FALLOCATE = 13
    SETATTR = 14
    SETXATTR = 15
    REMOVEXATTR = 16
    MKDIR = 17
    RMDIR = 18
    UNLINK = 19
    RENAME = 20
    SYMLINK = 21
    MKNOD = 22
    FSYNC = 23
    # resynchronisation, primary -> secondary (ordered with the operations)
    SYNC_BEGIN = 30
    REMOVE_TREE = 31
    CLEAR_XATTRS = 35  # resync: remove every extended attribute of a path (its own are sent next)
    PROGRESS = 36  # resync: JSON {done, total} (objects), for the secondary to show
    SYNC_END = 32
    MANIFEST_REQ = 33
    VERIFY_REQ = 34
    # secondary -> primary
    ACK = 40
    ERROR = 41
    MANIFEST = 42  # one chunk of entries; the last chunk has FLAG_LAST
    # both ways
    PING = 50
    BYE = 51


OPERATIONS = frozenset(range(FrameType.CREATE, FrameType.FSYNC + 1))
APPLIED = OPERATIONS | {FrameType.REMOVE_TREE, FrameType.CLEAR_XATTRS}
"""Frames the secondary applies to its copy, in order (decode_op decodes them)."""

FLAG_ACK = 0x0001
"""The sender waits for an ACK covering this frame (a durability barrier)."""
FLAG_LAST = 0x0002
"""Last frame of a multi-frame answer (MANIFEST)."""
FLAG_DATASYNC = 0x0004
"""FSYNC: fdatasync rather than fsync."""


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    seq: int
    payload: bytes = b""
    flags: int = 0
    dir: int = 0


def derive_hello_key(cluster_key: bytes, module: str) -> bytes:
    return hmac.digest(cluster_key, b"safekit rfs hello\0" + module.encode(), "sha256")


def derive_session_key(
    cluster_key: bytes, module: str, primary_nonce: bytes, secondary_nonce: bytes
) -> bytes:
    material = b"safekit rfs session\0" + module.encode() + b"\0" + primary_nonce + secondary_nonce
    return hmac.digest(cluster_key, material, "sha256")


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def encode_frame(key: bytes, frame: Frame) -> bytes:
    if len(frame.payload) > MAX_PAYLOAD:
        raise WireError(f"payload of {len(frame.payload)} bytes is above the limit of {MAX_PAYLOAD}")
    header = HEADER.pack(MAGIC, VERSION, frame.type, frame.flags, frame.seq, len(frame.payload), frame.dir)
    mac = hmac.new(key, header, hashlib.sha256)
    mac.update(frame.payload)
    return b"".join((header, frame.payload, mac.digest()))


def encode_frame_parts(  # noqa: PLR0917 - the frame header's fields, in wire order
    key: bytes,
    frame_type: FrameType,
    seq: int,
    payload_parts: tuple[bytes | memoryview, ...],
    flags: int = 0,
    dir: int = 0,
) -> list[bytes | memoryview]:
    """Like encode_frame, without joining a large payload into one new buffer (for WRITE data)."""
    length = sum(len(p) for p in payload_parts)
    if length > MAX_PAYLOAD:
        raise WireError(f"payload of {length} bytes is above the limit of {MAX_PAYLOAD}")
    header = HEADER.pack(MAGIC, VERSION, frame_type, flags, seq, length, dir)
    mac = hmac.new(key, header, hashlib.sha256)
    for part in payload_parts:
        mac.update(part)
    return [header, *payload_parts, mac.digest()]


@dataclass
class FrameDecoder:
    """Cuts a byte stream into authenticated frames; `feed` bytes, iterate the frames that are whole.

    The key can change between frames (HELLO -> session); sequence checking is the caller's."""

    key: bytes
    _buf: bytearray = field(default_factory=bytearray)
    _pos: int = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def frames(self) -> Iterator[Frame]:
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame

    def next_frame(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_SIZE:
            self._compact()
            return None
        magic, version, ftype, flags, seq, length, dir_index = HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise WireError("not a safekit replication stream (bad magic)")
        if version != VERSION:
            raise WireError(f"replication protocol version {version}, this node speaks {VERSION}")
        if length > MAX_PAYLOAD:
            raise WireError(f"frame announces {length} payload bytes, above the limit of {MAX_PAYLOAD}")
        end = pos + HEADER_SIZE + length + MAC_SIZE
        if len(buf) < end:
            self._compact()
            return None
        view = memoryview(buf)
        try:
            body = view[pos : pos + HEADER_SIZE + length]
            mac = hmac.new(self.key, body, hashlib.sha256).digest()
            if not hmac.compare_digest(mac, view[end - MAC_SIZE : end]):
                raise WireError("frame failed authentication (wrong cluster key, or forged or corrupted)")
            payload = bytes(view[pos + HEADER_SIZE : end - MAC_SIZE])
        finally:
            view.release()
        self._pos = end
        try:
            kind = FrameType(ftype)
        except ValueError:
            raise WireError(f"unknown frame type {ftype}") from None
        return Frame(kind, seq, payload, flags, dir_index)

    def _compact(self) -> None:
        if self._pos > (1 << 20) or (self._pos and self._pos * 2 > len(self._buf)):
            del self._buf[: self._pos]
            self._pos = 0


class SequenceCheck:
    """Consecutive sequence numbers from `first`: anything else is a replay, a loss or a forgery."""

    def __init__(self, first: int) -> None:
        self.expected = first

    def check(self, frame: Frame) -> None:
        if frame.seq != self.expected:
            raise WireError(f"frame {frame.type.name} has sequence {frame.seq}, expected {self.expected}")
        self.expected += 1


# --------------------------------------------------------------------------- payload codecs
# Paths are relative to the replicated directory, as bytes (POSIX names are bytes), never absolute,
# never with "." or ".." components. u16 length prefix.

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_Q = struct.Struct(">Q")


def check_relpath(path: bytes) -> bytes:
    """Refuse a path that could leave the replicated directory (defence in depth on the receiver)."""
    if not path:
        return path  # the replicated directory itself
    if path.startswith(b"/") or b"\0" in path:
        raise WireError(f"refused path {path!r}: absolute or with NUL")
    for part in path.split(b"/"):
        if part in (b"", b".", b".."):
            raise WireError(f"refused path {path!r}: empty, '.' or '..' component")
    return path


class Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self.parts.append(bytes((v,)))
        return self

    def u32(self, v: int) -> Writer:
        self.parts.append(_U32.pack(v))
        return self

    def u64(self, v: int) -> Writer:
        self.parts.append(_Q.pack(v))
        return self

    def i64(self, v: int) -> Writer:
        self.parts.append(struct.pack(">q", v))
        return self

    def blob(self, v: bytes) -> Writer:
        if len(v) > 0xFFFFFFFF:
            raise WireError("blob too long")
        self.parts.append(_U32.pack(len(v)))
        self.parts.append(v)
        return self

    def path(self, v: bytes) -> Writer:
        if len(v) > 0xFFFF:
            raise WireError("path too long")
        self.parts.append(_U16.pack(len(v)))
        self.parts.append(v)
        return self

    def bytes(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise WireError("truncated payload")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return int(_U32.unpack(self._take(4))[0])

    def u64(self) -> int:
        return int(_Q.unpack(self._take(8))[0])

    def i64(self) -> int:
        return int(struct.unpack(">q", self._take(8))[0])

    def blob(self) -> bytes:
        return self._take(self.u32())

    def path(self) -> bytes:
        (n,) = _U16.unpack(self._take(2))
        return check_relpath(self._take(n))

    def rest(self) -> bytes:
        v = self.data[self.pos :]
        self.pos = len(self.data)
        return v

    def end(self) -> None:
        if self.pos != len(self.data):
            raise WireError(f"{len(self.data) - self.pos} unexpected bytes at the end of a payload")


# SETATTR field mask
ATTR_MODE = 1
ATTR_UID = 2
ATTR_GID = 4
ATTR_ATIME = 8
ATTR_MTIME = 16
ATTR_SIZE = 32

# WRITE payload: path, offset u64, then the data (the rest of the payload)
WRITE_PREFIX = struct.Struct(">Q")
