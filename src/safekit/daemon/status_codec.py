"""A mirror node's announced status in heartbeat packets, and back.

The fixed heartbeat fields carry what any peer or tool understands (state, sub-state, replica
generation, up-to-date flag, a coarse role intent); the mirror election needs a little more (the
exact role, the operator's intent, the last primary, and who this node thinks should be primary).
That travels in one *critical* extension: a node that does not understand it must not take part
in the election, so it drops the packet instead of deciding on half the facts. The generation at
which the copy holds every acknowledged write travels in an *optional* one (ADR 0045): a node that
does not know it reads the fixed generation for it, as every node did before.
"""

from __future__ import annotations

import struct

from safekit.lifecycle import Readiness
from safekit.membership.wire import (
    EXTENSION_FORCED_BASE,
    EXTENSION_MIRROR_STATUS,
    EXTENSION_REPLICA_CONFIRMED,
    EXTENSION_SHARED_GENERATION,
    Extension,
    Heartbeat,
    RoleIntent,
    SubState,
)
from safekit.membership.wire import ModuleState as WireState
from safekit.mirror.states import Intent, ModuleState, NodeStatus, Role

MIRROR_STATUS_EXTENSION = EXTENSION_MIRROR_STATUS
_VERSION = 1
_CONFIRMED = struct.Struct(">Q")

_STATES = {state: WireState[state.value] for state in ModuleState}
_READINESS = {
    Readiness.NOT_READY: SubState.NOT_READY,
    Readiness.TRANSIENT: SubState.TRANSIENT,
    Readiness.READY: SubState.READY,
}
_ROLES = (Role.PRIMARY, Role.SECONDARY, Role.CANDIDATE, Role.NONE)  # wire codes 0-3
_INTENTS = (Intent.AUTO, Intent.PRIM, Intent.PRIMFORCE, Intent.SECOND)  # wire codes 0-3


class StatusDecodeError(ValueError):
    """An authentic heartbeat whose mirror status cannot be read (a newer or broken peer)."""


def wire_fields(status: NodeStatus) -> dict[str, object]:
    """Keyword arguments of `membership.wire.Heartbeat` that carry `status`."""
    coarse = {Role.PRIMARY: RoleIntent.PRIMARY, Role.SECONDARY: RoleIntent.SECONDARY}
    return {
        "state": _STATES[status.state],
        "substate": _READINESS[status.readiness],
        "replica_generation": status.generation,
        "up_to_date": status.uptodate,
        "role_intent": coarse.get(status.role, RoleIntent.NONE),
        "extensions": _extensions(status),
    }


def _extensions(status: NodeStatus) -> tuple[Extension, ...]:
    exts = [Extension(MIRROR_STATUS_EXTENSION, _encode_extension(status))]
    if status.confirmed is not None and status.confirmed != status.generation:
        # Only when it says more than the fixed field: most heartbeats stay as they were.
        exts.append(Extension(EXTENSION_REPLICA_CONFIRMED, _CONFIRMED.pack(status.confirmed)))
    if status.forced_base is not None:
        exts.append(Extension(EXTENSION_FORCED_BASE, _CONFIRMED.pack(status.forced_base)))
    if status.shared is not None:
        exts.append(Extension(EXTENSION_SHARED_GENERATION, _CONFIRMED.pack(status.shared)))
    return tuple(exts)


def _name(value: str | None) -> bytes:
    raw = (value or "").encode()
    if len(raw) > 255:
        raise ValueError(f"node name too long for a heartbeat: {value!r}")
    return bytes([len(raw)]) + raw


def _encode_extension(status: NodeStatus) -> bytes:
    head = struct.pack(">BBB", _VERSION, _ROLES.index(status.role), _INTENTS.index(status.intent))
    return head + _name(status.last_primary) + _name(status.verdict)


def status_from(hb: Heartbeat) -> NodeStatus:
    """The peer's `NodeStatus` from a decoded heartbeat."""
    sender = hb.sender
    ext = next((e for e in hb.extensions if e.type == MIRROR_STATUS_EXTENSION), None)
    if ext is None:
        raise StatusDecodeError(f"heartbeat from {sender} carries no mirror status")
    data = ext.value
    try:
        version, role_i, intent_i = struct.unpack_from(">BBB", data)
        if version != _VERSION:
            raise StatusDecodeError(f"heartbeat from {sender}: mirror status version {version} unknown")
        offset = 3
        names: list[str | None] = []
        for _ in range(2):
            size = data[offset]
            if offset + 1 + size > len(data):
                raise StatusDecodeError(f"heartbeat from {sender}: a name in the mirror status is cut short")
            names.append(data[offset + 1 : offset + 1 + size].decode() or None)
            offset += 1 + size
        if offset != len(data):
            raise StatusDecodeError(f"heartbeat from {sender}: trailing bytes in mirror status")
        confirmed = _confirmed(hb)
        forced_base = _generation_extension(hb, EXTENSION_FORCED_BASE, "forced base generation")
        shared = _generation_extension(hb, EXTENSION_SHARED_GENERATION, "shared generation")
        module_state = next(s for s, w in _STATES.items() if w == hb.state)
        readiness = next(r for r, w in _READINESS.items() if w == hb.substate)
        return NodeStatus(
            node=sender,
            state=module_state,
            readiness=readiness,
            role=_ROLES[role_i],
            generation=hb.replica_generation,
            uptodate=hb.up_to_date,
            intent=_INTENTS[intent_i],
            last_primary=names[0],
            verdict=names[1],
            confirmed=confirmed,
            forced_base=forced_base,
            shared=shared,
        )
    except (struct.error, IndexError, UnicodeDecodeError, StopIteration) as exc:
        raise StatusDecodeError(f"heartbeat from {sender}: unreadable mirror status ({exc})") from exc


def _generation_extension(hb: Heartbeat, kind: int, what: str) -> int | None:
    """An optional extension that carries one generation (8 bytes), or None when absent."""
    ext = next((e for e in hb.extensions if e.type == kind), None)
    if ext is None:
        return None
    if len(ext.value) != _CONFIRMED.size:
        raise StatusDecodeError(f"heartbeat from {hb.sender}: {what} of {len(ext.value)} bytes")
    (value,) = _CONFIRMED.unpack(ext.value)
    return int(value)


def _confirmed(hb: Heartbeat) -> int | None:
    """The sender's confirmed generation when it differs from its generation (the optional
    extension), else None."""
    confirmed = _generation_extension(hb, EXTENSION_REPLICA_CONFIRMED, "confirmed generation")
    if confirmed is None:
        return None
    if confirmed > hb.replica_generation:
        raise StatusDecodeError(
            f"heartbeat from {hb.sender}: confirmed generation {confirmed} above its generation "
            f"{hb.replica_generation}"
        )
    return confirmed
