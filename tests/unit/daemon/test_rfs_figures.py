"""The replication figures safekitd keeps from the replication process's events and status answers
(daemon/rfs_figures.py), their `safekit_rfs_*` series and the monitoring view of Metrics."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from safekit.daemon.metrics import RFS_FAMILIES, Metrics, rfs_samples
from safekit.daemon.rfs_figures import (
    POLL_INTERVAL,
    RATE_WINDOW,
    RESYNC_POLL_INTERVAL,
    LatencyHistogram,
    ReplicationFigures,
)
from safekit.daemon.witness_probes import WitnessView
from safekit.membership.counters import Counters, RttStats
from safekit.mirror import WitnessMode
from safekit.rfs import channel

BOUNDS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
"""native/primary/pstatus.c's skp_lat_bounds, as `%g` writes them."""


def latency_fields(buckets: dict[int, int] | None = None, total: float = 0.0) -> dict[str, object]:
    """The ack latency fields of native/primary/pstatus.c: `buckets` maps a bucket index to its count."""
    counts = [0] * (len(BOUNDS) + 1)
    for i, n in (buckets or {}).items():
        counts[i] = n
    return {
        "ack_latency_count": sum(counts),
        "ack_latency_sum": total,
        "ack_latency_le": BOUNDS,
        "ack_latency_buckets": counts,
    }


def native_status(
    state: str,
    sent: int,
    done: int = 0,
    total: int = 0,
    *,
    lag: float | None = 0.0,
    latency: dict[str, object] | None = None,
) -> channel.StatusReport:
    """What the native primary answers to `status` (native/primary/link.c, skp_link_emit_status,
    and pstatus.c's time figures)."""
    stats: dict[str, object] = {
        "resyncs": 1,
        "sessions": 1,
        "losses": 0,
        "streamed": 40,
        "streamed_bytes": 4096,
        "in_flight_ops": 3,
        "in_flight_bytes": 12288,
        "acked_applied": 37,
        "acked_durable": 37,
        "frames_sent": 100,
        "bytes_sent": sent,
        "resync_needed": False,
        "fenced": False,
        "journal_trusted": True,
        "journal_bytes": 65536,
        "resync_mode": "checksum" if state == "resync" else "",
        "resync_done": done,
        "resync_total": total,
        "resync_data_bytes": done * 1000,
        "lag_seconds": lag,
        **(latency if latency is not None else latency_fields()),
    }
    return channel.StatusReport(state, 41, 7, stats)


def test_a_native_primary_in_sync_shows_lag_and_throughput() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_event(native_status("in_sync", sent=1_000_000), now=100.0)
    assert f.throughput(100.0) is None  # one report: no rate yet
    f.on_event(native_status("in_sync", sent=3_000_000), now=102.0)
    f.on_event(native_status("in_sync", sent=5_000_000), now=104.0)
    view = f.view(104.0)
    assert view["role"] == "primary"
    assert view["in_sync"] is True
    assert view["link"] == "in_sync"
    assert view["throughput"] == 1_000_000.0  # 4 MB in 4 s
    assert view["in_flight_ops"] == 3
    assert view["in_flight_bytes"] == 12288
    assert view["journal_ops"] == 7
    assert view["journal_bytes"] == 65536
    assert view["resync"] is None
    assert view["lag_seconds"] == 0.0
    assert view["ack_latency"] == {  # reported, nothing acknowledged in the window
        "window": RATE_WINDOW,
        "count": 0,
        "p50": None,
        "p99": None,
        "mean": None,
        "total": 0,
    }


def test_throughput_forgets_reports_older_than_its_window() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("in_sync", sent=0), now=0.0)
    f.on_status(native_status("in_sync", sent=10_000), now=2.0)
    assert f.throughput(2.0) == 5000.0
    assert f.throughput(2.0 + RATE_WINDOW + 1) is None  # nothing recent: unknown, not a stale rate


def test_a_new_process_starts_its_counters_again() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("in_sync", sent=9_000_000), now=0.0)
    f.on_status(native_status("in_sync", sent=100), now=2.0)  # restarted: counters from 0
    f.on_status(native_status("in_sync", sent=2_100), now=4.0)
    assert f.throughput(4.0) == 1000.0
    f.stopped()
    assert f.view(5.0)["role"] is None
    assert list(rfs_samples(f, 5.0)) == []


def test_a_resync_shows_progress_and_time_left_then_ends() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_event(channel.Resyncing("checksum"), now=0.0)
    f.on_event(native_status("resync", sent=0, done=100, total=1000), now=2.0)
    f.on_event(native_status("resync", sent=0, done=300, total=1000), now=4.0)
    view = f.view(4.0)
    assert view["in_sync"] is False
    assert view["resync"]["mode"] == "checksum"
    assert view["resync"]["done"] == 300
    assert view["resync"]["total"] == 1000
    assert view["resync"]["percent"] == 30.0
    assert view["resync"]["bytes"] == 300_000
    assert view["resync"]["remaining"] == 7.0  # 70 % left at 10 % a second
    assert view["resync"]["elapsed"] == 4.0
    f.on_status(native_status("in_sync", sent=0, done=0, total=0), now=4.2)
    assert f.view(4.2)["in_sync"] is False  # the link says in sync before the data is acknowledged
    assert f.view(4.2)["link"] == "in_sync"
    f.on_event(channel.InSync(None, "checksum", 4.5, 300_000), now=4.5)
    view = f.view(5.0)
    assert view["resync"] is None
    assert view["in_sync"] is True
    assert view["last_resync"] == {"mode": "checksum", "seconds": 4.5, "bytes": 300_000}


def test_a_stalled_resync_has_no_time_left_to_show() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("resync", sent=0, done=100, total=1000), now=0.0)
    f.on_status(native_status("resync", sent=0, done=200, total=1000), now=2.0)
    assert f.resync_remaining(2.0) == 16.0
    for t in range(4, 60, 2):  # no progress for a minute
        f.on_status(native_status("resync", sent=0, done=200, total=1000), now=float(t))
    assert f.resync_remaining(58.0) is None
    assert f.view(58.0)["resync"]["percent"] == 20.0


def test_counters_a_status_leaves_out_are_absent_not_zero() -> None:
    """A status with fewer counters (an older or partial report): what it leaves out is unknown."""
    f = ReplicationFigures()
    f.started("primary")
    report = channel.StatusReport("degraded", 12, 5, {"resyncs": 2, "streamed_bytes": 1000})
    f.on_status(report, now=0.0)
    f.on_status(channel.StatusReport("degraded", 12, 5, {"resyncs": 2, "streamed_bytes": 3000}), now=2.0)
    view = f.view(2.0)
    assert view["in_sync"] is False
    assert view["link"] == "degraded"
    assert view["journal_ops"] == 5
    assert view["in_flight_ops"] is None  # not reported: absent, never a made-up 0
    assert view["ack_latency"] is None
    assert view["lag_seconds"] is None
    assert view["streamed_bytes"] == 3000
    assert view["throughput"] == 1000.0
    families = {name for name, _labels, _value in rfs_samples(f, 2.0)}
    assert "safekit_rfs_in_flight_operations" not in families
    assert "safekit_rfs_journal_operations" in families
    f.on_status(channel.StatusReport("resync", 12, 0, {"resyncs": 2, "streamed_bytes": 3000}), now=4.0)
    view = f.view(4.0)
    assert view["resync"]["mode"] == "resync"
    assert view["resync"]["percent"] is None  # how far is not reported: unknown, not 0 %
    assert view["resync"]["remaining"] is None
    families = {name for name, _labels, _value in rfs_samples(f, 4.0)}
    assert "safekit_rfs_resync_active" in families
    assert "safekit_rfs_resync_progress_ratio" not in families


def test_a_secondary_resync_from_its_progress_events() -> None:
    f = ReplicationFigures()
    f.started("secondary")
    f.on_event(channel.Ready(in_sync=True, epoch="e", trusted=True), now=0.0)
    assert f.view(0.0)["in_sync"] is True
    f.on_event(channel.Resyncing("full"), now=1.0)
    f.on_event(channel.Progress(10), now=2.0)
    f.on_event(channel.Progress(30), now=6.0)
    view = f.view(6.0)
    assert view["in_sync"] is False
    assert view["resync"]["percent"] == 30.0
    assert view["resync"]["remaining"] == 14.0  # 5 % a second, 70 % left
    assert view["resync"]["done"] is None  # the secondary knows a percentage only
    f.on_event(channel.Disconnected("link lost"), now=7.0)
    assert f.view(7.0)["resync"] is None
    assert f.view(7.0)["in_sync"] is False


def test_the_exposition_has_every_rfs_family_and_the_running_ones_values() -> None:
    metrics = Metrics()
    f = ReplicationFigures()
    metrics.add_replication("AM", lambda: f)
    exposition = generate_latest(metrics.registry).decode()
    families = {fam.name: fam for fam in text_string_to_metric_families(exposition)}
    for name, kind, _help, _labels in RFS_FAMILIES:
        assert families[name.removesuffix("_total")].type == kind
        assert families[name.removesuffix("_total")].samples == []  # no process: no values
    f.started("primary")
    f.on_status(native_status("resync", sent=10, done=5, total=10), now=0.0)
    text = generate_latest(metrics.registry).decode()
    assert 'safekit_rfs_role{module="AM",role="primary"} 1.0' in text
    assert 'safekit_rfs_link_state{module="AM",state="resync"} 1.0' in text
    assert 'safekit_rfs_resync_active{mode="checksum",module="AM"} 1.0' in text
    assert 'safekit_rfs_resync_progress_ratio{module="AM"} 0.5' in text
    assert 'safekit_rfs_sent_bytes_total{module="AM"} 10.0' in text
    assert 'safekit_rfs_in_flight_bytes{module="AM"} 12288.0' in text
    metrics.remove_module("AM")
    assert "safekit_rfs_role{" not in generate_latest(metrics.registry).decode()


def test_monitoring_shows_each_heartbeat_network_and_the_replication() -> None:
    metrics = Metrics()
    rtt = RttStats()
    rtt.add(0.002)
    counters = Counters()
    counters.received = 42
    resources = {"heartbeat.lan1": "up", "heartbeat.lan2": "down", "splitbrain.witness": "up"}
    metrics.add_resources("AM", lambda: resources)
    witness = WitnessView.of(WitnessMode.PING, ["198.18.0.9"])
    witness.answered("198.18.0.9", 0.0004, now=0.5)
    metrics.add_witness("AM", lambda: witness)
    metrics.add_heartbeat_source(
        "AM",
        lambda: [("AM", "n2", "lan1", counters, rtt), ("AM", "n2", "lan2", Counters(), None)],
        lambda: ("AM", None, RttStats().histogram),
    )
    f = ReplicationFigures()
    f.started("secondary")
    metrics.add_replication("AM", lambda: f)
    shown = metrics.monitoring("AM", now=1.0)
    assert shown is not None
    assert shown["heartbeats"] == [
        {"lan": "lan1", "peer": "n2", "up": True, "received": 42, "rtt": 0.002, "rtt_last": 0.002},
        {"lan": "lan2", "peer": "n2", "up": False, "received": 0, "rtt": None, "rtt_last": None},
    ]
    assert shown["witness"] == {
        "mode": "ping",
        "reachable": True,
        "rtt": 0.0004,
        "targets": [
            {
                "address": "198.18.0.9",
                "reachable": True,
                "rtt": 0.0004,
                "last_error": None,
                "checked_age": 0.5,
                "answered_age": 0.5,
                "failed_age": None,
                "failures": 0,
            }
        ],
    }
    assert shown["replication"]["role"] == "secondary"
    assert metrics.monitoring("other") is None


# ----------------------------------------------------------------------------- lag and ack latency
def test_ack_latency_percentiles_come_from_the_reports_of_the_last_window() -> None:
    f = ReplicationFigures()
    f.started("primary")
    # before: 1000 acknowledgements within 0.5 ms (bucket 1), long ago
    f.on_status(native_status("in_sync", sent=0, latency=latency_fields({1: 1000}, 0.4)), now=0.0)
    f.on_status(native_status("in_sync", sent=0, latency=latency_fields({1: 1000}, 0.4)), now=100.0)
    # then 100 more: 98 within 1 ms (bucket 2), 2 between 25 and 50 ms (bucket 7)
    later = latency_fields({1: 1000, 2: 98, 7: 2}, 0.4 + 98 * 0.0008 + 2 * 0.04)
    f.on_status(native_status("in_sync", sent=0, latency=later), now=102.0)
    shown = f.view(102.0)["ack_latency"]
    assert shown["count"] == 100  # only those of the window, not the 1000 before
    assert shown["total"] == 1100
    assert shown["p50"] == pytest.approx(0.0005 + 0.0005 * 50 / 98, abs=1e-6)
    assert shown["p99"] == pytest.approx(0.025 + 0.025 * 1 / 2, abs=1e-6)  # in the 25-50 ms bucket
    assert shown["mean"] == pytest.approx((98 * 0.0008 + 2 * 0.04) / 100, abs=1e-6)
    # nothing acknowledged in the last window: no percentile, never the old one again
    f.on_status(native_status("in_sync", sent=0, latency=later), now=130.0)
    f.on_status(native_status("in_sync", sent=0, latency=later), now=132.0)
    assert f.view(132.0)["ack_latency"]["p99"] is None


def test_a_quantile_interpolates_in_its_bucket_as_histogram_quantile_does() -> None:
    h = LatencyHistogram((0.1, 0.2, 0.4), (0, 10, 0, 0), 10, 1.5)
    assert h.quantile(0.5) == pytest.approx(0.15)
    assert h.quantile(1.0) == pytest.approx(0.2)
    h = LatencyHistogram((0.1, 0.2), (4, 0, 1), 5, 99.0)
    assert h.quantile(0.5) == pytest.approx(0.1 * 2.5 / 4)
    assert h.quantile(0.99) == 0.2  # above the last bound: that bound (Prometheus)
    assert LatencyHistogram((0.1,), (0, 0), 0, 0.0).quantile(0.5) is None
    assert h.cumulative() == [(0.1, 4), (0.2, 4), (float("inf"), 5)]


@pytest.mark.parametrize(
    "fields",
    [
        {"ack_latency_le": [0.1, 0.2], "ack_latency_buckets": [1, 2], "ack_latency_count": 3},  # short
        {"ack_latency_le": [0.2, 0.1], "ack_latency_buckets": [1, 2, 0], "ack_latency_count": 3},
        {"ack_latency_le": [0.1, 0.2], "ack_latency_buckets": [1, -2, 4], "ack_latency_count": 3},
        {"ack_latency_le": [0.1, 0.2], "ack_latency_buckets": [1, 2, 0], "ack_latency_count": 4},
        {"ack_latency_le": "0.1", "ack_latency_buckets": [1, 2, 0], "ack_latency_count": 3},
        {"ack_latency_le": [0.1, 0.2], "ack_latency_buckets": [1, 2, 0], "ack_latency_count": True},
    ],
)
def test_malformed_latency_fields_are_not_shown(fields: dict[str, object]) -> None:
    assert LatencyHistogram.from_stats({**fields, "ack_latency_sum": 1.0}) is None
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("in_sync", sent=0, latency={**fields, "ack_latency_sum": 1.0}), now=0.0)
    assert f.view(0.0)["ack_latency"] is None


def test_a_new_process_starts_its_latency_counts_again() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("in_sync", sent=0, latency=latency_fields({3: 500}, 1.0)), now=0.0)
    f.on_status(native_status("in_sync", sent=0, latency=latency_fields({3: 2}, 0.004)), now=2.0)  # restarted
    f.on_status(native_status("in_sync", sent=0, latency=latency_fields({3: 4}, 0.008)), now=4.0)
    assert f.view(4.0)["ack_latency"]["count"] == 2  # 4 - 2, never 4 - 500


def test_lag_in_seconds_is_shown_and_exported_only_when_known() -> None:
    metrics = Metrics()
    f = ReplicationFigures()
    metrics.add_replication("AM", lambda: f)
    f.started("primary")
    f.on_status(native_status("degraded", sent=0, lag=None), now=0.0)  # an earlier process's journal
    assert f.view(0.0)["lag_seconds"] is None
    text = generate_latest(metrics.registry).decode()
    assert 'safekit_rfs_lag_seconds{module="AM"}' not in text
    f.on_status(native_status("degraded", sent=0, lag=12.3456), now=2.0)
    assert f.view(2.0)["lag_seconds"] == 12.346
    latency = latency_fields({0: 3, 4: 1}, 0.0042)
    f.on_status(native_status("in_sync", sent=0, lag=0.002, latency=latency), now=4.0)
    text = generate_latest(metrics.registry).decode()
    assert 'safekit_rfs_lag_seconds{module="AM"} 0.002' in text
    assert 'safekit_rfs_ack_latency_seconds_bucket{le="0.00025",module="AM"} 3.0' in text
    assert 'safekit_rfs_ack_latency_seconds_bucket{le="0.005",module="AM"} 4.0' in text
    assert 'safekit_rfs_ack_latency_seconds_bucket{le="+Inf",module="AM"} 4.0' in text
    assert 'safekit_rfs_ack_latency_seconds_count{module="AM"} 4.0' in text
    assert 'safekit_rfs_ack_latency_seconds_sum{module="AM"} 0.0042' in text
    f.stopped()
    assert "safekit_rfs_ack_latency_seconds_count{" not in generate_latest(metrics.registry).decode()


def test_the_native_status_line_decodes_into_the_figures() -> None:
    """A `status` line as native/primary/events.c and pstatus.c write it (the C test checks the
    same text on its side)."""
    line = (
        '{"event":"status","state":"in_sync","seq":9,"journal":0,"resyncs":1,"in_flight_ops":2,'
        '"in_flight_bytes":8192,"bytes_sent":100,"lag_seconds":0.250000,"ack_latency_count":3,'
        '"ack_latency_sum":0.003000,"ack_latency_le":[0.00025,0.0005,0.001,0.0025,0.005,0.01,0.025,'
        '0.05,0.1,0.25,0.5,1,2.5,5,10,30],"ack_latency_buckets":[0,0,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}'
    )
    report = channel.decode_event(line)
    assert isinstance(report, channel.StatusReport)
    f = ReplicationFigures()
    f.started("primary")
    f.on_event(report, now=1.0)
    assert f.lag_seconds == 0.25
    assert f.ack_latency is not None
    assert f.ack_latency.count == 3
    assert f.ack_latency.bounds[-1] == 30.0


def test_a_resync_shows_its_data_rate() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("resync", sent=0, done=10, total=100), now=0.0)  # 10 000 bytes
    f.on_status(native_status("resync", sent=0, done=30, total=100), now=4.0)  # 30 000 bytes
    resync = f.view(4.0)["resync"]
    assert resync["rate"] == 5000.0
    assert resync["remaining"] == 14.0  # 70 objects left at 5 a second
    f.on_event(channel.InSync(None, "checksum", 4.5, 30_000), now=4.5)
    assert f.resync_rate(4.5) is None


def test_an_in_sync_session_that_began_with_a_resync_shows_no_resync() -> None:
    """The native primary reports `resync_mode` for the whole session (link.c): in sync, the
    resynchronisation is over even though its mode is still named."""
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("resync", sent=0, done=1, total=2), now=0.0)
    assert f.view(0.0)["resync"] is not None
    in_sync = native_status("in_sync", sent=0, done=2, total=2)
    in_sync.stats["resync_mode"] = "checksum"
    f.on_status(in_sync, now=2.0)
    assert f.view(2.0)["resync"] is None
    assert not any(name.startswith("safekit_rfs_resync_") for name, _l, _v in rfs_samples(f, 2.0))


def test_a_resync_after_an_idle_link_shows_its_own_throughput() -> None:
    """The console showed a primary's resync at "0 B/s": the throughput was measured over the
    window's reports, all but the newest made while the link was idle (ALONE, then a secondary
    joins). A resync's throughput is measured from its own reports."""
    f = ReplicationFigures()
    f.started("primary")
    for t in range(0, 20, 2):  # ALONE for 20 s: nothing sent
        f.on_event(native_status("degraded", sent=4096), now=float(t))
    f.on_event(channel.Resyncing("checksum"), now=20.0)
    f.on_event(native_status("resync", sent=4096 + 50_000, done=1, total=48), now=20.1)
    assert f.view(20.1)["resync"]["percent"] == 2.1  # known from the first report of the resync
    f.on_event(native_status("resync", sent=4096 + 50_000 + 3_000_000, done=13, total=48), now=20.6)
    assert f.throughput(20.6) == pytest.approx(6_000_000.0)  # 3 MB in 0.5 s, not 3 MB over 20 s
    assert f.poll_interval() == RESYNC_POLL_INTERVAL
    f.on_event(channel.InSync(None, "checksum", 1.0, 3_050_000), now=21.0)
    assert f.poll_interval() == POLL_INTERVAL


def test_a_resync_that_a_status_reveals_keeps_that_status_as_its_first_point() -> None:
    f = ReplicationFigures()
    f.started("primary")
    f.on_status(native_status("degraded", sent=0), now=0.0)
    f.on_status(native_status("resync", sent=1_000_000, done=1, total=10), now=2.0)  # no event seen
    f.on_status(native_status("resync", sent=2_000_000, done=2, total=10), now=2.5)
    assert f.throughput(2.5) == pytest.approx(2_000_000.0)
