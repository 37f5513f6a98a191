"""Failover timing follows from the heartbeat settings, with the numbers the documentation promises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.daemon.timing import FAST_PROFILE, Timing

pulses = st.floats(min_value=0.01, max_value=2.0, allow_nan=False, allow_infinity=False)


def test_default_heartbeat_takes_over_after_2_16_s() -> None:
    timing = Timing.from_heartbeat(0.2, 1.5)
    assert timing.witness_interval == pytest.approx(0.2)
    assert timing.witness_timeout == pytest.approx(0.2)
    assert timing.split_brain_bound == pytest.approx(0.43)
    assert timing.detection_skew == pytest.approx(0.23)
    assert timing.takeover_after == pytest.approx(2.16)


def test_fast_profile_takes_over_after_0_41_s() -> None:
    assert FAST_PROFILE == {"pulse": 0.05, "timeout": 0.2}
    timing = Timing.from_heartbeat(FAST_PROFILE["pulse"], FAST_PROFILE["timeout"])
    assert timing.split_brain_bound == pytest.approx(0.13)
    assert timing.detection_skew == pytest.approx(0.08)
    assert timing.takeover_after == pytest.approx(0.41)


def test_witness_is_probed_once_a_second_while_the_peer_is_present() -> None:
    assert Timing.from_heartbeat(0.2, 1.5).witness_idle_interval == 1.0


@pytest.mark.parametrize(
    ("pulse", "probe"),
    [(0.001, 0.02), (0.01, 0.02), (0.02, 0.02), (0.1, 0.1), (0.25, 0.25), (0.7, 0.25), (2.0, 0.25)],
)
def test_probe_interval_is_clamped(pulse: float, probe: float) -> None:
    timing = Timing.from_heartbeat(pulse, pulse * 10)
    assert timing.witness_interval == pytest.approx(probe)
    assert timing.witness_timeout == pytest.approx(probe)


def test_safekit_values_keep_the_witness_fast() -> None:
    """SafeKit's 700 ms / 30 s: the probe stays at 250 ms, so fencing is bounded by 0.53 s."""
    timing = Timing.from_heartbeat(0.7, 30.0)
    assert timing.split_brain_bound == pytest.approx(0.53)
    assert timing.takeover_after == pytest.approx(30.0 + 0.53 + 0.73)


@settings(max_examples=500, deadline=None)
@given(pulse=pulses, extra=st.floats(min_value=1e-3, max_value=60.0, allow_nan=False))
def test_split_brain_rules_hold_for_any_heartbeat(pulse: float, extra: float) -> None:
    timeout = pulse + extra
    timing = Timing.from_heartbeat(pulse, timeout)
    # A witness probe started when the peer is declared lost has answered (or timed out) in time.
    assert timing.split_brain_bound >= timing.witness_interval + timing.witness_timeout
    # The two nodes' loss detections may be a whole pulse apart, plus scheduling.
    assert timing.detection_skew > pulse
    assert 0.02 <= timing.witness_interval <= 0.25
    assert timing.witness_timeout == timing.witness_interval
    # The secondary waits for the primary to have fenced itself, whatever the skew.
    assert timing.takeover_after > timing.timeout + timing.split_brain_bound
    assert timing.takeover_after == pytest.approx(timeout + timing.split_brain_bound + timing.detection_skew)


@settings(max_examples=200, deadline=None)
@given(a=pulses, b=pulses)
def test_a_faster_heartbeat_never_fences_slower(a: float, b: float) -> None:
    fast, slow = sorted((a, b))
    assert (
        Timing.from_heartbeat(fast, fast * 2).split_brain_bound
        <= Timing.from_heartbeat(slow, slow * 2).split_brain_bound
    )


def test_arbitrated_lease_rides_out_lost_answers_and_costs_no_failover_time() -> None:
    default = Timing.from_heartbeat(0.2, 1.5)
    assert default.lease_duration == pytest.approx(1.27)  # 6 renewals at 0.2 s
    assert default.arbitrated_takeover_after == pytest.approx(1.73)
    fast = Timing.from_heartbeat(FAST_PROFILE["pulse"], FAST_PROFILE["timeout"])
    assert fast.lease_duration == pytest.approx(0.13)
    assert fast.arbitrated_takeover_after == pytest.approx(0.28)


@given(pulses, st.floats(min_value=2.0, max_value=20.0))
def test_a_dead_primarys_lease_has_run_out_when_its_peer_notices(pulse: float, factor: float) -> None:
    """The lease runs from the primary's last request, sent no later than its last heartbeat
    (plus one pulse); the peer notices the loss `timeout` after the last heartbeat it received."""
    timing = Timing.from_heartbeat(pulse, pulse * factor)
    assert timing.lease_duration >= timing.split_brain_bound
    if timing.timeout - timing.pulse - 0.03 >= timing.split_brain_bound:
        assert timing.lease_duration + timing.pulse <= timing.timeout
