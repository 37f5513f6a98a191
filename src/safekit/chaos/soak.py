"""The soak (issue 13, item 7; docs/chaos.md): writes through the VIP for a long time with a swap
every minute, while the engine's memory and open files are sampled; they must stay flat.

`flatness` (pure) fits a least-squares line to each series after a warm-up and calls it flat when
the growth it projects over an hour stays under the limits; `soak` (I/O) drives the lab.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from safekit.chaos import judge
from safekit.chaos.harness import MODULE, NODES, ChaosCluster, Progress, running
from safekit.lab import Lab
from safekit.lab.topology import LabError

WARMUP_SHARE = 0.2
"""The first part of a run is not judged: imports, caches and buffers fill up."""
RSS_LIMIT_KIB_PER_HOUR = 8192
"""Resident memory may grow by at most 8 MiB an hour (projected) ..."""
RSS_LIMIT_SHARE_PER_HOUR = 0.10
"""... or 10 % of its median an hour, whichever is larger."""
FDS_LIMIT_PER_HOUR = 6.0
"""Open files may grow by at most 6 an hour (a leak of one per swap is 60)."""


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value) points, per unit of t; 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def flatness(rss_kib: Sequence[tuple[float, float]], fds: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The verdict on one process's series (t in seconds): slopes per hour after the warm-up,
    and whether each stays under its limit."""

    def judged(series: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        if not series:
            return []
        first, last = series[0][0], series[-1][0]
        cut = first + (last - first) * WARMUP_SHARE
        return [p for p in series if p[0] >= cut]

    rss, fd = judged(rss_kib), judged(fds)
    rss_slope = slope(rss) * 3600
    fds_slope = slope(fd) * 3600
    values = sorted(v for _, v in rss) or [0.0]
    median = values[len(values) // 2]
    rss_limit = max(RSS_LIMIT_KIB_PER_HOUR, RSS_LIMIT_SHARE_PER_HOUR * median)
    return {
        "samples": len(rss_kib),
        "rss_kib_first": rss_kib[0][1] if rss_kib else None,
        "rss_kib_last": rss_kib[-1][1] if rss_kib else None,
        "fds_first": fds[0][1] if fds else None,
        "fds_last": fds[-1][1] if fds else None,
        "rss_slope_kib_per_hour": round(rss_slope, 1),
        "rss_limit_kib_per_hour": round(rss_limit, 1),
        "fds_slope_per_hour": round(fds_slope, 2),
        "fds_limit_per_hour": FDS_LIMIT_PER_HOUR,
        "flat": rss_slope <= rss_limit and fds_slope <= FDS_LIMIT_PER_HOUR,
    }


def soak(
    *,
    minutes: float,
    swap_every: float = 60.0,
    sample_every: float = 10.0,
    witness_mode: str = "ping",
    lab_name: str = "chaos",
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the soak; returns the report (bench/results/soak.json)."""
    say = say or Progress()
    chaos = ChaosCluster(Lab(lab_name), witness_mode=witness_mode, say=say)
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    swaps: list[dict[str, Any]] = []
    with running(chaos):
        chaos.start_clients()
        started = time.monotonic()
        end = started + minutes * 60
        next_swap = started + swap_every
        next_sample = started
        evidence_acks: list[judge.Ack] = []
        failed = 0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                # safekitd per node; replication per role (each swap moves a role to the other
                # node, and a primary's process is not a secondary's)
                sample: dict[str, tuple[int, int]] = {}
                for node, figures in chaos.figures().items():
                    sample[f"{node} safekitd"] = figures.total("safekitd")
                    for role in ("primary", "secondary"):
                        rss, fds = figures.total(f"rfs {role}")
                        before = sample.get(f"replication {role}", (0, 0))
                        sample[f"replication {role}"] = (before[0] + rss, before[1] + fds)
                for name, (rss, fds) in sample.items():
                    one = series.setdefault(name, {"rss_kib": [], "fds": []})
                    one["rss_kib"].append((round(now - started, 1), float(rss)))
                    one["fds"].append((round(now - started, 1), float(fds)))
                next_sample += sample_every
            if now >= next_swap:
                roles = chaos.roles()
                t0 = time.monotonic()
                if roles is not None:
                    chaos.cluster.safekit(roles[0], "swap", "-m", MODULE, check=False, timeout=120)
                recovered, states = chaos.wait_recovered(60)
                swaps.append(
                    {
                        "at_s": round(t0 - started, 1),
                        "from": roles[0] if roles else None,
                        "to": recovered[0] if recovered else None,
                        "seconds": round(time.monotonic() - t0, 2),
                        "states": {n: list(s) for n, s in states.items()},
                    }
                )
                say(
                    f"swap {len(swaps)}: {swaps[-1]['from']} -> {swaps[-1]['to']} in {swaps[-1]['seconds']} s"
                )
                if recovered is None:
                    raise LabError(f"the cluster did not come back after swap {len(swaps)}: {states}")
                next_swap += swap_every
            time.sleep(0.5)
            acks, fails = judge.parse_workload(chaos.workload.take() if chaos.workload else [])
            evidence_acks += acks
            failed += fails
        checked_at = time.monotonic()
        present, why = chaos.records_on_primary()
        if present is None:
            raise LabError(f"the records cannot be read at the end of the soak: {why}")
        lost = judge.lost_records((a for a in evidence_acks if a.acked < checked_at), present)
        longest = judge.longest_wait([a.acked for a in evidence_acks], started, checked_at)
    verdicts = {
        name: flatness(data["rss_kib"], data["fds"])
        for name, data in sorted(series.items())
        if any(v for _, v in data["rss_kib"])
    }
    return {
        "minutes": minutes,
        "swap_every_s": swap_every,
        "sample_every_s": sample_every,
        "witness_mode": witness_mode,
        "swaps": len(swaps),
        "swap_seconds_max": max((s["seconds"] for s in swaps), default=None),
        "acknowledged": len(evidence_acks),
        "not_acknowledged": failed,
        "lost": len(lost),
        "longest_unavailability_s": longest,
        "flat": all(v["flat"] for v in verdicts.values()),
        "verdicts": verdicts,
        "limits": {
            "warmup_share": WARMUP_SHARE,
            "rss_kib_per_hour": RSS_LIMIT_KIB_PER_HOUR,
            "rss_share_per_hour": RSS_LIMIT_SHARE_PER_HOUR,
            "fds_per_hour": FDS_LIMIT_PER_HOUR,
        },
        "series": {name: data for name, data in sorted(series.items())},
        "swap_log": swaps,
        "nodes": list(NODES),
    }
