"""Metrics of the heartbeat receive path: what arrived on each LAN and what was dropped, and why.

This module owns the counters and round-trip-time statistics that the daemon exports; the
receiver updates them, nothing here decides anything. Rule 5 of the architecture says a packet
that fails authentication is dropped *and counted*: these are those counts.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


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
    dropped_stale: int = 0
    """Authentic and new, on a LAN declared down, but its sender had not heard this node since then:
    written during the outage and delivered late (queued in the network or the sender's neighbour
    table), or a one-way link. Its status may be seconds old (ADR 0070)."""

    @property
    def dropped(self) -> int:
        return (
            self.dropped_bad_signature
            + self.dropped_replay
            + self.dropped_malformed
            + self.dropped_misdirected
            + self.dropped_stale
        )


RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds: upper bounds of the round-trip histogram's buckets (LAN to slow WAN)."""
LATENESS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds a periodic heartbeat left after its due time (a loaded node's timing jitter)."""


@dataclass(slots=True)
class Histogram:
    """Counts of observations per bucket (Prometheus' cumulative `le` buckets on export), their sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    """Per bucket, not cumulative; one more than `bounds` (above the last bound)."""
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError(f"histogram bounds must increase: {self.bounds}")
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)  # the first bound >= value; len: above them all
        self.counts[index] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """[(le, observations <= le)], ending with ("+Inf", count): what a histogram exports."""
        buckets, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            buckets.append((repr(float(bound)), float(running)))
        buckets.append(("+Inf", float(self.count)))
        return buckets


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
    histogram: Histogram = field(default_factory=lambda: Histogram(RTT_BUCKETS))

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
        self.histogram.observe(rtt)
        return True
