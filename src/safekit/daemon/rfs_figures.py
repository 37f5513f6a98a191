"""What a mirror module's replication looks like from safekitd: the figures behind the
`safekit_rfs_*` metrics, the console's monitoring view and the history.

Fed by the replication process's events (`resyncing`, `progress`, `in_sync`, `degraded`,
`disconnected`) and, on the primary, by the `status` answers to a `QueryStatus` safekitd sends every
`POLL_INTERVAL` seconds (channel.StatusReport, docs/replication.md). Rates (throughput) and the
resynchronisation's time left are computed here from successive reports. Pure: no I/O, no clock of
its own (every call says when it is).

What each replication process reports in `status` (the `stats` counters, flattened on the wire):
the native primary reports `in_flight_ops`, `in_flight_bytes`, `bytes_sent`, `streamed`,
`streamed_bytes`, `resyncs`, `losses`, `journal_bytes`, `resync_mode`, `resync_done`,
`resync_total`, `resync_data_bytes`, and the time figures of native/primary/pstatus.c:
`lag_seconds` (the age of the oldest operation the secondary's copy lacks; null while not known)
and the ack latency as a histogram since the process started (`ack_latency_le` bounds,
`ack_latency_buckets` counts per bucket with one above the last bound, `ack_latency_count`,
`ack_latency_sum`), plus `state`, `seq` and `journal`. Nobody reports the total bytes a
resynchronisation will send: its time left is estimated from the objects done and to do, its
rate from the data bytes sent.

Why a histogram rather than an EWMA and a max (docs/adr/0028): the process only counts (a constant
cost per acknowledged operation, no window, no sorting, no reset when asked, whoever asks), the
exposition gets a real Prometheus histogram (`histogram_quantile` over any range, as the heartbeat
round trip), and the percentiles of the last RATE_WINDOW seconds come here from the difference of
two reports. An EWMA hides the tail an operator looks for, and a max since the last query depends
on who queried last.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from safekit.rfs import channel

POLL_INTERVAL = 2.0
"""Seconds between two `QueryStatus` to a primary replication process (bounded: 0.5 a second)."""
RESYNC_POLL_INTERVAL = 0.5
"""The same while a resynchronisation runs (2 a second: it lasts seconds to hours and an operator
watches its progress; the first answer is asked for as soon as it begins)."""
RATE_WINDOW = 20.0
"""Seconds over which throughput and resynchronisation speed are measured."""

LINK_STATES = ("degrading", "degraded", "resync", "in_sync")


@dataclass(frozen=True)
class LatencyHistogram:
    """A histogram as the process reports it: upper bounds, a count per bucket (one more than the
    bounds: above the last), the number and the sum of the observations."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    total: float

    @classmethod
    def from_stats(cls, stats: dict[str, Any]) -> LatencyHistogram | None:
        """The `ack_latency_*` fields of a status, None when absent or malformed."""
        bounds, counts = stats.get("ack_latency_le"), stats.get("ack_latency_buckets")
        count, total = _int(stats, "ack_latency_count"), stats.get("ack_latency_sum")
        if not isinstance(bounds, list) or not isinstance(counts, list) or count is None:
            return None
        if not all(_number(b) for b in bounds) or not all(_count(c) for c in counts) or not _number(total):
            return None
        if len(counts) != len(bounds) + 1 or list(bounds) != sorted(set(bounds)) or sum(counts) != count:
            return None
        return cls(tuple(float(b) for b in bounds), tuple(counts), count, float(typing.cast("float", total)))

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) pairs of a Prometheus histogram, infinity last."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def since(self, earlier: LatencyHistogram) -> LatencyHistogram | None:
        """The observations made after `earlier` (same process), None if not comparable."""
        if earlier.bounds != self.bounds or earlier.count > self.count:
            return None
        counts = tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        if any(c < 0 for c in counts):
            return None
        return LatencyHistogram(self.bounds, counts, self.count - earlier.count, self.total - earlier.total)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated linearly inside its bucket (Prometheus' histogram_quantile:
        the first bucket starts at 0; a quantile above the last bound is that bound). None
        without observations."""
        if self.count <= 0 or not self.bounds:
            return None
        rank = q * self.count
        running = 0
        for i, n in enumerate(self.counts):
            if n and running + n >= rank:
                if i == len(self.bounds):
                    return self.bounds[-1]
                low = 0.0 if i == 0 else self.bounds[i - 1]
                return low + (self.bounds[i] - low) * max(0.0, rank - running) / n
            running += n
        return self.bounds[-1]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int(stats: dict[str, Any], name: str) -> int | None:
    value = stats.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class ReplicationFigures:
    role: str | None = None
    """"primary" or "secondary" while a replication process runs, else None."""
    link: str = ""
    """The primary's link state (degrading, degraded, resync, in_sync); "" when not known."""
    in_sync: bool | None = None
    """Primary: its secondary follows (link in_sync); secondary: its copy follows the primary."""
    resync_mode: str = ""
    """journal, checksum or full while a resynchronisation runs, else ""."""
    resync_done: int | None = None
    resync_total: int | None = None
    resync_bytes: int | None = None
    resync_percent: float | None = None
    resync_started: float | None = None
    last_resync: dict[str, Any] | None = None
    counters: dict[str, int] = field(default_factory=dict)
    """The last report's counters: in_flight_ops, in_flight_bytes, journal_ops, journal_bytes,
    sent_bytes, streamed_ops, streamed_bytes, resyncs, losses (those the process reports)."""
    status_at: float | None = None
    lag_seconds: float | None = None
    """Primary: age of the oldest operation the secondary's copy lacks (None: not reported or not
    known)."""
    ack_latency: LatencyHistogram | None = None
    """Primary: every ack latency since the process started (None: not reported)."""
    _sent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    _progress: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=64))
    _resync_sent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    _latencies: deque[tuple[float, LatencyHistogram]] = field(default_factory=lambda: deque(maxlen=64))

    # ------------------------------------------------------------------ inputs
    def started(self, role: str) -> None:
        """A replication process of `role` starts: what the previous one said is forgotten."""
        self._reset(role)

    def stopped(self) -> None:
        self._reset(None)

    def _reset(self, role: str | None) -> None:
        fresh = ReplicationFigures(role=role)
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def on_event(self, event: channel.Event, now: float) -> None:
        match event:
            case channel.Resyncing(mode=mode):
                self._resync_began(mode or "resync", now)
                self.in_sync = False
            case channel.Progress(percent=percent):
                if not self.resync_mode:
                    self._resync_began("resync", now)
                self.resync_percent = float(max(0, min(100, percent)))
                self._progress.append((now, self.resync_percent / 100))
            case channel.InSync(mode=mode, seconds=seconds, bytes=sent):
                if self.role == "primary":
                    self.link = "in_sync"
                    self.last_resync = {"mode": mode, "seconds": seconds, "bytes": sent}
                self.in_sync = True
                self._resync_ended()
            case channel.Ready(in_sync=in_sync):
                self.in_sync = in_sync
            case channel.Degraded():
                self.link = "degraded"
                self.in_sync = False
                self._resync_ended()
            case channel.Disconnected() | channel.ApplyError():
                if self.role == "primary":
                    self.link = "degraded"
                self.in_sync = False
                self._resync_ended()
            case channel.StatusReport():
                self.on_status(event, now)
            case _:
                pass

    def on_status(self, report: channel.StatusReport, now: float) -> None:
        """The primary's answer to `QueryStatus`."""
        stats = report.stats
        self.status_at = now
        if report.state in LINK_STATES:
            self.link = report.state
            # The link's `in_sync` comes before the secondary has applied the resync's data (once
            # everything is queued): only the `in_sync` event, sent once it is acknowledged, says
            # the copy follows. A status says when it does not.
            if report.state != "in_sync":
                self.in_sync = False
            elif self.in_sync is None:
                self.in_sync = True
        counters: dict[str, int] = {"journal_ops": report.journal}
        for ours, theirs in (
            ("in_flight_ops", "in_flight_ops"),
            ("in_flight_bytes", "in_flight_bytes"),
            ("journal_bytes", "journal_bytes"),
            ("sent_bytes", "bytes_sent"),
            ("streamed_ops", "streamed"),
            ("streamed_bytes", "streamed_bytes"),
            ("resyncs", "resyncs"),
            ("losses", "losses"),
        ):
            value = _int(stats, theirs)
            if value is not None:
                counters[ours] = value
        self.counters = counters
        self._resync_status(report, now)  # first: a resync that begins here restarts the throughput
        sent = counters.get("sent_bytes", counters.get("streamed_bytes"))
        if sent is not None:
            if self._sent and sent < self._sent[-1][1]:
                self._sent.clear()  # a new process: its counters start again
            self._sent.append((now, sent))
        lag = stats.get("lag_seconds")
        self.lag_seconds = max(0.0, float(typing.cast("float", lag))) if _number(lag) else None
        latency = LatencyHistogram.from_stats(stats)
        if latency is not None and self._latencies and latency.since(self._latencies[-1][1]) is None:
            self._latencies.clear()  # a new process (or other bounds): its counts start again
        self.ack_latency = latency
        if latency is not None:
            self._latencies.append((now, latency))

    def _resync_status(self, report: channel.StatusReport, now: float) -> None:
        stats = report.stats
        mode = stats.get("resync_mode")
        done, total = _int(stats, "resync_done"), _int(stats, "resync_total")
        # the native primary names the session's resync mode for the whole session: only the link's
        # state says whether the resynchronisation still runs
        if report.state == "resync" or (report.state not in LINK_STATES and isinstance(mode, str) and mode):
            if not self.resync_mode or (isinstance(mode, str) and mode and mode != self.resync_mode):
                self._resync_began(mode if isinstance(mode, str) and mode else "resync", now)
            if done is not None and total:
                self.resync_done, self.resync_total = done, total
                self.resync_percent = round(100.0 * min(done, total) / total, 1)
                self._progress.append((now, min(done, total) / total))
            self.resync_bytes = _int(stats, "resync_data_bytes")
            if self.resync_bytes is not None:
                self._resync_sent.append((now, self.resync_bytes))
        elif report.state in LINK_STATES:
            self._resync_ended()

    def _resync_began(self, mode: str, now: float) -> None:
        self.resync_mode = mode
        self.resync_started = now
        self.resync_done = self.resync_total = self.resync_bytes = None
        self.resync_percent = None  # until the process says how far
        self._progress.clear()
        self._resync_sent.clear()
        # The counters reported before the resynchronisation (an idle link, often for the whole
        # window) would average its speed away: the throughput is measured from its first report.
        self._sent.clear()

    def _resync_ended(self) -> None:
        self.resync_mode = ""
        self.resync_started = None
        self.resync_done = self.resync_total = self.resync_bytes = None
        self.resync_percent = None
        self._progress.clear()
        self._resync_sent.clear()

    # ------------------------------------------------------------------ derived
    def poll_interval(self) -> float:
        """Seconds until safekitd asks the primary process for its status again."""
        return RESYNC_POLL_INTERVAL if self.resync_mode else POLL_INTERVAL

    def throughput(self, now: float) -> float | None:
        """Bytes a second sent to the secondary over the last RATE_WINDOW seconds (primary)."""
        return _rate(self._sent, now)

    def resync_rate(self, now: float) -> float | None:
        """Data bytes a second the running resynchronisation sent over the last RATE_WINDOW
        seconds (native primary), None when unknown."""
        return _rate(self._resync_sent, now) if self.resync_mode else None

    def recent_latency(self, now: float) -> LatencyHistogram | None:
        """The ack latencies observed over the last RATE_WINDOW seconds (between the oldest report
        within it and the newest), None without two reports in it."""
        recent = [h for t, h in self._latencies if now - t <= RATE_WINDOW]
        if len(recent) < 2:
            return None
        return recent[-1].since(recent[0])

    def latency_view(self, now: float) -> dict[str, Any] | None:
        """p50, p99 and mean ack latency of the last RATE_WINDOW seconds (None each when nothing
        was acknowledged then), with the counts; None when the process does not report it."""
        if self.ack_latency is None:
            return None
        recent = self.recent_latency(now)
        n = 0 if recent is None else recent.count
        p50 = None if recent is None else recent.quantile(0.5)
        p99 = None if recent is None else recent.quantile(0.99)
        return {
            "window": RATE_WINDOW,
            "count": n,
            "p50": None if p50 is None else round(p50, 6),
            "p99": None if p99 is None else round(p99, 6),
            "mean": None if recent is None or n == 0 else round(recent.total / n, 6),
            "total": self.ack_latency.count,
        }

    def resync_remaining(self, now: float) -> float | None:
        """Seconds left in the resynchronisation at its recent speed, None when unknown (no
        progress yet, or none within RATE_WINDOW: a stall has no end to estimate)."""
        if not self.resync_mode or self.resync_percent is None:
            return None
        speed = _rate(self._progress, now)
        if not speed or speed <= 0:
            return None
        return max(0.0, (1.0 - self.resync_percent / 100) / speed)

    def view(self, now: float) -> dict[str, Any]:
        """JSON-able figures (the API's monitoring view and the history's samples)."""
        remaining = self.resync_remaining(now)
        throughput = self.throughput(now)
        rate = self.resync_rate(now)
        return {
            "role": self.role,
            "link": self.link or None,
            "in_sync": self.in_sync,
            "resync": None
            if not self.resync_mode
            else {
                "mode": self.resync_mode,
                "percent": self.resync_percent,
                "done": self.resync_done,
                "total": self.resync_total,
                "bytes": self.resync_bytes,
                "elapsed": None if self.resync_started is None else round(now - self.resync_started, 1),
                "remaining": None if remaining is None else round(remaining, 1),
                "rate": None if rate is None else round(rate, 1),
            },
            "last_resync": self.last_resync,
            "throughput": None if throughput is None else round(throughput, 1),
            "ack_latency": self.latency_view(now),
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "status_age": None if self.status_at is None else round(now - self.status_at, 1),
            **{name: self.counters.get(name) for name in COUNTERS},
        }


COUNTERS = (
    "in_flight_ops",
    "in_flight_bytes",
    "journal_ops",
    "journal_bytes",
    "sent_bytes",
    "streamed_ops",
    "streamed_bytes",
    "resyncs",
    "losses",
)


def _rate(points: deque[tuple[float, float]] | deque[tuple[float, int]], now: float) -> float | None:
    """Increase a second between the oldest point within RATE_WINDOW and the newest one."""
    recent = [(t, v) for t, v in points if now - t <= RATE_WINDOW]
    if len(recent) < 2:
        return None
    (t0, v0), (t1, v1) = recent[0], recent[-1]
    if t1 <= t0:
        return None
    return max(0.0, (v1 - v0) / (t1 - t0))
