"""Replay protection for authenticated heartbeats, per (peer, module).

This module owns the decision "has this authentic packet been seen before, and is its content news?"
It is pure and must only be fed packets whose tag has been verified: an unauthenticated packet must
never move the state kept here.

Design (see docs/heartbeat-protocol.md, "Replay protection"):

* A sender numbers its heartbeats with one sequence counter per (module, incarnation) and sends the
  same sequence number on every LAN. Each copy names its LAN inside the authenticated bytes, so a
  packet's identity is (incarnation, sequence, lan), and a copy cannot be moved onto another LAN.
* Per (peer, module, lan) the guard keeps the highest sequence seen on that LAN and a 64-bit window
  of which recent sequences were seen there. A packet already seen on its LAN, or older than the
  window, is a replay: dropped and counted. A packet reordered on its LAN within the window is fine.
* Per (peer, module) the guard keeps the highest sequence delivered. The first copy of a sequence
  (from whichever LAN is fastest) is FRESH and goes to the state machine; a later copy on another LAN,
  or any copy older than what was delivered, is a LAN_COPY: it proves its LAN works (liveness) but
  its content is not acted on twice, and stale content never overwrites newer content.
* Incarnations order streams. A higher incarnation (the peer restarted) starts a new stream and
  discards the old one's windows; a lower one can only be a packet recorded before the restart, so
  it is rejected. Senders make incarnations strictly increase with `next_incarnation`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_WINDOW = 64


class Verdict(enum.Enum):
    """What to do with an authentic heartbeat."""

    FRESH = "fresh"
    """First copy of a new sequence number: feed it to liveness and to the state machine."""
    LAN_COPY = "lan_copy"
    """Another LAN's copy of a sequence already delivered, or older than it: liveness only."""
    REPLAY_SEEN = "replay_seen"
    """This exact (incarnation, sequence, lan) was accepted before."""
    REPLAY_TOO_OLD = "replay_too_old"
    """Older than the window of its LAN: cannot be told from a replay, so treated as one."""
    REPLAY_STALE_INCARNATION = "replay_stale_incarnation"
    """From an incarnation older than the peer's current one: recorded before the peer restarted."""

    @property
    def accepted(self) -> bool:
        """True if the packet counts as heard on its LAN."""
        return self in (Verdict.FRESH, Verdict.LAN_COPY)

    @property
    def deliver(self) -> bool:
        """True if the packet's content should be acted on."""
        return self is Verdict.FRESH


@dataclass(slots=True)
class _LanWindow:
    highest: int
    seen: int  # bit i set: sequence (highest - i) was seen on this LAN


@dataclass(slots=True)
class _Stream:
    incarnation: int
    delivered: int  # highest sequence delivered; -1 before the first
    lans: dict[str, _LanWindow] = field(default_factory=dict)


class ReplayGuard:
    """Replay state for every (peer, module) this node hears from.

    `known_incarnations` restores what `incarnations()` returned before a restart of this daemon.
    Without it a restarted receiver has no memory: until the peer's next real packet (whose
    incarnation is the highest) arrives, it would accept a recorded packet of an older incarnation.
    """

    def __init__(
        self,
        *,
        window: int = DEFAULT_WINDOW,
        known_incarnations: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"replay window must be at least 1, got {window}")
        self._window = window
        self._mask = (1 << window) - 1
        self._streams: dict[tuple[str, str], _Stream] = {}
        for key, incarnation in (known_incarnations or {}).items():
            self._streams[key] = _Stream(incarnation=incarnation, delivered=-1)

    def check(self, *, peer: str, module: str, lan: str, incarnation: int, sequence: int) -> Verdict:
        """Classify an authentic packet and record it. Call exactly once per received packet."""
        key = (peer, module)
        stream = self._streams.get(key)
        if stream is None or incarnation > stream.incarnation:
            stream = _Stream(incarnation=incarnation, delivered=-1)
            self._streams[key] = stream
        elif incarnation < stream.incarnation:
            return Verdict.REPLAY_STALE_INCARNATION

        window = stream.lans.get(lan)
        if window is None:
            stream.lans[lan] = _LanWindow(highest=sequence, seen=1)
        elif sequence > window.highest:
            shift = sequence - window.highest
            window.seen = ((window.seen << shift) | 1) & self._mask if shift < self._window else 1
            window.highest = sequence
        else:
            age = window.highest - sequence
            if age >= self._window:
                return Verdict.REPLAY_TOO_OLD
            if window.seen & (1 << age):
                return Verdict.REPLAY_SEEN
            window.seen |= 1 << age

        if sequence > stream.delivered:
            stream.delivered = sequence
            return Verdict.FRESH
        return Verdict.LAN_COPY

    def incarnations(self) -> dict[tuple[str, str], int]:
        """Current incarnation per (peer, module), for the daemon to persist across restarts."""
        return {key: stream.incarnation for key, stream in self._streams.items()}


def next_incarnation(now_wall_us: int, previous: int | None) -> int:
    """The incarnation a daemon starting now should use.

    Wall-clock microseconds make incarnations increase across restarts without shared state, and
    `previous` (persisted by the daemon) keeps them increasing when the clock is set back - a node
    whose incarnation went down would be rejected by its peers as a replay until they restarted.
    """
    if now_wall_us < 0:
        raise ValueError(f"wall clock before 1970: {now_wall_us}")
    return now_wall_us if previous is None else max(now_wall_us, previous + 1)
