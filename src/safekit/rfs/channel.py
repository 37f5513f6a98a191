"""The control channel between safekitd and a replication process: one typed vocabulary, one
encoder and one decoder for each direction, in one place (docs/replication.md, "Control channel").

It is part of the language-neutral contract: the native replication programs (native/) speak it
byte for byte as encoded here, and another implementation could. One JSON object per line, UTF-8:

- events, replication process -> safekitd, on the process's stdout: `{"event": NAME, FIELD: ...}`
- commands, safekitd -> replication process, on its stdin: `{"cmd": NAME, FIELD: ...}`

Decoding is strict for what it knows (a field of the wrong type is a `ChannelError`, never a
half-read message) and lenient for what it does not: an event or command of an unknown name, or an
extra field, is kept as `UnknownEvent`/`UnknownCommand` or ignored, so that either side may be
upgraded first. Pure: no I/O here.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

MAX_LINE = 1 << 20
"""A line longer than this (1 MiB) is refused: a verify report is the longest legitimate one."""


class ChannelError(ValueError):
    """A line that is not a well-formed message of the channel."""


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Mounted:
    """Primary: the replicated directories are served (FUSE) - the process is started."""

    NAME: ClassVar[str] = "mounted"
    dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listening:
    """Secondary: listening for the primary - the process is started."""

    NAME: ClassVar[str] = "listening"
    addr: str = ""
    port: int = 0


@dataclass(frozen=True)
class Ready:
    """Secondary: its copy's state as read from disk at start."""

    NAME: ClassVar[str] = "ready"
    in_sync: bool = False
    epoch: str = ""
    trusted: bool = False


@dataclass(frozen=True)
class Connected:
    """Secondary: the primary connected."""

    NAME: ClassVar[str] = "connected"
    peer: str = ""
    epoch: str = ""


@dataclass(frozen=True)
class Degraded:
    """Primary: the secondary does not follow; writes are held until `DegradeOk` (or `Fence`)."""

    NAME: ClassVar[str] = "degraded"
    reason: str = ""


@dataclass(frozen=True)
class Disconnected:
    """The link between the replication processes is down."""

    NAME: ClassVar[str] = "disconnected"
    reason: str = ""


@dataclass(frozen=True)
class Resyncing:
    """A resynchronisation of the secondary's copy began (`mode`: journal, checksum, full)."""

    NAME: ClassVar[str] = "resyncing"
    mode: str = ""


@dataclass(frozen=True)
class Progress:
    """Secondary: how far its resynchronisation is."""

    NAME: ClassVar[str] = "progress"
    percent: int = 0


@dataclass(frozen=True)
class InSync:
    """The secondary's copy follows the primary. The secondary says at which replica generation;
    the primary says how the resynchronisation went."""

    NAME: ClassVar[str] = "in_sync"
    generation: int | None = None
    mode: str = ""
    seconds: float | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class ApplyError:
    """Secondary: an operation could not be applied (its copy no longer follows)."""

    NAME: ClassVar[str] = "error"
    reason: str = ""
    errno: int = 0


@dataclass(frozen=True)
class Failed:
    """The process failed (at start: it did not start)."""

    NAME: ClassVar[str] = "failed"
    reason: str = ""


@dataclass(frozen=True)
class SplitBrainSaved:
    """Secondary: what this node wrote since a split brain it lost is saved under `path`."""

    NAME: ClassVar[str] = "splitbrain"
    path: str = ""
    files: int = 0
    bytes: int = 0
    not_saved: int = 0
    deleted: int = 0
    since: str | None = None
    winner: str | None = None


@dataclass(frozen=True)
class VerifyResult:
    """Primary: the answer to `Verify` (`reason` set when it could not compare)."""

    NAME: ClassVar[str] = "verify"
    ok: bool = False
    checked: int = 0
    differences: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class StatusReport:
    """Primary: the answer to `QueryStatus` (`stats`: counters, flattened on the wire)."""

    NAME: ClassVar[str] = "status"
    state: str = ""
    seq: int = 0
    journal: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Exited:
    """The process ended without being asked to (never on the wire: safekitd's own)."""

    NAME: ClassVar[str] = "exited"
    code: int | None = None


@dataclass(frozen=True)
class UnknownEvent:
    """An event this version does not know (from a newer replication process): ignored."""

    NAME: ClassVar[str] = ""
    name: str = ""


Event = Union[  # noqa: UP007 - a runtime value (the decoder walks it)
    Mounted,
    Listening,
    Ready,
    Connected,
    Degraded,
    Disconnected,
    Resyncing,
    Progress,
    InSync,
    ApplyError,
    Failed,
    SplitBrainSaved,
    VerifyResult,
    StatusReport,
    Exited,
    UnknownEvent,
]


# --------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Stop:
    """End: a primary flushes to an in-sync secondary (bounded), unmounts, exits 0."""

    NAME: ClassVar[str] = "stop"


@dataclass(frozen=True)
class DegradeOk:
    """Primary: held writes may be acknowledged by this node alone (the state machine's
    `may_acknowledge_alone`)."""

    NAME: ClassVar[str] = "degrade_ok"


@dataclass(frozen=True)
class Fence:
    """Primary: held and new fsync calls fail (EIO): nothing is acknowledged alone."""

    NAME: ClassVar[str] = "fence"


@dataclass(frozen=True)
class PeerLost:
    """Primary: membership lost the peer (every heartbeat): do not wait for sendtimeout."""

    NAME: ClassVar[str] = "peer_lost"


@dataclass(frozen=True)
class ReplicationLanLost:
    """Primary: the heartbeats of the LAN that carries the stream are down while the peer may still
    be heard on another: do not wait for sendtimeout (ADR 0077)."""

    NAME: ClassVar[str] = "replication_lan_lost"


@dataclass(frozen=True)
class SetGeneration:
    """Primary: the module's replica generation now (sent to the secondary with the stream)."""

    NAME: ClassVar[str] = "generation"
    value: int = 0


@dataclass(frozen=True)
class Fullsync:
    """Primary: resynchronise the secondary by copying everything."""

    NAME: ClassVar[str] = "fullsync"


@dataclass(frozen=True)
class Verify:
    """Primary: compare both copies at one point of the stream (answered by `VerifyResult`)."""

    NAME: ClassVar[str] = "verify"


@dataclass(frozen=True)
class QueryStatus:
    """Primary: report the link's state and counters (answered by `StatusReport`)."""

    NAME: ClassVar[str] = "status"


@dataclass(frozen=True)
class UnknownCommand:
    """A command this version does not know (from a newer safekitd): ignored."""

    NAME: ClassVar[str] = ""
    name: str = ""


Command = Union[  # noqa: UP007 - a runtime value
    Stop,
    DegradeOk,
    Fence,
    PeerLost,
    ReplicationLanLost,
    SetGeneration,
    Fullsync,
    Verify,
    QueryStatus,
    UnknownCommand,
]

_EVENTS: dict[str, type[Any]] = {t.NAME: t for t in typing.get_args(Event) if t not in (UnknownEvent, Exited)}
_COMMANDS: dict[str, type[Any]] = {t.NAME: t for t in typing.get_args(Command) if t is not UnknownCommand}


# --------------------------------------------------------------------------- encoding
def encode_event(event: Event) -> bytes:
    """One line (with its newline) for an event."""
    if isinstance(event, (UnknownEvent, Exited)):
        raise ChannelError(f"{type(event).__name__} is not sent on the channel")
    return _encode("event", event)


def encode_command(command: Command) -> bytes:
    """One line (with its newline) for a command."""
    if isinstance(command, UnknownCommand):
        raise ChannelError("UnknownCommand is not sent on the channel")
    return _encode("cmd", command)


def _encode(key: str, message: Any) -> bytes:
    obj: dict[str, Any] = {key: message.NAME}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(message, StatusReport) and f.name == "stats":
            obj.update({k: v for k, v in value.items() if k not in ("event", "state", "seq", "journal")})
        else:
            obj[f.name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def describe(message: Event | Command) -> dict[str, Any]:
    """A message as a JSON-able dict (for status views), whatever its kind."""
    key = "cmd" if isinstance(message, typing.get_args(Command)) else "event"
    name = message.name if isinstance(message, (UnknownEvent, UnknownCommand)) else message.NAME
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    return {key: name, **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}}


# --------------------------------------------------------------------------- decoding
def decode_event(line: bytes | str) -> Event:
    """The event on one line; `UnknownEvent` for a name this version does not know."""
    obj, name = _object(line, "event")
    kind = _EVENTS.get(name)
    if kind is None:
        return UnknownEvent(name)
    if kind is StatusReport:
        known = {"state", "seq", "journal"}
        stats = {k: v for k, v in obj.items() if k not in known and k != "event"}
        return StatusReport(**_fields(kind, {k: v for k, v in obj.items() if k in known}), stats=stats)
    return typing.cast("Event", kind(**_fields(kind, obj)))


def decode_command(line: bytes | str) -> Command:
    """The command on one line; `UnknownCommand` for a name this version does not know."""
    obj, name = _object(line, "cmd")
    kind = _COMMANDS.get(name)
    if kind is None:
        return UnknownCommand(name)
    return typing.cast("Command", kind(**_fields(kind, obj)))


def _object(line: bytes | str, key: str) -> tuple[dict[str, Any], str]:
    if len(line) > MAX_LINE:
        raise ChannelError(f"a line of {len(line)} bytes (at most {MAX_LINE})")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ChannelError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ChannelError(f"not a JSON object: {type(obj).__name__}")
    name = obj.get(key)
    if not isinstance(name, str):
        raise ChannelError(f"no {key!r} name in {_short(obj)}")
    return obj, name


def _fields(kind: type[Any], obj: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(kind)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name not in obj:
            continue  # the default: an older peer did not send it
        out[f.name] = _typed(kind.NAME, f.name, hints[f.name], obj[f.name])
    return out


def _typed(message: str, name: str, hint: Any, value: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is Union:
        if value is None and type(None) in typing.get_args(hint):
            return None
        (inner,) = (a for a in typing.get_args(hint) if a is not type(None))
        return _typed(message, name, inner, value)
    origin = typing.get_origin(hint) or hint
    accepts = _ACCEPTS.get(origin)
    if accepts is not None and accepts(value):
        return float(value) if hint is float else tuple(value) if origin is tuple else value
    raise ChannelError(f"{message}: {name} is {_short(value)}, not {_hint_name(hint)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_ACCEPTS: dict[Any, Any] = {
    bool: lambda v: isinstance(v, bool),
    int: _is_int,
    float: lambda v: _is_int(v) or isinstance(v, float),
    str: lambda v: isinstance(v, str),
    tuple: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    dict: lambda v: isinstance(v, dict),
}


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
