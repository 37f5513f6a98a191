"""The soak's verdict: a least-squares slope after the warm-up, against per-hour limits."""

from __future__ import annotations

import pytest

from safekit.chaos.soak import flatness, slope


def test_the_slope_of_a_line_is_its_slope_and_noise_around_a_level_is_near_zero() -> None:
    assert slope([(t, 3.0 * t + 7) for t in range(10)]) == pytest.approx(3.0)
    assert slope([(t, 100.0 + (1 if t % 2 else -1)) for t in range(100)]) == pytest.approx(0.0, abs=0.01)
    assert slope([(1.0, 5.0)]) == 0.0


def test_a_steady_process_is_flat_and_a_leaking_one_is_not() -> None:
    minutes = range(0, 1800, 10)
    steady = flatness([(t, 40000.0 + (t % 30)) for t in minutes], [(t, 17.0) for t in minutes])
    assert steady["flat"] is True
    # one file descriptor per one-minute swap: 60 an hour
    fd_leak = flatness([(t, 40000.0) for t in minutes], [(t, 17.0 + t // 60) for t in minutes])
    assert fd_leak["flat"] is False and fd_leak["fds_slope_per_hour"] == pytest.approx(60, rel=0.05)
    # 100 KiB per swap: about 6 MiB an hour, under the 8 MiB limit (10 % of 40 MiB is less)
    small = flatness([(t, 40000.0 + 100 * (t // 60)) for t in minutes], [(t, 17.0) for t in minutes])
    assert small["flat"] is True
    big = flatness([(t, 40000.0 + 400 * (t // 60)) for t in minutes], [(t, 17.0) for t in minutes])
    assert big["flat"] is False and big["rss_slope_kib_per_hour"] > big["rss_limit_kib_per_hour"]


def test_the_warm_up_is_not_judged() -> None:
    minutes = list(range(0, 1800, 10))
    # memory that fills during the first 5 % of the run, then stays
    warming = [(t, 30000.0 if t < 90 else 45000.0) for t in minutes]
    assert flatness(warming, [(t, 17.0) for t in minutes])["flat"] is True
