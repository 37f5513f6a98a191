"""Prometheus metrics of a node (`GET :9010/metrics`), named by Prometheus' conventions.

Module states and readiness, transitions, the modules' resources (heartbeat networks, the witness,
the replication's `rfs.uptodate` and `rfs.degraded`), heartbeats per LAN with the round trip as a
histogram, script and VIP durations, cloud VIP API calls, the build, and a mirror module's
replication (`safekit_rfs_*`: role, in sync, in flight, journal, bytes sent, lag in seconds, ack
latency as a histogram, resynchronisation progress and time left, from daemon/rfs_figures.py), and
each node's view of the split-brain witness (`safekit_witness_*`: reachable, last round trip, from
daemon/witness_probes.py). The table of every series
is in docs/metrics.md; the alerting rules and the Grafana dashboard under observability/ use only
these names (tests/unit/observability checks it).

No `_created` series: they double the series of every counter and histogram and nobody graphs
them (`disable_created_metrics` is process-wide: safekitd is the only user of prometheus_client in
its process).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import safekit
from safekit.daemon.rfs_figures import ReplicationFigures
from safekit.daemon.witness_probes import WitnessView
from safekit.membership.counters import Counters, RttStats
from safekit.membership.counters import Histogram as Buckets

disable_created_metrics()  # type: ignore[no-untyped-call]

STATES = ("STOP", "WAIT", "ALONE", "PRIM", "SECOND", "UP")

SCRIPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds: restart scripts take from milliseconds (a no-op) to minutes (a database recovery)."""
VIP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: an `arp` VIP takes milliseconds, a cloud VIP API seconds (its bound: 30 s)."""

HeartbeatSource = Callable[[], Iterable[tuple[str, str, str, Counters, RttStats | None]]]
"""Yields (module, peer, lan, counters, rtt) for every heartbeat link."""
LatenessSource = Callable[[], tuple[str, float | None, Buckets]]
"""(module, p99 of how late periodic heartbeats were sent, the histogram of every lateness)"""
ResourceSource = Callable[[], Mapping[str, str]]
"""A module's resources as `safekit state -v` shows them: name -> up, down or init."""
CloudCallSource = Callable[[], Iterable[tuple[str, str, str, int, int]]]
"""Yields (provider, action, outcome, calls, attempts) of a module's cloud VIP API calls."""
ReplicationSource = Callable[[], ReplicationFigures]
"""A mirror module's replication figures (with or without a running replication process)."""
WitnessSource = Callable[[], WitnessView]
"""What this node last heard from a mirror module's split-brain witness."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.build_info = Gauge(
            "safekit_build_info",
            "always 1; the label says which safekit this daemon runs",
            ["version"],
            registry=self.registry,
        )
        self.build_info.labels(safekit.__version__).set(1)
        self.state = Gauge(
            "safekit_module_state",
            "1 for the module's current state, 0 for the others",
            ["module", "state"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "safekit_module_ready",
            "1 when the module is Ready in its state (PRIM, ALONE, SECOND or UP (Ready))",
            ["module"],
            registry=self.registry,
        )
        self.serving = Gauge(
            "safekit_module_serving",
            "1 when this node serves the module (what the health check answers 200 for)",
            ["module"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "safekit_module_transitions",
            "state changes of a module",
            ["module", "from_state", "to_state"],
            registry=self.registry,
        )
        self.script_duration = Histogram(
            "safekit_script_duration_seconds",
            "restart scripts (start_prim, stop_prim, ...) that ran to their end, by outcome",
            ["module", "script", "outcome"],
            buckets=SCRIPT_BUCKETS,
            registry=self.registry,
        )
        self.vip_duration = Histogram(
            "safekit_vip_operation_duration_seconds",
            "virtual IP acquires and releases (a release's retries included), by outcome",
            ["module", "provider", "operation", "outcome"],
            buckets=VIP_BUCKETS,
            registry=self.registry,
        )
        self._transitions_shown: set[str] = set()
        self._sources: dict[str, HeartbeatSource] = {}
        self._lateness: dict[str, LatenessSource] = {}
        self._resources: dict[str, ResourceSource] = {}
        self._cloud_calls: dict[str, CloudCallSource] = {}
        self._replication: dict[str, ReplicationSource] = {}
        self._witness: dict[str, WitnessSource] = {}
        self.registry.register(_HeartbeatCollector(self._sources, self._lateness))
        self.registry.register(_ModuleCollector(self._resources, self._cloud_calls))
        self.registry.register(_ReplicationCollector(self._replication))
        self.registry.register(_WitnessCollector(self._witness))

    def add_heartbeat_source(self, module: str, source: HeartbeatSource, lateness: LatenessSource) -> None:
        """Register a module's heartbeat figures (a reloaded module replaces its old ones)."""
        self._sources[module] = source
        self._lateness[module] = lateness

    def add_resources(self, module: str, resources: ResourceSource) -> None:
        self._resources[module] = resources

    def add_cloud_calls(self, module: str, calls: CloudCallSource) -> None:
        self._cloud_calls[module] = calls

    def add_replication(self, module: str, figures: ReplicationSource) -> None:
        self._replication[module] = figures

    def add_witness(self, module: str, witness: WitnessSource) -> None:
        self._witness[module] = witness

    def monitoring(self, module: str, now: float | None = None) -> dict[str, Any] | None:
        """What the console's monitoring view shows of a module on this node: each heartbeat
        network's peers (up or down, round trip), and the replication's figures (None without
        <rfs> or for a farm module); None for a module this node does not run."""
        now = time.monotonic() if now is None else now
        resources = self._resources.get(module)
        if resources is None:
            return None
        shown = dict(resources())
        heartbeats = []
        source = self._sources.get(module)
        for _module, peer, lan, counters, stats in source() if source is not None else ():
            state = shown.get(f"heartbeat.{lan}", "init")
            heartbeats.append(
                {
                    "lan": lan,
                    "peer": peer,
                    "up": None if state not in ("up", "down") else state == "up",
                    "received": counters.received,
                    "rtt": None if stats is None or not stats.samples else round(stats.smoothed, 6),
                    "rtt_last": None if stats is None or not stats.samples else round(stats.last, 6),
                }
            )
        figures = self._replication.get(module)
        witness = self._witness.get(module)
        return {
            "heartbeats": heartbeats,
            "witness": None if witness is None else witness().view(now),
            "replication": None if figures is None else figures().view(now),
        }

    def remove_module(self, module: str) -> None:
        """An uninstalled module: its series disappear (transition counts stay, they are history)."""
        self._sources.pop(module, None)
        self._lateness.pop(module, None)
        self._resources.pop(module, None)
        self._cloud_calls.pop(module, None)
        self._replication.pop(module, None)
        self._witness.pop(module, None)
        for name in STATES:
            self.state.remove(module, name)
        self.ready.remove(module)
        self.serving.remove(module)

    def set_state(self, module: str, state: str, ready: bool, serving: bool) -> None:
        """`ready`: the second word of the state is Ready; `serving`: the health check's 200."""
        if module not in self._transitions_shown:
            # Every transition exported at 0 from the start: `increase()` over a series that is
            # born at 1 is 0 in Prometheus, and the first failover of a daemon would go unseen.
            self._transitions_shown.add(module)
            for before in STATES:
                for after in STATES:
                    if before != after:
                        self.transitions.labels(module, before, after)
        for name in STATES:
            self.state.labels(module, name).set(1 if name == state else 0)
        self.ready.labels(module).set(1 if ready else 0)
        self.serving.labels(module).set(1 if serving else 0)


def _histogram(family: HistogramMetricFamily, labels: list[str], buckets: Buckets) -> None:
    family.add_metric(labels, buckets.cumulative(), buckets.total)


class _HeartbeatCollector(Collector):
    def __init__(self, sources: dict[str, HeartbeatSource], lateness: dict[str, LatenessSource]) -> None:
        self._sources = sources
        self._lateness = lateness

    def collect(self) -> Iterable[Metric]:
        labels = ["module", "peer", "lan"]
        received = CounterMetricFamily(
            "safekit_heartbeats_received", "authentic heartbeats received", labels=labels
        )
        dropped = CounterMetricFamily(
            "safekit_heartbeats_dropped", "heartbeats dropped, by reason", labels=[*labels, "reason"]
        )
        rtt = HistogramMetricFamily(
            "safekit_heartbeat_rtt_seconds", "heartbeat round trips (echoed timestamps)", labels=labels
        )
        for source in list(self._sources.values()):
            for module, peer, lan, counters, stats in source():
                key = [module, peer, lan]
                received.add_metric(key, counters.received)
                for reason in ("bad_signature", "replay", "malformed", "misdirected", "stale"):
                    dropped.add_metric([*key, reason], getattr(counters, f"dropped_{reason}"))
                if stats is not None:
                    _histogram(rtt, key, stats.histogram)
        late = HistogramMetricFamily(
            "safekit_heartbeat_send_lateness_seconds",
            "how late periodic heartbeats left after their due time (timing jitter)",
            labels=["module"],
        )
        late_p99 = GaugeMetricFamily(
            "safekit_heartbeat_send_lateness_p99_seconds",
            "99th percentile of the last 3000 send latenesses (kept for the benchmarks, ADR 0011)",
            labels=["module"],
        )
        for lateness in list(self._lateness.values()):
            module, p99, buckets = lateness()
            _histogram(late, [module], buckets)
            if p99 is not None:
                late_p99.add_metric([module], p99)
        yield received
        yield dropped
        yield rtt
        yield late
        yield late_p99


class _ModuleCollector(Collector):
    def __init__(self, resources: dict[str, ResourceSource], cloud_calls: dict[str, CloudCallSource]) -> None:
        self._resources = resources
        self._cloud_calls = cloud_calls

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "safekit_resource_up",
            "1 up, 0 down for each resource of `safekit state -v` (heartbeat.LAN, "
            "splitbrain.witness, rfs.uptodate, rfs.degraded, checkers); absent while init",
            labels=["module", "resource"],
        )
        for module, source in list(self._resources.items()):
            for resource, value in sorted(source().items()):
                if value in ("up", "down"):
                    up.add_metric([module, resource], 1 if value == "up" else 0)
        calls = CounterMetricFamily(
            "safekit_vip_cloud_api_calls",
            "cloud VIP API calls (each with its retries), by outcome",
            labels=["module", "provider", "action", "outcome"],
        )
        attempts = CounterMetricFamily(
            "safekit_vip_cloud_api_attempts",
            "cloud VIP API requests sent, retries included",
            labels=["module", "provider", "action", "outcome"],
        )
        for module, calls_of in list(self._cloud_calls.items()):
            for provider, action, outcome, n, tries in calls_of():
                calls.add_metric([module, provider, action, outcome], n)
                attempts.add_metric([module, provider, action, outcome], tries)
        yield up
        yield calls
        yield attempts


RFS_FAMILIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("safekit_rfs_role", "gauge", "1 for the role of the running replication process", ("role",)),
    (
        "safekit_rfs_in_sync",
        "gauge",
        "1 when the secondary's copy follows the primary (primary: its link; secondary: its copy)",
        (),
    ),
    (
        "safekit_rfs_link_state",
        "gauge",
        "primary: 1 for the link's state (degrading, degraded, resync, in_sync)",
        ("state",),
    ),
    ("safekit_rfs_in_flight_operations", "gauge", "operations sent, not yet acknowledged", ()),
    ("safekit_rfs_in_flight_bytes", "gauge", "bytes of data sent, not yet acknowledged", ()),
    ("safekit_rfs_journal_operations", "gauge", "journal entries the next resynchronisation sends", ()),
    ("safekit_rfs_journal_bytes", "gauge", "journal bytes the next resynchronisation sends", ()),
    ("safekit_rfs_sent_bytes", "counter", "bytes sent to the secondary (frames)", ()),
    ("safekit_rfs_streamed_operations", "counter", "live operations streamed to the secondary", ()),
    ("safekit_rfs_streamed_bytes", "counter", "bytes of data streamed to the secondary", ()),
    ("safekit_rfs_resyncs", "counter", "resynchronisations of the secondary", ()),
    ("safekit_rfs_link_losses", "counter", "replication links lost", ()),
    (
        "safekit_rfs_lag_seconds",
        "gauge",
        "primary: age of the oldest operation the secondary's copy lacks (0: it has everything; "
        "absent while not known)",
        (),
    ),
    (
        "safekit_rfs_ack_latency_seconds",
        "histogram",
        "primary: time from a write's submit to the secondary's acknowledgement (applied), since "
        "the replication process started",
        (),
    ),
    ("safekit_rfs_resync_active", "gauge", "1 while a resynchronisation runs, by mode", ("mode",)),
    ("safekit_rfs_resync_progress_ratio", "gauge", "how far the running resynchronisation is (0 to 1)", ()),
    ("safekit_rfs_resync_done_objects", "gauge", "primary: objects (files, entries) resynchronised", ()),
    ("safekit_rfs_resync_objects", "gauge", "primary: objects the running resynchronisation checks", ()),
    ("safekit_rfs_resync_sent_bytes", "gauge", "primary: data bytes the running resynchronisation sent", ()),
    (
        "safekit_rfs_resync_remaining_seconds",
        "gauge",
        "estimated time left in the running resynchronisation, at its speed of the last 20 s",
        (),
    ),
)
"""(name, type, help, labels besides `module`) of each `safekit_rfs_*` family."""
RFS_COUNTERS = {
    "in_flight_ops": "safekit_rfs_in_flight_operations",
    "in_flight_bytes": "safekit_rfs_in_flight_bytes",
    "journal_ops": "safekit_rfs_journal_operations",
    "journal_bytes": "safekit_rfs_journal_bytes",
    "sent_bytes": "safekit_rfs_sent_bytes",
    "streamed_ops": "safekit_rfs_streamed_operations",
    "streamed_bytes": "safekit_rfs_streamed_bytes",
    "resyncs": "safekit_rfs_resyncs",
    "losses": "safekit_rfs_link_losses",
}
"""ReplicationFigures.counters -> the family that exports it."""


def rfs_samples(figures: ReplicationFigures, now: float) -> Iterable[tuple[str, tuple[str, ...], float]]:
    """(family, extra label values, value) of one module's replication; nothing while no
    replication process runs, and only what the process reports (a secondary reports no
    counters)."""
    if figures.role is None:
        return
    yield "safekit_rfs_role", (figures.role,), 1
    if figures.in_sync is not None:
        yield "safekit_rfs_in_sync", (), 1 if figures.in_sync else 0
    if figures.role == "primary" and figures.link:
        for state in ("degrading", "degraded", "resync", "in_sync"):
            yield "safekit_rfs_link_state", (state,), 1 if state == figures.link else 0
    for key, family in RFS_COUNTERS.items():
        if key in figures.counters:
            yield family, (), figures.counters[key]
    if figures.lag_seconds is not None:
        yield "safekit_rfs_lag_seconds", (), figures.lag_seconds
    if not figures.resync_mode:
        return
    yield "safekit_rfs_resync_active", (figures.resync_mode,), 1
    optional = (
        (
            "safekit_rfs_resync_progress_ratio",
            None if figures.resync_percent is None else figures.resync_percent / 100,
        ),
        (
            "safekit_rfs_resync_done_objects",
            figures.resync_done if figures.resync_total is not None else None,
        ),
        ("safekit_rfs_resync_objects", figures.resync_total if figures.resync_done is not None else None),
        ("safekit_rfs_resync_sent_bytes", figures.resync_bytes),
        ("safekit_rfs_resync_remaining_seconds", figures.resync_remaining(now)),
    )
    for family, value in optional:
        if value is not None:
            yield family, (), value


class _ReplicationCollector(Collector):
    """`safekit_rfs_*`: a mirror module's replication as daemon/rfs_figures.py shows it."""

    def __init__(self, sources: dict[str, ReplicationSource]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        now = time.monotonic()
        families: dict[str, Metric] = {}
        scalar: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        latency: HistogramMetricFamily | None = None
        for name, kind, text, labels in RFS_FAMILIES:
            if kind == "histogram":
                latency = HistogramMetricFamily(name, text, labels=["module"])
                families[name] = latency
            else:
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                families[name] = scalar[name] = family(name, text, labels=["module", *labels])
        assert latency is not None
        for module, source in list(self._sources.items()):
            figures = source()
            for family_name, extra, value in rfs_samples(figures, now):
                scalar[family_name].add_metric([module, *extra], value)
            if figures.role is not None and figures.ack_latency is not None:
                histogram = figures.ack_latency
                buckets = [
                    ("+Inf" if math.isinf(le) else repr(le), float(n)) for le, n in histogram.cumulative()
                ]
                latency.add_metric([module], buckets, histogram.total)
        yield from families.values()


class _WitnessCollector(Collector):
    """`safekit_witness_*`: each mirror module's split-brain witness as this node last heard it."""

    def __init__(self, sources: dict[str, WitnessSource]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        labels = ["module", "witness"]
        reachable = GaugeMetricFamily(
            "safekit_witness_reachable",
            "1 when the split-brain witness answered this node's last probe, 0 when not; absent "
            "before the first probe",
            labels=labels,
        )
        rtt = GaugeMetricFamily(
            "safekit_witness_rtt_seconds",
            "round trip of the witness's last answer to this node (ping or arbitrator request)",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "safekit_witness_probe_failures",
            "probes of the witness that got no answer (time-out or error)",
            labels=labels,
        )
        for module, source in list(self._sources.items()):
            for target in source().targets.values():
                key = [module, target.address]
                if target.reachable is not None:
                    reachable.add_metric(key, 1 if target.reachable else 0)
                if target.rtt is not None:
                    rtt.add_metric(key, target.rtt)
                failures.add_metric(key, target.failures)
        yield reachable
        yield rtt
        yield failures
