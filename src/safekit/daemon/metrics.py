"""Prometheus metrics of a node (`GET :9010/metrics`), named by Prometheus' conventions.

Module states and readiness, transitions, the modules' resources (heartbeat networks, the witness,
the replication's `rfs.uptodate` and `rfs.degraded`), heartbeats per LAN with the round trip as a
histogram, script and VIP durations, cloud VIP API calls and the build. The table of every series
is in docs/metrics.md; the alerting rules and the Grafana dashboard under observability/ use only
these names (tests/unit/observability checks it).

No `_created` series: they double the series of every counter and histogram and nobody graphs
them (`disable_created_metrics` is process-wide: safekitd is the only user of prometheus_client in
its process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import safekit
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
        self.registry.register(_HeartbeatCollector(self._sources, self._lateness))
        self.registry.register(_ModuleCollector(self._resources, self._cloud_calls))

    def add_heartbeat_source(self, module: str, source: HeartbeatSource, lateness: LatenessSource) -> None:
        """Register a module's heartbeat figures (a reloaded module replaces its old ones)."""
        self._sources[module] = source
        self._lateness[module] = lateness

    def add_resources(self, module: str, resources: ResourceSource) -> None:
        self._resources[module] = resources

    def add_cloud_calls(self, module: str, calls: CloudCallSource) -> None:
        self._cloud_calls[module] = calls

    def remove_module(self, module: str) -> None:
        """An uninstalled module: its series disappear (transition counts stay, they are history)."""
        self._sources.pop(module, None)
        self._lateness.pop(module, None)
        self._resources.pop(module, None)
        self._cloud_calls.pop(module, None)
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
                for reason in ("bad_signature", "replay", "malformed", "misdirected"):
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
