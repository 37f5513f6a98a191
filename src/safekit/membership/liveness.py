"""Liveness of peers, per LAN, from the heartbeats that passed authentication and replay checks.

This module owns the timing rules: a LAN to a peer is up while packets arrive on it within that
LAN's timeout; a peer is up while at least one of its LANs is up. It reports changes as events and
never reads a clock: the daemon passes `now` (monotonic seconds) to every call and calls `tick` at
`next_deadline()` (or more often).

With `two_way` (mirror modules with the arbitrating witness), a LAN is up only while the peer
also shows that it hears this node: its packets echo the send time of one of ours
(`echo_sent_at_us`), and the newest of our packets it echoed must be younger than the timeout plus
one pulse (the echo's own age: the peer answers at its next pulse). A link that carries one
direction only (a dead transmit pair, a port that drops one way) is then down on both sides, as a
cut cable is, instead of the side that still hears believing in a peer that no longer hears it
(ADR 0076).

One `Liveness` tracks one module's heartbeats, as in SafeKit where each module has its own `<heart>`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LanTiming:
    """SafeKit's `<heartbeat pulse timeout>` for one LAN, in seconds.

    `pulse` is how often the sender sends; `timeout` is how long silence lasts before the LAN is
    declared down. Only `timeout` matters to the receiver; both travel together so the one rule that
    ties them is checked in one place: a timeout not longer than the pulse would take the LAN down
    between two packets that arrive on time. (Give it several pulses so one lost packet is not a
    LanDown; SafeKit's defaults are 700 ms and 30 s.)
    """

    pulse: float
    timeout: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pulse) and self.pulse > 0):
            raise ValueError(f"heartbeat pulse must be a positive duration, got {self.pulse!r}")
        if not (math.isfinite(self.timeout) and self.timeout > self.pulse):
            raise ValueError(
                f"heartbeat timeout {self.timeout!r}s must be longer than the pulse ({self.pulse!r}s), "
                "or the LAN would be declared down between two packets sent on time"
            )


@dataclass(frozen=True, slots=True)
class LanUp:
    """Packets from `peer` arrive again on `lan`: resource heartbeat.<lan> goes up."""

    peer: str
    lan: str


@dataclass(frozen=True, slots=True)
class LanDown:
    """No packet from `peer` on `lan` for the LAN's timeout: heartbeat.<lan> goes down, log a warning.

    `unanswered`: its packets still arrived, but none echoed a packet this node sent within the
    timeout (and a pulse): the peer no longer hears this node on the LAN (a one-way link)."""

    peer: str
    lan: str
    unanswered: bool = False


@dataclass(frozen=True, slots=True)
class PeerUp:
    """`peer` is heard on at least one LAN after being silent on all (or never heard)."""

    peer: str


@dataclass(frozen=True, slots=True)
class PeerLost:
    """Every LAN to `peer` timed out: the state machine's "peer lost" input."""

    peer: str


LivenessEvent = LanUp | LanDown | PeerUp | PeerLost


@dataclass(slots=True)
class _Link:
    timeout: float
    grace: float
    """The pulse: how old an echo of ours may be on top of the timeout (the peer answers at its pulse)."""
    last_heard: float | None = None
    answered: float | None = None
    """Send time of the newest of our packets the peer echoed on this LAN, or when the LAN came up
    (the peer then has the timeout and a pulse to show it hears this node)."""
    up: bool = False
    down_at: float | None = None
    """When the LAN was declared down (None: up, or never heard)."""

    def contact(self, two_way: bool) -> float | None:
        """When the peer was last known in contact on this LAN: its last packet or, with `two_way`,
        its last echo of ours plus a pulse, whichever is earlier (None: never heard). The LAN goes
        down one timeout after it."""
        if self.last_heard is None:
            return None
        if two_way and self.answered is not None:
            return min(self.last_heard, self.answered + self.grace)
        return self.last_heard

    def deadline(self, two_way: bool) -> float | None:
        """When the LAN goes down if nothing more arrives (None: not up)."""
        contact = self.contact(two_way)
        return None if not self.up or contact is None else contact + self.timeout


class Liveness:
    """Up/down state of every (peer, LAN) pair of one module.

    `peers` maps each peer node to the LANs it is reachable on (cluster.xml need not put every node
    on every LAN). Before its first packet a peer is neither up nor lost: no event is reported for
    a peer never heard; deciding how long to wait for it at start is the state machine's job.
    """

    def __init__(
        self, lans: Mapping[str, LanTiming], peers: Mapping[str, Collection[str]], *, two_way: bool = False
    ) -> None:
        self.two_way = two_way
        self._links: dict[str, dict[str, _Link]] = {}
        for peer, peer_lans in peers.items():
            if not peer_lans:
                raise ValueError(f"peer {peer!r} is on no LAN: it could never be heard")
            unknown = sorted(set(peer_lans) - set(lans))
            if unknown:
                raise ValueError(f"peer {peer!r} is on LAN(s) {unknown} that have no heartbeat timing")
            self._links[peer] = {
                lan: _Link(timeout=lans[lan].timeout, grace=lans[lan].pulse) for lan in sorted(peer_lans)
            }

    def _link(self, peer: str, lan: str) -> _Link:
        try:
            return self._links[peer][lan]
        except KeyError:
            raise ValueError(f"no heartbeat expected from peer {peer!r} on LAN {lan!r}") from None

    def packet_received(
        self, peer: str, lan: str, now: float, answered: float | None = None
    ) -> list[LivenessEvent]:
        """Record an authentic, non-replayed packet from `peer` on `lan` at `now`; `answered`: the
        send time (this node's monotonic seconds) of our packet it echoes, None if it echoes none."""
        link = self._link(peer, lan)
        was_peer_up = self.peer_is_up(peer)
        # max(): a caller mixing a slightly older timestamp must not move the deadline backwards.
        link.last_heard = now if link.last_heard is None else max(link.last_heard, now)
        if answered is not None and answered <= now:  # a later one: another clock origin, no proof
            link.answered = answered if link.answered is None else max(link.answered, answered)
        events: list[LivenessEvent] = []
        if not link.up:
            link.up = True
            link.down_at = None
            link.answered = now if link.answered is None else max(link.answered, now)
            events.append(LanUp(peer, lan))
            if not was_peer_up:
                events.append(PeerUp(peer))
        return events

    def tick(self, now: float) -> list[LivenessEvent]:
        """Declare down every LAN silent for its timeout at `now`; a peer with none left is lost.

        A LAN is down from the moment `now - last_heard >= timeout`. A packet that arrives after
        that moment but before the tick keeps the LAN up: the daemon ticks at `next_deadline()`, so
        the difference is scheduling delay, and reporting a down/up pair for it would only add noise.
        """
        events: list[LivenessEvent] = []
        for peer, links in self._links.items():
            was_up = any(link.up for link in links.values())
            for lan, link in links.items():
                deadline = link.deadline(self.two_way)
                if deadline is not None and now >= deadline:
                    contact = link.contact(self.two_way)
                    assert contact is not None and link.last_heard is not None
                    link.up = False
                    link.down_at = now
                    # the echo rule bound (its packets kept coming): the peer no longer hears this node
                    events.append(LanDown(peer, lan, unanswered=contact < link.last_heard))
            if was_up and not any(link.up for link in links.values()):
                events.append(PeerLost(peer))
        return events

    def next_deadline(self) -> float | None:
        """The earliest time at which `tick` would report something, or None if no LAN is up."""
        deadlines = [
            deadline
            for links in self._links.values()
            for link in links.values()
            if (deadline := link.deadline(self.two_way)) is not None
        ]
        return min(deadlines, default=None)

    def peer_is_up(self, peer: str) -> bool:
        if peer not in self._links:
            raise ValueError(f"unknown peer {peer!r}")
        return any(link.up for link in self._links[peer].values())

    def last_heard(self, peer: str) -> float | None:
        """When `peer` was last heard on any LAN (None: never)."""
        heard = [link.last_heard for link in self._link_list(peer) if link.last_heard is not None]
        return max(heard, default=None)

    def last_contact(self, peer: str) -> tuple[float | None, bool]:
        """(when `peer` was last known to be in contact on any LAN, whether its echoes rather than its
        packets said so): the start of a loss's detection, one timeout before its deadline. With
        `two_way`, a peer whose packets still arrive was last in contact at its last echo of ours
        (plus the pulse an echo may take)."""
        best: float | None = None
        unanswered = False
        for link in self._link_list(peer):
            contact = link.contact(self.two_way)
            if contact is not None and (best is None or contact > best):
                assert link.last_heard is not None
                best, unanswered = contact, contact < link.last_heard
        return best, unanswered

    def _link_list(self, peer: str) -> list[_Link]:
        if peer not in self._links:
            raise ValueError(f"unknown peer {peer!r}")
        return list(self._links[peer].values())

    def down_since(self, peer: str, lan: str) -> float | None:
        """When the LAN to `peer` was declared down, while it is down (None: up, or never heard)."""
        return self._link(peer, lan).down_at

    def lan_is_up(self, peer: str, lan: str) -> bool:
        return self._link(peer, lan).up

    def peers(self) -> list[str]:
        return list(self._links)

    def lans_of(self, peer: str) -> list[str]:
        if peer not in self._links:
            raise ValueError(f"unknown peer {peer!r}")
        return list(self._links[peer])
