"""Durations: bare numbers keep SafeKit's per-attribute unit; units and compound forms are exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.config import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("700", "ms", 0.7),
        ("30000", "ms", 30.0),
        ("300", "s", 300.0),
        ("24", "h", 86400.0),
        ("700ms", "s", 0.7),
        ("30s", "ms", 30.0),
        ("24h", "s", 86400.0),
        ("2d", "s", 172800.0),
        ("1m30s", "s", 90.0),
        ("1h1m1s1ms", "s", 3661.001),
        ("250us", "s", 0.00025),
        ("1.5s", "s", 1.5),
        (" 2s ", "s", 2.0),
    ],
)
def test_accepts_bare_numbers_units_and_compounds(text: str, unit: str, seconds: float) -> None:
    assert parse_duration(text, unit) == pytest.approx(seconds, abs=0)


@pytest.mark.parametrize("text", ["", "7x", "ms", "-5s", "5 s", "30s1m", "1s1s", "1e3ms", "s5", "5m s"])
def test_rejects_what_is_not_a_duration_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text, "s")


def test_rejects_an_unknown_default_unit() -> None:
    with pytest.raises(ValueError, match="unknown default unit"):
        parse_duration("5", "fortnight")


@given(st.integers(min_value=0, max_value=10**9))
def test_milliseconds_are_exact_in_both_spellings(ms: int) -> None:
    assert parse_duration(f"{ms}ms", "s") == parse_duration(str(ms), "ms") == ms / 1000


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_compound_equals_the_sum_of_its_parts(h: int, m: int, s: int, ms: int) -> None:
    expected = parse_duration(str(h * 3600_000 + m * 60_000 + s * 1000 + ms), "ms")
    assert parse_duration(f"{h}h{m}m{s}s{ms}ms", "s") == expected


@given(st.integers(min_value=1, max_value=10**7))
def test_format_then_parse_round_trips(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds), "s") == seconds
