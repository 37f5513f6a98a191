"""Each node's view of the split-brain witness (daemon/witness_probes.py's WitnessView): what the
console, `safekit state -v --json` and the `safekit_witness_*` series show."""

from __future__ import annotations

from prometheus_client import generate_latest

from safekit.api.history import sample_of
from safekit.daemon.metrics import Metrics
from safekit.daemon.witness_probes import WitnessView
from safekit.mirror import WitnessMode


def test_a_witness_is_not_known_before_its_first_probe() -> None:
    seen = WitnessView.of(WitnessMode.PING, ["198.18.0.9"])
    shown = seen.view(now=3.0)
    assert shown["reachable"] is None
    assert shown["rtt"] is None
    assert shown["targets"][0]["reachable"] is None
    metrics = Metrics()
    metrics.add_witness("AM", lambda: seen)
    text = generate_latest(metrics.registry).decode()
    assert "safekit_witness_reachable{" not in text  # absent, not a made-up 0
    assert 'safekit_witness_probe_failures_total{module="AM",witness="198.18.0.9"} 0.0' in text


def test_reachability_flips_with_the_answers_and_keeps_the_last_error() -> None:
    seen = WitnessView.of(WitnessMode.PING, ["198.18.0.9"])
    seen.answered("198.18.0.9", 0.0012, now=10.0)
    seen.failed("198.18.0.9", "no answer to a ping within 0.25 s", now=11.0)
    shown = seen.view(now=12.0)
    assert shown["reachable"] is False
    assert shown["rtt"] is None  # no round trip shown for a witness that does not answer now
    target = shown["targets"][0]
    assert target["rtt"] == 0.0012  # the last answer's, with its age
    assert target["answered_age"] == 2.0
    assert target["last_error"] == "no answer to a ping within 0.25 s"
    assert target["failed_age"] == 1.0
    assert target["failures"] == 1
    metrics = Metrics()
    metrics.add_witness("AM", lambda: seen)
    text = generate_latest(metrics.registry).decode()
    assert 'safekit_witness_reachable{module="AM",witness="198.18.0.9"} 0.0' in text
    assert 'safekit_witness_probe_failures_total{module="AM",witness="198.18.0.9"} 1.0' in text
    seen.answered("198.18.0.9", 0.0009, now=13.0)
    assert seen.view(13.0)["reachable"] is True
    text = generate_latest(metrics.registry).decode()
    assert 'safekit_witness_reachable{module="AM",witness="198.18.0.9"} 1.0' in text
    assert 'safekit_witness_rtt_seconds{module="AM",witness="198.18.0.9"} 0.0009' in text
    metrics.remove_module("AM")
    assert "safekit_witness_reachable{" not in generate_latest(metrics.registry).decode()


def test_any_of_several_ping_witnesses_is_enough() -> None:
    seen = WitnessView.of(WitnessMode.PING, ["198.18.0.9", "198.18.0.10"])
    seen.failed("198.18.0.9", "no answer", now=1.0)
    seen.answered("198.18.0.10", 0.003, now=1.0)
    shown = seen.view(1.0)
    assert shown["reachable"] is True
    assert shown["rtt"] == 0.003
    assert [t["reachable"] for t in shown["targets"]] == [False, True]


def test_the_history_keeps_the_witness_reachability_and_round_trip() -> None:
    seen = WitnessView.of(WitnessMode.ARBITRATOR, ["198.18.0.9"])
    seen.answered("198.18.0.9", 0.002, now=1.0)
    module = {"name": "AM", "state": "PRIM", "readiness": "Ready"}
    values = sample_of(module, {"heartbeats": [], "witness": seen.view(1.0), "replication": None})
    assert values["witness_up"] == 1.0
    assert values["witness_rtt"] == 0.002
    seen.failed("198.18.0.9", "lease request failed: [Errno 101] Network is unreachable", now=2.0)
    values = sample_of(module, {"heartbeats": [], "witness": seen.view(2.0), "replication": None})
    assert values["witness_up"] == 0.0
    assert values["witness_rtt"] is None
