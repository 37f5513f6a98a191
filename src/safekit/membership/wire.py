"""Heartbeat wire format: the bytes one node sends another, and nothing else.

This module owns the packet layout (version 1), its authentication with the cluster key, and the
strict, bounded parser. It is pure: bytes in, a `Heartbeat` out, or a `HeartbeatError` saying why
the bytes were refused. What a receiver does with a heartbeat (replay checks, liveness, the state
machine) lives elsewhere. `docs/heartbeat-protocol.md` is the language-neutral description of the
same format; keep the two in step.

Layout, all integers big-endian::

    off  size  field
      0     4  magic "SKHB"
      4     1  version (1)
      5     1  flags (bit 0: replica up to date; other bits sent as 0, ignored on receipt)
      6     2  total packet length in bytes, tag included
      8     8  incarnation
     16     8  sequence
     24     8  sent_at_us          sender's monotonic clock, microseconds
     32     8  echo_sent_at_us     last sent_at_us received from the target on this LAN (0: none)
     40     4  echo_hold_us        time the sender held that echo before sending, microseconds
     44     8  replica_generation
     52     1  module state
     53     1  sub-state
     54     1  role intent
     55     1  reserved (sent as 0, ignored on receipt)
     56     .  module, sender, target, lan: each u8 length + UTF-8 bytes (1..MAX_NAME_BYTES)
      .     .  extensions: type u16, length u16, value; until the tag
    L-32   32  HMAC-SHA256(cluster key, bytes 0 .. L-33)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import NamedTuple

from safekit.membership.clusterkey import check_key

MAGIC = b"SKHB"
VERSION = 1
TAG_SIZE = 32
MAX_NAME_BYTES = 128
MAX_PACKET_SIZE = 1200
"""Never fragmented: below the 1232-byte UDP payload that IPv6's minimum MTU (1280) always carries,
with room for a tunnel header. A lost fragment would lose the whole heartbeat."""

FLAG_UP_TO_DATE = 0x01
EXTENSION_CRITICAL = 0x8000
"""Extension types with this bit set change the meaning of the packet: a receiver that does not
know one must drop the packet. Types without it are hints a receiver may skip."""

EXTENSION_MIRROR_STATUS = 0x8001
"""The mirror module's election status (role, operator intent, last primary, preferred primary).
Critical: a node that cannot read it must not take part in a mirror election. Its content is
defined in docs/heartbeat-protocol.md and encoded by `safekit.daemon.status_codec`."""
KNOWN_CRITICAL_EXTENSIONS = frozenset({EXTENSION_MIRROR_STATUS})

EXTENSION_REPLICA_CONFIRMED = 0x0001
"""The newest replica generation at which the sender's copy holds every acknowledged write (8 bytes,
big-endian; ADR 0045). Optional: a receiver that skips it (an older node) takes the fixed
`replica_generation` for it, which is what every node compared before."""

EXTENSION_FORCED_BASE = 0x0002
"""A primary made by `primforce`: the confirmed generation its copy had before the force (8 bytes,
big-endian; ADR 0047), until its secondary is in sync. Optional: a receiver that skips it (an older
node) resynchronises without saving its own acknowledged writes aside, as before."""

EXTENSION_SHARED_GENERATION = 0x0003
"""A mirror primary: the newest generation at which its copy and the peer's were the same (8 bytes,
big-endian; ADR 0072). Optional: a receiver that skips it (an older node) settles two primaries
by the operator's preference alone, as before."""

_HEADER = struct.Struct(">4sBBHQQQQIQBBBB")
_EXTENSION_HEADER = struct.Struct(">HH")
HEADER_SIZE = _HEADER.size
MIN_PACKET_SIZE = HEADER_SIZE + 4 * (1 + 1) + TAG_SIZE
"""Header, four one-byte names, the tag: nothing shorter can be a heartbeat."""

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_LENGTH_OFFSET = 6


class ModuleState(enum.IntEnum):
    """A module's state as carried on the wire.

    Values equal SafeKit's `safekit state -m AM -lq` exit codes, except UP: SafeKit reports a farm
    node UP with ALONE's code (2), which a peer could not tell apart, so UP has its own value.
    """

    STOP = 0
    WAIT = 1
    ALONE = 2
    PRIM = 3
    SECOND = 4
    UP = 5


class SubState(enum.IntEnum):
    """How settled the module is in its state (the colour in SafeKit's console)."""

    NOT_READY = 0
    TRANSIENT = 1
    READY = 2


class RoleIntent(enum.IntEnum):
    """What the sender is asking to become, so both sides of an election see the same request."""

    NONE = 0
    PRIMARY = 1
    SECONDARY = 2


class Extension(NamedTuple):
    """A type-length-value field after the fixed fields: how later versions add data."""

    type: int
    value: bytes

    @property
    def critical(self) -> bool:
        return bool(self.type & EXTENSION_CRITICAL)


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """One heartbeat from `sender` to `target` about `module`, sent on LAN `lan`.

    The same (incarnation, sequence) is sent on every LAN; each copy names its own LAN, so each
    copy has its own tag and cannot be replayed onto another LAN.
    """

    module: str
    sender: str
    target: str
    lan: str
    incarnation: int
    sequence: int
    sent_at_us: int
    echo_sent_at_us: int = 0
    echo_hold_us: int = 0
    state: ModuleState
    substate: SubState
    replica_generation: int = 0
    up_to_date: bool = False
    role_intent: RoleIntent = RoleIntent.NONE
    extensions: tuple[Extension, ...] = ()

    def __post_init__(self) -> None:
        for name in ("module", "sender", "target", "lan"):
            _check_name(name, getattr(self, name))
        for name in ("incarnation", "sequence", "sent_at_us", "echo_sent_at_us", "replica_generation"):
            _check_int(name, getattr(self, name), _U64_MAX)
        _check_int("echo_hold_us", self.echo_hold_us, _U32_MAX)
        if not isinstance(self.state, ModuleState):
            raise ValueError(f"state must be a ModuleState, got {self.state!r}")
        if not isinstance(self.substate, SubState):
            raise ValueError(f"substate must be a SubState, got {self.substate!r}")
        if not isinstance(self.role_intent, RoleIntent):
            raise ValueError(f"role_intent must be a RoleIntent, got {self.role_intent!r}")
        seen: set[int] = set()
        for ext in self.extensions:
            _check_int("extension type", ext.type, 0xFFFF)
            if len(ext.value) > 0xFFFF:
                raise ValueError(f"extension {ext.type:#06x}: value of {len(ext.value)} bytes is too long")
            if ext.type in seen:
                raise ValueError(f"extension {ext.type:#06x} appears twice")
            seen.add(ext.type)


class HeartbeatError(Exception):
    """The bytes are not a heartbeat this node may act on. Drop the packet and count it."""


class Oversized(HeartbeatError):
    """Longer than MAX_PACKET_SIZE: refused before any parsing."""


class Truncated(HeartbeatError):
    """Shorter than a heartbeat can be, or than its own length field says (an MTU problem?)."""


class BadMagic(HeartbeatError):
    """Not a safekit heartbeat at all (stray traffic on the port, or another protocol)."""


class BadSignature(HeartbeatError):
    """The tag does not match: wrong cluster key on one node, corruption, or forgery."""


class UnsupportedVersion(HeartbeatError):
    """Authentic, but a format version this node does not speak (a peer running newer safekit)."""


class UnsupportedExtension(HeartbeatError):
    """Authentic, but carries a critical extension this node does not understand."""


class Malformed(HeartbeatError):
    """Authentic, but its fields do not parse (a sender bug): never acted on."""


def to_wire_us(seconds: float) -> int:
    """A monotonic clock reading (seconds, as from time.monotonic) in the wire's microseconds."""
    return max(0, round(seconds * 1_000_000))


def _check_name(field: str, value: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a str, got {type(value).__name__}")
    size = len(value.encode("utf-8"))
    if not 1 <= size <= MAX_NAME_BYTES:
        raise ValueError(f"{field} {value!r} is {size} bytes in UTF-8; it must be 1 to {MAX_NAME_BYTES}")


def _check_int(field: str, value: int, maximum: int) -> None:
    # bool is an int subclass; a True sequence number is a bug, not a 1.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"{field} must be an integer in 0..{maximum}, got {value!r}")


_KEYED: dict[bytes, hmac.HMAC] = {}
"""An HMAC-SHA256 already keyed, per cluster key (a node has one or two: ADR 0085). Copying it costs
less than keying a new one, and much less than OpenSSL 3's one-shot HMAC, which looks the
algorithm up in its providers at every call."""


def _tag(key: bytes, body: bytes) -> bytes:
    keyed = _KEYED.get(key)
    if keyed is None:
        if len(_KEYED) >= 4:  # a key rotation, or tests with many keys: keep the newest only
            _KEYED.clear()
        keyed = _KEYED[key] = hmac.new(key, digestmod=hashlib.sha256)
    mac = keyed.copy()
    mac.update(body)
    return mac.digest()


class HeartbeatWriter:
    """Writes the heartbeats of one stream - one module, sender, target and LAN - carrying one
    status: what changes from packet to packet (incarnation, sequence, the clocks) is given to
    `write`. The bytes are `encode`'s for the same `Heartbeat` (encode is this writer, used once).

    A link sends every peer a heartbeat every pulse, and an idle daemon's CPU is mostly these
    packets (ADR 0085): the names, the status fields and the extensions are checked (by `Heartbeat`
    itself) and laid out once, when the status changes, not at every pulse.
    """

    __slots__ = ("_flags", "_key", "_length", "_status", "_tail")

    def __init__(self, key: bytes, template: Heartbeat) -> None:
        """`template`: a heartbeat of the stream with its status (its own counters and clocks are
        not used)."""
        check_key(key)
        parts = []
        for name in (template.module, template.sender, template.target, template.lan):
            raw = name.encode("utf-8")
            parts.append(bytes((len(raw),)) + raw)
        for ext in template.extensions:
            parts.append(_EXTENSION_HEADER.pack(ext.type, len(ext.value)) + ext.value)
        self._tail = b"".join(parts)
        self._length = HEADER_SIZE + len(self._tail) + TAG_SIZE
        if self._length > MAX_PACKET_SIZE:
            raise ValueError(
                f"heartbeat would be {self._length} bytes, more than the {MAX_PACKET_SIZE} allowed"
            )
        self._key = key
        self._flags = FLAG_UP_TO_DATE if template.up_to_date else 0
        self._status = (
            template.replica_generation,
            int(template.state),
            int(template.substate),
            int(template.role_intent),
        )

    def write(
        self, incarnation: int, sequence: int, sent_at_us: int, echo_sent_at_us: int, echo_hold_us: int
    ) -> bytes:
        """The signed packet. Raises ValueError for a counter or clock out of its field's range."""
        generation, state, substate, intent = self._status
        try:
            body = (
                _HEADER.pack(
                    MAGIC,
                    VERSION,
                    self._flags,
                    self._length,
                    incarnation,
                    sequence,
                    sent_at_us,
                    echo_sent_at_us,
                    echo_hold_us,
                    generation,
                    state,
                    substate,
                    intent,
                    0,
                )
                + self._tail
            )
        except struct.error as exc:
            raise ValueError(f"heartbeat field out of range: {exc}") from None
        return body + _tag(self._key, body)


def encode(msg: Heartbeat, key: bytes) -> bytes:
    """Serialise and sign `msg` with the cluster `key`. Raises ValueError if it would not fit."""
    return HeartbeatWriter(key, msg).write(
        msg.incarnation, msg.sequence, msg.sent_at_us, msg.echo_sent_at_us, msg.echo_hold_us
    )


def decode(data: bytes, key: bytes) -> Heartbeat:
    """Verify and parse one packet. Raises a `HeartbeatError` subclass for anything not acceptable.

    Order matters: size bounds and the framing checks that help diagnose a network problem first,
    then the tag, and only then is any field of the packet interpreted.
    """
    check_key(key)
    data = bytes(data)
    if len(data) > MAX_PACKET_SIZE:
        raise Oversized(f"{len(data)} bytes, more than the {MAX_PACKET_SIZE} allowed")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise BadMagic(f"starts with {data[: len(MAGIC)]!r}, not {MAGIC!r}")
    if len(data) < MIN_PACKET_SIZE:
        raise Truncated(f"{len(data)} bytes, a heartbeat is at least {MIN_PACKET_SIZE}")
    (declared,) = struct.unpack_from(">H", data, _LENGTH_OFFSET)
    if len(data) < declared:
        raise Truncated(f"{len(data)} bytes received, the packet says {declared}")
    if len(data) > declared:
        raise Malformed(f"{len(data) - declared} bytes after the end the packet declares ({declared})")
    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(_tag(key, body), tag):
        raise BadSignature("authentication tag mismatch (is the cluster key the same on both nodes?)")
    # Authentic from here on: a failure below is a sender bug or a newer sender, not an attack.
    return _parse(body)


def _parse(body: bytes) -> Heartbeat:
    (
        _magic,
        version,
        flags,
        _length,
        incarnation,
        sequence,
        sent_at_us,
        echo_sent_at_us,
        echo_hold_us,
        replica_generation,
        state,
        substate,
        role_intent,
        _reserved,
    ) = _HEADER.unpack_from(body)
    if version != VERSION:
        raise UnsupportedVersion(f"format version {version}; this node speaks version {VERSION}")
    offset = HEADER_SIZE
    names: list[str] = []
    for field in ("module", "sender", "target", "lan"):
        if offset >= len(body):
            raise Malformed(f"ends before the {field} name")
        size = body[offset]
        offset += 1
        if not 1 <= size <= MAX_NAME_BYTES or offset + size > len(body):
            raise Malformed(f"{field} name length {size} is out of bounds")
        try:
            names.append(body[offset : offset + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise Malformed(f"{field} name is not valid UTF-8") from None
        offset += size
    extensions: list[Extension] = []
    seen: set[int] = set()
    while offset < len(body):
        if offset + _EXTENSION_HEADER.size > len(body):
            raise Malformed("extension header cut short")
        ext_type, ext_size = _EXTENSION_HEADER.unpack_from(body, offset)
        offset += _EXTENSION_HEADER.size
        if offset + ext_size > len(body):
            raise Malformed(f"extension {ext_type:#06x} runs past the end of the packet")
        if ext_type in seen:
            raise Malformed(f"extension {ext_type:#06x} appears twice")
        seen.add(ext_type)
        ext = Extension(ext_type, body[offset : offset + ext_size])
        offset += ext_size
        if ext.critical and ext_type not in KNOWN_CRITICAL_EXTENSIONS:
            raise UnsupportedExtension(f"critical extension {ext_type:#06x} is not understood by this node")
        extensions.append(ext)
    module_state, sub_state, intent = _enumerations(state, substate, role_intent)
    module, sender, target, lan = names
    # Every field was checked on the way: names of 1..MAX_NAME_BYTES of UTF-8, integers unsigned and
    # within their field's width, known enumerations, extensions named once. Heartbeat's own checks
    # (for heartbeats built in this process) would only do it again, for every packet received.
    return _checked_heartbeat(
        module=module,
        sender=sender,
        target=target,
        lan=lan,
        incarnation=incarnation,
        sequence=sequence,
        sent_at_us=sent_at_us,
        echo_sent_at_us=echo_sent_at_us,
        echo_hold_us=echo_hold_us,
        state=module_state,
        substate=sub_state,
        replica_generation=replica_generation,
        up_to_date=bool(flags & FLAG_UP_TO_DATE),
        role_intent=intent,
        extensions=tuple(extensions),
    )


def _checked_heartbeat(
    *,
    module: str,
    sender: str,
    target: str,
    lan: str,
    incarnation: int,
    sequence: int,
    sent_at_us: int,
    echo_sent_at_us: int,
    echo_hold_us: int,
    state: ModuleState,
    substate: SubState,
    replica_generation: int,
    up_to_date: bool,
    role_intent: RoleIntent,
    extensions: tuple[Extension, ...],
) -> Heartbeat:
    """A `Heartbeat` of values already checked, without checking them again."""
    hb = object.__new__(Heartbeat)
    put = object.__setattr__
    put(hb, "module", module)
    put(hb, "sender", sender)
    put(hb, "target", target)
    put(hb, "lan", lan)
    put(hb, "incarnation", incarnation)
    put(hb, "sequence", sequence)
    put(hb, "sent_at_us", sent_at_us)
    put(hb, "echo_sent_at_us", echo_sent_at_us)
    put(hb, "echo_hold_us", echo_hold_us)
    put(hb, "state", state)
    put(hb, "substate", substate)
    put(hb, "replica_generation", replica_generation)
    put(hb, "up_to_date", up_to_date)
    put(hb, "role_intent", role_intent)
    put(hb, "extensions", extensions)
    return hb


# Enumerations by wire value: a lookup, where calling the enum class costs several function calls.
_MODULE_STATES = {member.value: member for member in ModuleState}
_SUB_STATES = {member.value: member for member in SubState}
_ROLE_INTENTS = {member.value: member for member in RoleIntent}


def _enumerations(state: int, substate: int, role_intent: int) -> tuple[ModuleState, SubState, RoleIntent]:
    module_state = _MODULE_STATES.get(state)
    if module_state is None:
        raise Malformed(f"{state} is not a valid ModuleState")
    sub_state = _SUB_STATES.get(substate)
    if sub_state is None:
        raise Malformed(f"{substate} is not a valid SubState")
    intent = _ROLE_INTENTS.get(role_intent)
    if intent is None:
        raise Malformed(f"{role_intent} is not a valid RoleIntent")
    return module_state, sub_state, intent
