"""Prometheus metrics of a node: module states, transitions, heartbeats per LAN."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from safekit.membership.counters import Counters, RttStats

STATES = ("STOP", "WAIT", "ALONE", "PRIM", "SECOND", "UP")

HeartbeatSource = Callable[[], Iterable[tuple[str, str, str, Counters, RttStats | None]]]
"""Yields (module, peer, lan, counters, rtt) for every heartbeat link."""
LatenessSource = Callable[[], tuple[str, float | None]]
"""(module, p99 of how late periodic heartbeats were sent)"""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.state = Gauge(
            "safekit_module_state",
            "1 for the module's current state, 0 for the others",
            ["module", "state"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "safekit_module_ready",
            "1 when the module is Ready in its state",
            ["module"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "safekit_module_transitions",
            "state changes of a module",
            ["module", "from_state", "to_state"],
            registry=self.registry,
        )
        self._sources: dict[str, HeartbeatSource] = {}
        self._lateness: dict[str, LatenessSource] = {}
        self.registry.register(_HeartbeatCollector(self._sources, self._lateness))

    def add_heartbeat_source(self, module: str, source: HeartbeatSource, lateness: LatenessSource) -> None:
        """Register a module's heartbeat figures (a reloaded module replaces its old ones)."""
        self._sources[module] = source
        self._lateness[module] = lateness

    def remove_module(self, module: str) -> None:
        """An uninstalled module: its series disappear (transition counts stay, they are history)."""
        self._sources.pop(module, None)
        self._lateness.pop(module, None)
        for name in STATES:
            self.state.remove(module, name)
        self.ready.remove(module)

    def set_state(self, module: str, state: str, ready: bool) -> None:
        for name in STATES:
            self.state.labels(module, name).set(1 if name == state else 0)
        self.ready.labels(module).set(1 if ready else 0)


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
        rtt = GaugeMetricFamily(
            "safekit_heartbeat_rtt_seconds", "smoothed heartbeat round trip", labels=labels
        )
        for source in list(self._sources.values()):
            for module, peer, lan, counters, stats in source():
                key = [module, peer, lan]
                received.add_metric(key, counters.received)
                for reason in ("bad_signature", "replay", "malformed", "misdirected"):
                    dropped.add_metric([*key, reason], getattr(counters, f"dropped_{reason}"))
                if stats is not None and stats.samples:
                    rtt.add_metric(key, stats.smoothed)
        late = GaugeMetricFamily(
            "safekit_heartbeat_send_lateness_p99_seconds",
            "99th percentile of how late periodic heartbeats left (timing jitter)",
            labels=["module"],
        )
        for lateness in list(self._lateness.values()):
            module, p99 = lateness()
            if p99 is not None:
                late.add_metric([module], p99)
        yield received
        yield dropped
        yield rtt
        yield late
