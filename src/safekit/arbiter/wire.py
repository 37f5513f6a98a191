"""Arbiter wire format (version 3, and version 2 read and answered): the UDP datagrams between
nodes and the arbitrating witness.

This module owns the byte layout of requests and answers, their authentication with the arbiter
key (keys.py) and the strict, bounded parsers. It is pure: bytes in, a `Request` or `Answer` out,
or an `ArbiterWireError` saying why the bytes were refused; the parsers never raise anything
else, whatever the input. docs/arbiter.md describes the same layout language-neutrally; keep the
two in step.

Request, all integers big-endian::

    off  size  field
      0     4  magic "SKAR"
      4     1  version (3; 2 without the confirmed generation)
      5     1  kind: 1 REQUEST, 2 RELEASE, 3 STATUS
      6     2  total datagram length, tag included
      8     8  cluster id (keys.cluster_id of the arbiter key)
     16    16  nonce (random per request; the answer echoes it)
     32    16  boot id of the sender's client (random per client start)
     48     8  sequence (grows by one per datagram sent by that client)
     56     4  duration in ms (REQUEST: 1 .. 2^32-1; others: 0)
     60     8  replica generation of the requester's copy (REQUEST; others: 0)
     68     8  version 3: confirmed generation of the requester's copy, at most the generation
               (REQUEST; others: 0). Version 2 has no such field: its copy ranks (generation,
               generation)
  68/76     .  node, module: each u8 length + ASCII name (module may be empty in STATUS only)
    L-32   32  HMAC-SHA256(arbiter key, bytes 0 .. L-33)

Answer (in the request's version)::

    off  size  field
      0     4  magic "SKAR"
      4     1  version (3 or 2)
      5     1  kind: the request's kind + 0x80
      6     2  total datagram length, tag included
      8     8  cluster id
     16    16  nonce of the request answered
     32    16  boot id of the arbiter process
     48     1  reason (leases.Reason)
     49     1  flags: bit 0 granted, bit 1 status list truncated; other bits 0
     50     4  remaining ms (of the holder's lease, or of the grace period)
     54     8  generation of the highest copy rank the arbiter knows for the module (0: none, or
               a STATUS of every module)
     62     8  version 3: confirmed generation of that rank
  62/70     .  holder: u8 length + ASCII name (0: no holder)
      .     .  STATUS answers only: u16 count, then per module: module (u8 length + name),
               holder (u8 length + name, 0: no holder), remaining ms (u32), generation (u64),
               version 3: confirmed generation (u64)
    L-32   32  HMAC-SHA256(arbiter key, bytes 0 .. L-33)

Version 1 (no generations) is refused as UnsupportedVersion: its fields would be misread.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

from safekit.arbiter.keys import CLUSTER_ID_SIZE
from safekit.arbiter.leases import Reason
from safekit.config.attributes import NAME_PATTERN
from safekit.membership.clusterkey import check_key
from safekit.membership.wire import MAX_NAME_BYTES

MAGIC = b"SKAR"
VERSION = 3
"""3: the requester's confirmed generation beside its generation (docs/adr/0046). 2: generations
in requests, answers and status entries; still read and answered in kind, so an arbiter upgraded
first serves nodes of both versions (an arbiter of version 2 drops a node's version 3)."""
VERSIONS = (2, 3)
DEFAULT_PORT = 9455
TAG_SIZE = 32
NONCE_SIZE = 16
BOOT_ID_SIZE = 16
MAX_DATAGRAM = 1200
"""Never fragmented (as heartbeats): a lost fragment would lose the whole datagram."""
ANSWER_BIT = 0x80
FLAG_GRANTED = 0x01
FLAG_TRUNCATED = 0x02

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_REQUEST = struct.Struct(">4sBBH8s16s16sQIQ")
_ANSWER = struct.Struct(">4sBBH8s16s16sBBIQ")
_ENTRY_TAIL = struct.Struct(">IQ")
_CONFIRMED = struct.Struct(">Q")
_COUNT = struct.Struct(">H")
MIN_REQUEST_SIZE = _REQUEST.size + _CONFIRMED.size + 2 + 1 + TAG_SIZE
MIN_ANSWER_SIZE = _ANSWER.size + _CONFIRMED.size + 1 + TAG_SIZE
_MIN_SIZES = {
    2: (_REQUEST.size + 2 + 1 + TAG_SIZE, _ANSWER.size + 1 + TAG_SIZE),
    3: (MIN_REQUEST_SIZE, MIN_ANSWER_SIZE),
}


class Kind(enum.IntEnum):
    REQUEST = 1
    RELEASE = 2
    STATUS = 3


class ArbiterWireError(Exception):
    """The bytes are not a datagram to act on. Drop it (and count it)."""


class Oversized(ArbiterWireError):
    """Longer than MAX_DATAGRAM: refused before any parsing."""


class Truncated(ArbiterWireError):
    """Shorter than a datagram can be, or than its own length field says."""


class BadMagic(ArbiterWireError):
    """Not an arbiter datagram at all (stray traffic on the port)."""


class UnsupportedVersion(ArbiterWireError):
    """A format version this side does not speak (a newer peer)."""


class UnknownCluster(ArbiterWireError):
    """A cluster id this arbiter has no key for (a node configured with another arbiter?)."""


class BadSignature(ArbiterWireError):
    """The tag does not match: wrong key on one side, corruption, or forgery."""


class Malformed(ArbiterWireError):
    """Authentic, but its fields do not parse (a sender bug): never acted on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request from `node` of cluster `cluster` about `module`."""

    kind: Kind
    cluster: bytes
    node: str
    module: str
    nonce: bytes
    boot_id: bytes
    sequence: int
    duration_ms: int = 0
    generation: int = 0
    """The requester's replica generation (REQUEST only)."""
    confirmed: int | None = None
    """The requester's confirmed generation (REQUEST only; None: not on the wire, version 2)."""

    @property
    def version(self) -> int:
        return 2 if self.confirmed is None else VERSION

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        _check_bytes("cluster id", self.cluster, CLUSTER_ID_SIZE)
        _check_bytes("nonce", self.nonce, NONCE_SIZE)
        _check_bytes("boot id", self.boot_id, BOOT_ID_SIZE)
        _check_int("sequence", self.sequence, _U64_MAX)
        _check_int("duration_ms", self.duration_ms, _U32_MAX)
        _check_int("generation", self.generation, _U64_MAX)
        check_name("node", self.node)
        if self.kind is Kind.STATUS and self.module == "":
            pass
        else:
            check_name("module", self.module)
        if self.kind is Kind.REQUEST and self.duration_ms == 0:
            raise ValueError("a lease request needs a duration of at least 1 ms")
        if self.kind is not Kind.REQUEST and self.duration_ms != 0:
            raise ValueError(f"a {self.kind.name} carries no duration, got {self.duration_ms} ms")
        if self.kind is not Kind.REQUEST and self.generation != 0:
            raise ValueError(f"a {self.kind.name} carries no generation, got {self.generation}")
        if self.confirmed is not None:
            _check_int("confirmed", self.confirmed, _U64_MAX)
            if self.kind is not Kind.REQUEST and self.confirmed != 0:
                raise ValueError(f"a {self.kind.name} carries no confirmed generation, got {self.confirmed}")
            if self.confirmed > self.generation:
                raise ValueError(
                    f"confirmed generation {self.confirmed} above the generation {self.generation}"
                )


@dataclass(frozen=True, slots=True)
class LeaseEntry:
    """One module in a status answer: its lease (holder "" when none) and known rank."""

    module: str
    holder: str
    remaining_ms: int
    generation: int = 0
    confirmed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The arbiter's answer to one request (`kind` is the request's kind)."""

    kind: Kind
    cluster: bytes
    nonce: bytes
    arbiter_boot_id: bytes
    reason: Reason
    remaining_ms: int = 0
    generation: int = 0
    """The generation of the highest copy rank the arbiter knows for the module (0: none)."""
    confirmed: int = 0
    """The confirmed generation of that rank."""
    holder: str = ""
    entries: tuple[LeaseEntry, ...] = ()
    truncated: bool = False
    version: int = VERSION
    """The request's version: a version 2 answer carries no confirmed generations."""

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        _check_bytes("cluster id", self.cluster, CLUSTER_ID_SIZE)
        _check_bytes("nonce", self.nonce, NONCE_SIZE)
        _check_bytes("boot id", self.arbiter_boot_id, BOOT_ID_SIZE)
        if not isinstance(self.reason, Reason):
            raise ValueError(f"reason must be a Reason, got {self.reason!r}")
        _check_int("remaining_ms", self.remaining_ms, _U32_MAX)
        _check_int("generation", self.generation, _U64_MAX)
        _check_int("confirmed", self.confirmed, _U64_MAX)
        if self.version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {self.version!r}")
        if self.holder:
            check_name("holder", self.holder)
        if self.kind is not Kind.STATUS and (self.entries or self.truncated):
            raise ValueError("only a STATUS answer lists leases")
        for entry in self.entries:
            check_name("module", entry.module)
            if entry.holder:
                check_name("holder", entry.holder)
            _check_int("remaining_ms", entry.remaining_ms, _U32_MAX)
            _check_int("generation", entry.generation, _U64_MAX)
            _check_int("confirmed", entry.confirmed, _U64_MAX)

    @property
    def granted(self) -> bool:
        return self.reason.granted


def check_name(field: str, value: object) -> None:
    """Node and module names follow cluster.xml's rules (letters, digits, '_', '.', '-'), 1-128 bytes."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a str, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_NAME_BYTES or not NAME_PATTERN.fullmatch(value) or not value.isascii():
        raise ValueError(
            f"{field} {value[:40]!r} is not a name: 1 to {MAX_NAME_BYTES} letters, digits, '_', '.', '-'"
        )


def to_ms(seconds: float) -> int:
    """Seconds as the wire's milliseconds, rounded down and clamped to the u32 range."""
    return max(0, min(_U32_MAX, int(seconds * 1000)))


def _check_kind(kind: object) -> None:
    if not isinstance(kind, Kind):
        raise ValueError(f"kind must be a Kind, got {kind!r}")


def _check_bytes(field: str, value: object, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise ValueError(f"{field} must be {size} bytes")


def _check_int(field: str, value: object, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"{field} must be an integer in 0..{maximum}, got {value!r}")


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def _name_bytes(name: str) -> bytes:
    raw = name.encode("ascii")
    return bytes((len(raw),)) + raw


def _seal(header: bytes, rest: bytes, key: bytes) -> bytes:
    length = len(header) + len(rest) + TAG_SIZE
    if length > MAX_DATAGRAM:
        raise ValueError(f"datagram would be {length} bytes, more than the {MAX_DATAGRAM} allowed")
    body = header[:6] + struct.pack(">H", length) + header[8:] + rest
    return body + _tag(key, body)


def encode_request(request: Request, key: bytes) -> bytes:
    """Serialise and sign `request` with the arbiter `key`."""
    check_key(key)
    header = _REQUEST.pack(
        MAGIC,
        request.version,
        request.kind,
        0,
        request.cluster,
        request.nonce,
        request.boot_id,
        request.sequence,
        request.duration_ms,
        request.generation,
    )
    if request.confirmed is not None:
        header += _CONFIRMED.pack(request.confirmed)
    return _seal(header, _name_bytes(request.node) + _name_bytes(request.module), key)


def encode_answer(answer: Answer, key: bytes) -> bytes:
    """Serialise and sign `answer`. A STATUS list too long for one datagram is cut and flagged truncated."""
    check_key(key)
    v3 = answer.version >= 3
    rest = _name_bytes(answer.holder)
    truncated = answer.truncated
    if answer.kind is Kind.STATUS:
        room = MAX_DATAGRAM - _ANSWER.size - _CONFIRMED.size * v3 - len(rest) - _COUNT.size - TAG_SIZE
        entries: list[bytes] = []
        for entry in answer.entries:
            raw = (
                _name_bytes(entry.module)
                + _name_bytes(entry.holder)
                + _ENTRY_TAIL.pack(entry.remaining_ms, entry.generation)
                + (_CONFIRMED.pack(entry.confirmed) if v3 else b"")
            )
            if len(raw) > room or len(entries) == 0xFFFF:
                truncated = True
                break
            room -= len(raw)
            entries.append(raw)
        rest += _COUNT.pack(len(entries)) + b"".join(entries)
    flags = (FLAG_GRANTED if answer.granted else 0) | (FLAG_TRUNCATED if truncated else 0)
    header = _ANSWER.pack(
        MAGIC,
        answer.version,
        answer.kind | ANSWER_BIT,
        0,
        answer.cluster,
        answer.nonce,
        answer.arbiter_boot_id,
        answer.reason,
        flags,
        answer.remaining_ms,
        answer.generation,
    )
    if v3:
        header += _CONFIRMED.pack(answer.confirmed)
    return _seal(header, rest, key)


def _frame(data: bytes, answer: bool) -> bytes:
    """Size and framing checks common to both directions; returns the data as bytes."""
    data = bytes(data)
    if len(data) > MAX_DATAGRAM:
        raise Oversized(f"{len(data)} bytes, more than the {MAX_DATAGRAM} allowed")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise BadMagic(f"starts with {data[: len(MAGIC)]!r}, not {MAGIC!r}")
    # The version before the length: an older, shorter layout is named as such, not "truncated".
    if len(data) > len(MAGIC) and data[len(MAGIC)] not in VERSIONS:
        raise UnsupportedVersion(
            f"format version {data[len(MAGIC)]}; this side speaks versions 2 and {VERSION} "
            "(upgrade the arbiter first, then the nodes)"
        )
    minimum = _MIN_SIZES[data[len(MAGIC)] if len(data) > len(MAGIC) else VERSION][answer]
    if len(data) < minimum:
        raise Truncated(f"{len(data)} bytes, an arbiter datagram of this kind is at least {minimum}")
    (declared,) = struct.unpack_from(">H", data, 6)
    if len(data) < declared:
        raise Truncated(f"{len(data)} bytes received, the datagram says {declared}")
    if len(data) > declared:
        raise Malformed(f"{len(data) - declared} bytes after the end the datagram declares ({declared})")
    return data


def _verify(data: bytes, key: bytes) -> bytes:
    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(_tag(key, body), tag):
        raise BadSignature(
            "authentication tag mismatch (is the arbiter key derived from this cluster's key?)"
        )
    return body


class _Reader:
    """Bounded reads from an authentic body; every overrun is a Malformed."""

    def __init__(self, body: bytes, offset: int) -> None:
        self.body = body
        self.offset = offset

    def name(self, field: str, *, allow_empty: bool = False) -> str:
        if self.offset >= len(self.body):
            raise Malformed(f"ends before the {field} name")
        size = self.body[self.offset]
        self.offset += 1
        if self.offset + size > len(self.body):
            raise Malformed(f"{field} name length {size} runs past the end")
        raw = self.body[self.offset : self.offset + size]
        self.offset += size
        if size == 0 and allow_empty:
            return ""
        try:
            value = raw.decode("ascii")
            check_name(field, value)
        except (UnicodeDecodeError, ValueError):
            raise Malformed(f"{field} name {raw[:40]!r} is not a name") from None
        return value

    def unpack(self, fmt: struct.Struct, field: str) -> tuple[int, ...]:
        if self.offset + fmt.size > len(self.body):
            raise Malformed(f"ends inside the {field}")
        values = fmt.unpack_from(self.body, self.offset)
        self.offset += fmt.size
        return values

    def end(self) -> None:
        if self.offset != len(self.body):
            raise Malformed(f"{len(self.body) - self.offset} unexpected bytes before the tag")


def decode_request(data: bytes, key_for: Callable[[bytes], bytes | None]) -> Request:
    """Verify and parse a request. `key_for(cluster_id)` gives that cluster's arbiter key, or None.

    Raises an `ArbiterWireError` subclass for anything not acceptable, and nothing else.
    """
    data = _frame(data, answer=False)
    (_magic, version, kind, _length, cluster, nonce, boot_id, sequence, duration_ms, generation) = (
        _REQUEST.unpack_from(data)
    )
    if kind & ANSWER_BIT:
        raise Malformed("an answer sent to the arbiter (a request was expected)")
    key = key_for(cluster)
    if key is None:
        raise UnknownCluster(f"cluster id {cluster.hex()} has no key on this arbiter (--key-file)")
    body = _verify(data, key)
    try:
        request_kind = Kind(kind)
    except ValueError:
        raise Malformed(f"unknown request kind {kind}") from None
    reader = _Reader(body, _REQUEST.size)
    confirmed = reader.unpack(_CONFIRMED, "confirmed generation")[0] if version >= 3 else None
    node = reader.name("node")
    module = reader.name("module", allow_empty=request_kind is Kind.STATUS)
    reader.end()
    try:
        return Request(
            kind=request_kind,
            cluster=cluster,
            node=node,
            module=module,
            nonce=nonce,
            boot_id=boot_id,
            sequence=sequence,
            duration_ms=duration_ms,
            generation=generation,
            confirmed=confirmed,
        )
    except ValueError as exc:
        raise Malformed(str(exc)) from None


def decode_answer(data: bytes, key: bytes) -> Answer:
    """Verify and parse an answer with the arbiter `key`. Raises only `ArbiterWireError` subclasses."""
    check_key(key)
    data = _frame(data, answer=True)
    body = _verify(data, key)
    (_m, version, kind, _l, cluster, nonce, boot_id, reason, flags, remaining_ms, generation) = (
        _ANSWER.unpack_from(body)
    )
    if not kind & ANSWER_BIT:
        raise Malformed("a request where an answer was expected")
    try:
        answer_kind = Kind(kind & ~ANSWER_BIT)
        answer_reason = Reason(reason)
    except ValueError as exc:
        raise Malformed(str(exc)) from None
    if flags & ~(FLAG_GRANTED | FLAG_TRUNCATED):
        raise Malformed(f"unknown flags {flags:#04x}")
    if bool(flags & FLAG_GRANTED) != answer_reason.granted:
        raise Malformed(f"granted flag contradicts reason {answer_reason.name}")
    reader = _Reader(body, _ANSWER.size)
    v3 = version >= 3
    confirmed = reader.unpack(_CONFIRMED, "confirmed generation")[0] if v3 else generation
    holder = reader.name("holder", allow_empty=True)
    entries: list[LeaseEntry] = []
    if answer_kind is Kind.STATUS:
        (count,) = reader.unpack(_COUNT, "lease count")
        for _ in range(count):
            module = reader.name("module")
            entry_holder = reader.name("holder", allow_empty=True)
            entry_ms, entry_generation = reader.unpack(_ENTRY_TAIL, "remaining time and generation")
            entry_confirmed = reader.unpack(_CONFIRMED, "confirmed generation")[0] if v3 else entry_generation
            entries.append(LeaseEntry(module, entry_holder, entry_ms, entry_generation, entry_confirmed))
    elif flags & FLAG_TRUNCATED:
        raise Malformed("truncated flag on an answer without a lease list")
    reader.end()
    try:
        return Answer(
            kind=answer_kind,
            cluster=cluster,
            nonce=nonce,
            arbiter_boot_id=boot_id,
            reason=answer_reason,
            remaining_ms=remaining_ms,
            generation=generation,
            confirmed=confirmed,
            holder=holder,
            entries=tuple(entries),
            truncated=bool(flags & FLAG_TRUNCATED),
            version=version,
        )
    except ValueError as exc:
        raise Malformed(str(exc)) from None
