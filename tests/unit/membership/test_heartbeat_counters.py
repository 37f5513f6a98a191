"""The heartbeat histograms: where an observation lands."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.membership.counters import LATENESS_BUCKETS, Histogram


@given(st.floats(min_value=0.0, max_value=10.0))
def test_an_observation_lands_in_the_first_bucket_whose_bound_holds_it(value: float) -> None:
    histogram = Histogram(LATENESS_BUCKETS)
    histogram.observe(value)
    expected = next((i for i, bound in enumerate(LATENESS_BUCKETS) if value <= bound), len(LATENESS_BUCKETS))
    assert histogram.counts[expected] == 1
    assert sum(histogram.counts) == histogram.count == 1


def test_a_value_on_a_bound_counts_under_it() -> None:
    histogram = Histogram((0.1, 0.2))
    for value in (0.1, 0.2, 0.25):
        histogram.observe(value)
    assert histogram.counts == [1, 1, 1]
    assert histogram.cumulative() == [("0.1", 1), ("0.2", 2), ("+Inf", 3)]


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        Histogram((0.2, 0.1))
