"""`safekit state -v` in text: the replication's lag, ack latency and resynchronisation, and the
split-brain witness as this node sees it, rendered from the views safekitd really builds
(daemon/rfs_figures.py, daemon/witness_probes.py) - what an operator reads on a node."""

from __future__ import annotations

import logging
import time
import typing
from types import SimpleNamespace
from typing import Any

import pytest

from safekit.commands import duration, size, verbose_lines
from safekit.config import parse_module
from safekit.daemon.mirror_replication import ModuleReplication
from safekit.daemon.rfs_figures import ReplicationFigures
from safekit.daemon.rfs_supervisor import RfsProcess
from safekit.daemon.witness_probes import WitnessView
from safekit.mirror import MirrorSettings, MirrorState, WitnessMode
from safekit.rfs import channel

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <user/>
</service>
</safe>
"""

BOUNDS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]


def latency_stats(counts: list[int], total: float) -> dict[str, Any]:
    return {
        "ack_latency_le": BOUNDS,
        "ack_latency_buckets": counts,
        "ack_latency_count": sum(counts),
        "ack_latency_sum": total,
    }


def replication(figures: ReplicationFigures, now: float, engine: str = "native") -> dict[str, Any]:
    """What ModuleReplication.view() answers: the process's role and engine, and the figures."""
    view = figures.view(now)
    return {
        "role": figures.role,
        "engine": engine,
        "last_event": None,
        **{key: view[key] for key in ("link", "in_sync", "lag_seconds", "ack_latency", "resync")},
    }


def module(**extra: Any) -> dict[str, Any]:
    return {"name": "AM", "state": "PRIM", "readiness": "Ready", "resources": {"rfs.uptodate": "up"}, **extra}


def test_a_native_primary_in_sync_shows_its_lag_and_ack_latency() -> None:
    figures = ReplicationFigures()
    figures.started("primary")
    # two status answers 10 s apart: 1000 writes acknowledged between them, 900 under 2.5 ms and
    # 100 under 5 ms (p50 interpolated in the 1-2.5 ms bucket, p99 in the 2.5-5 ms one)
    before = [0] * 11
    after = [0, 0, 0, 900, 100, 0, 0, 0, 0, 0, 0]
    figures.on_status(
        channel.StatusReport("in_sync", 1, 0, {"lag_seconds": 0.0, **latency_stats(before, 0)}), 100
    )
    figures.on_status(
        channel.StatusReport("in_sync", 2, 0, {"lag_seconds": 0.012, **latency_stats(after, 1.9)}), 110
    )
    lines = verbose_lines(module(replication=replication(figures, 110)))
    assert lines == [
        "    rfs.uptodate                     up",
        "    replication primary (native engine)",
        "    replication lag 12 ms, ack latency p50 1.83 ms p99 4.75 ms (last 20 s, 1000 writes)",
    ]


def test_a_resynchronisation_shows_its_progress_rate_and_time_left() -> None:
    figures = ReplicationFigures()
    figures.started("primary")
    stats = {"resync_mode": "checksum", "resync_total": 1000}
    figures.on_status(
        channel.StatusReport("resync", 1, 0, {**stats, "resync_done": 100, "resync_data_bytes": 0}), 100
    )
    figures.on_status(
        channel.StatusReport("resync", 2, 0, {**stats, "resync_done": 200, "resync_data_bytes": 50 << 20}),
        110,
    )
    lines = verbose_lines(module(replication=replication(figures, 110)))
    # 10 % in 10 s: the 80 % left take 80 s; 50 MiB in 10 s is 5 MiB/s; no lag reported yet
    assert lines[2:] == [
        "    replication resync checksum 20% (200/1000 objects, 50.0 MiB sent, 5.0 MiB/s),"
        " about 1 min 20 s left"
    ]


def test_a_stalled_resync_has_no_time_left_and_idle_writes_no_percentile() -> None:
    figures = ReplicationFigures()
    figures.started("primary")
    stats = {"resync_mode": "full", "resync_total": 10, "resync_done": 3, **latency_stats([0] * 11, 0)}
    figures.on_status(channel.StatusReport("resync", 1, 0, stats), 100)
    figures.on_status(channel.StatusReport("resync", 2, 0, stats), 110)
    assert verbose_lines(module(replication=replication(figures, 110)))[2:] == [
        "    replication ack latency: no write acknowledged in the last 20 s",
        "    replication resync full 30% (3/10 objects), time left unknown",
    ]


def test_the_python_engine_reports_no_lag_nor_latency_and_none_is_invented() -> None:
    figures = ReplicationFigures()
    figures.started("primary")
    figures.on_status(channel.StatusReport("in_sync", 1, 0, {"resyncs": 1, "data_bytes": 10}), 100)
    lines = verbose_lines(module(replication=replication(figures, 100, engine="python")))
    assert lines == ["    rfs.uptodate                     up", "    replication primary (python engine)"]
    assert not [line for line in lines if "lag" in line or "latency" in line]


def test_the_witness_per_address_reachable_or_why_not_and_since_when() -> None:
    view = WitnessView.of(WitnessMode.PING, ["198.18.0.9", "198.18.0.10", "198.18.0.11"])
    view.answered("198.18.0.9", 0.00042, now=100.0)
    view.failed("198.18.0.9", "timeout", now=10.0)  # a flap 90 s ago: reachable since
    view.answered("198.18.0.9", 0.00042, now=100.0)
    view.answered("198.18.0.10", 0.0011, now=20.0)
    for at in (40.0, 60.0, 97.0):
        view.failed("198.18.0.10", "no route to host", now=at)
    lines = verbose_lines(module(witness=view.view(now=100.0)))
    assert lines[1:] == [
        "    witness (ping) reachable, round trip 0.42 ms",
        "      198.18.0.9: reachable, round trip 0.42 ms, 1 probe failed, last error: timeout 1 min 30 s ago",
        "      198.18.0.10: unreachable, last error: no route to host 3 s ago, last answer 1 min 20 s ago,"
        " 3 probes failed",
        "      198.18.0.11: not probed yet",
    ]


def test_a_witness_never_reached_says_so() -> None:
    view = WitnessView.of(WitnessMode.ARBITRATOR, ["198.18.0.9"])
    view.failed("198.18.0.9", "arbitrator did not answer", now=50.0)
    assert verbose_lines(module(witness=view.view(now=52.5)))[1:] == [
        "    witness (arbitrator) unreachable",
        "      198.18.0.9: unreachable, last error: arbitrator did not answer 2.5 s ago, never answered,"
        " 1 probe failed",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.00025, "0.25 ms"),
        (0.175, "175 ms"),
        (2.5, "2.5 s"),
        (42, "42 s"),
        (60, "1 min"),
        (200, "3 min 20 s"),
        (3600, "1 h"),
        (3900, "1 h 5 min"),
    ],
)
def test_durations_read_as_an_operator_says_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (50 << 20, "50.0 MiB"), (3 << 30, "3.0 GiB")],
)
def test_sizes_in_binary_units(count: float, text: str) -> None:
    assert size(count) == text


def test_the_verbose_state_carries_the_figures_it_prints() -> None:
    """ModuleReplication.view() - the `replication` of `safekit state -v --json` - gives the figures
    the text form prints, from the same ReplicationFigures the metrics and the console read."""
    config = parse_module(USERCONFIG).config
    replica = ModuleReplication(
        None,
        config,
        MirrorSettings("n1", "n2"),
        log=logging.getLogger("test"),
        resources={},
        submit=lambda event: None,
        state=MirrorState,
    )
    assert replica.view() is None  # no replication process: nothing to show
    replica.process = typing.cast("RfsProcess", SimpleNamespace(role="primary", engine="native"))
    replica.figures.started("primary")
    now = time.monotonic()
    replica.figures.on_status(channel.StatusReport("in_sync", 1, 0, {"lag_seconds": 0.25}), now)
    view = replica.view()
    assert view is not None
    assert (view["role"], view["engine"], view["link"], view["lag_seconds"]) == (
        "primary",
        "native",
        "in_sync",
        0.25,
    )
    assert view["ack_latency"] is None and view["resync"] is None
    assert verbose_lines({"replication": view}) == [
        "    replication primary (native engine)",
        "    replication lag 250 ms",
    ]
