"""Metrics of the heartbeat receive path: what arrived on each LAN and what was dropped, and why.

This module owns the counters and round-trip-time statistics that the daemon exports; the
receiver updates them, nothing here decides anything. Rule 5 of the architecture says a packet
that fails authentication is dropped *and counted*: these are those counts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Counters:
    """Per-LAN packet counts, as seen by the receiving node."""

    received: int = 0
    """Authentic, not replayed: counted as heard on the LAN (fresh or a copy)."""
    lan_copies: int = 0
    """Part of `received`: copies of a sequence already delivered through a faster LAN."""
    dropped_bad_signature: int = 0
    """Tag mismatch: wrong key on a node, corruption, or forgery."""
    dropped_replay: int = 0
    """Authentic but already seen, too old, or from a peer's previous incarnation."""
    dropped_malformed: int = 0
    """Not a heartbeat, truncated, oversized, or authentic but unparsable / unsupported version."""
    dropped_misdirected: int = 0
    """Authentic but for another module, another target node, or naming another LAN than the one
    it arrived on (a swapped cable or address in cluster.xml, or a packet redirected by someone)."""

    @property
    def dropped(self) -> int:
        return (
            self.dropped_bad_signature
            + self.dropped_replay
            + self.dropped_malformed
            + self.dropped_misdirected
        )


MAX_RTT_SAMPLE = 60.0
"""Seconds. A longer "round trip" comes from an echo of a timestamp taken before our own restart
(another clock origin), not from the network: it is discarded, not averaged in."""


@dataclass(slots=True)
class RttStats:
    """Round-trip times to one peer on one LAN, in seconds, from echoed timestamps.

    `smoothed` is the RFC 6298 estimator (gain 1/8), so a single slow packet moves it a little.
    """

    samples: int = 0
    last: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0
    smoothed: float = 0.0

    def add(self, rtt: float) -> bool:
        """Record one sample; returns False (and records nothing) if it is not plausible."""
        if not 0.0 <= rtt <= MAX_RTT_SAMPLE:
            return False
        if self.samples == 0:
            self.minimum = self.maximum = self.smoothed = rtt
        else:
            self.minimum = min(self.minimum, rtt)
            self.maximum = max(self.maximum, rtt)
            self.smoothed += (rtt - self.smoothed) / 8
        self.last = rtt
        self.samples += 1
        return True
