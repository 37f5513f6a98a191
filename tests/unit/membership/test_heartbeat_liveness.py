"""Liveness: per-LAN timeouts, peer lost only when every LAN is down, recovery."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.membership.liveness import LanDown, LanTiming, LanUp, Liveness, PeerLost, PeerUp

TIMINGS = {"lan1": LanTiming(pulse=0.7, timeout=3.0), "lan2": LanTiming(pulse=0.1, timeout=1.0)}


def two_lan_peer() -> Liveness:
    return Liveness(TIMINGS, {"node2": ["lan1", "lan2"]})


def test_first_packet_brings_lan_and_peer_up() -> None:
    live = two_lan_peer()
    assert live.packet_received("node2", "lan1", 0.0) == [LanUp("node2", "lan1"), PeerUp("node2")]
    assert live.packet_received("node2", "lan2", 0.1) == [LanUp("node2", "lan2")]
    assert live.packet_received("node2", "lan1", 0.2) == []
    assert live.peer_is_up("node2")


def test_a_peer_never_heard_is_neither_up_nor_lost() -> None:
    live = two_lan_peer()
    assert live.tick(1000.0) == []
    assert not live.peer_is_up("node2")
    assert live.next_deadline() is None


def test_single_lan_loss_is_lan_down_with_peer_still_up() -> None:
    live = two_lan_peer()
    live.packet_received("node2", "lan1", 0.0)
    live.packet_received("node2", "lan2", 0.0)
    assert live.tick(0.99) == []
    assert live.tick(1.0) == [LanDown("node2", "lan2")]
    assert live.peer_is_up("node2")
    assert live.lan_is_up("node2", "lan1") and not live.lan_is_up("node2", "lan2")
    assert live.tick(1.5) == []  # reported once


def test_peer_lost_only_when_all_lans_timed_out() -> None:
    live = two_lan_peer()
    live.packet_received("node2", "lan1", 0.0)
    live.packet_received("node2", "lan2", 0.0)
    assert live.tick(1.0) == [LanDown("node2", "lan2")]
    live.packet_received("node2", "lan1", 2.0)  # lan1 still alive keeps the peer
    assert live.tick(4.9) == []
    assert live.tick(5.0) == [LanDown("node2", "lan1"), PeerLost("node2")]
    assert not live.peer_is_up("node2")
    assert live.last_heard("node2") == 2.0  # the failover report's detection: 3 s of silence
    assert live.tick(100.0) == []


def test_last_heard_is_the_latest_packet_on_any_lan() -> None:
    live = two_lan_peer()
    assert live.last_heard("node2") is None
    live.packet_received("node2", "lan2", 1.5)
    live.packet_received("node2", "lan1", 1.0)
    assert live.last_heard("node2") == 1.5
    with pytest.raises(ValueError):
        live.last_heard("node9")


def test_simultaneous_timeouts_report_each_lan_then_the_peer() -> None:
    live = Liveness({"a": LanTiming(0.1, 1.0), "b": LanTiming(0.1, 1.0)}, {"node2": ["a", "b"]})
    live.packet_received("node2", "a", 0.0)
    live.packet_received("node2", "b", 0.0)
    assert live.tick(1.0) == [LanDown("node2", "a"), LanDown("node2", "b"), PeerLost("node2")]


def test_recovery_reports_lan_up_then_peer_up() -> None:
    live = two_lan_peer()
    live.packet_received("node2", "lan1", 0.0)
    live.tick(10.0)
    assert live.packet_received("node2", "lan2", 11.0) == [LanUp("node2", "lan2"), PeerUp("node2")]
    assert live.packet_received("node2", "lan1", 11.1) == [LanUp("node2", "lan1")]


def test_peers_are_independent() -> None:
    live = Liveness(TIMINGS, {"node2": ["lan1"], "node3": ["lan1"]})
    live.packet_received("node2", "lan1", 0.0)
    live.packet_received("node3", "lan1", 2.0)
    assert live.tick(3.0) == [LanDown("node2", "lan1"), PeerLost("node2")]
    assert live.peer_is_up("node3")


def test_next_deadline_is_the_earliest_timeout() -> None:
    live = two_lan_peer()
    live.packet_received("node2", "lan1", 0.0)
    live.packet_received("node2", "lan2", 0.5)
    assert live.next_deadline() == pytest.approx(1.5)
    live.tick(1.5)
    assert live.next_deadline() == pytest.approx(3.0)


def test_an_older_timestamp_does_not_move_the_deadline_back() -> None:
    live = two_lan_peer()
    live.packet_received("node2", "lan2", 5.0)
    live.packet_received("node2", "lan2", 4.0)
    assert live.next_deadline() == pytest.approx(6.0)


def test_unknown_peer_or_lan_is_refused() -> None:
    live = Liveness(TIMINGS, {"node2": ["lan1"]})
    with pytest.raises(ValueError, match="node9"):
        live.packet_received("node9", "lan1", 0.0)
    with pytest.raises(ValueError, match="lan2"):
        live.packet_received("node2", "lan2", 0.0)


def test_configuration_errors_are_refused() -> None:
    with pytest.raises(ValueError, match="no heartbeat timing"):
        Liveness(TIMINGS, {"node2": ["lan9"]})
    with pytest.raises(ValueError, match="no LAN"):
        Liveness(TIMINGS, {"node2": []})
    with pytest.raises(ValueError, match="longer than the pulse"):
        LanTiming(pulse=1.0, timeout=1.0)
    with pytest.raises(ValueError, match="positive"):
        LanTiming(pulse=0.0, timeout=1.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["rx-lan1", "rx-lan2", "tick"]), st.floats(min_value=0.0, max_value=2.0)),
        max_size=60,
    )
)
def test_events_agree_with_state(steps: list[tuple[str, float]]) -> None:
    """Whatever the timing, events alternate up/down per LAN and PeerLost means no LAN is up."""
    live = two_lan_peer()
    now = 0.0
    lan_state = {"lan1": False, "lan2": False}
    peer_state = False
    for action, delta in steps:
        now += delta
        events = live.tick(now) if action == "tick" else live.packet_received("node2", action[3:], now)
        for event in events:
            match event:
                case LanUp(lan=lan):
                    assert not lan_state[lan]
                    lan_state[lan] = True
                case LanDown(lan=lan):
                    assert lan_state[lan]
                    lan_state[lan] = False
                case PeerUp():
                    assert not peer_state
                    peer_state = True
                case PeerLost():
                    assert peer_state and not any(lan_state.values())
                    peer_state = False
        assert peer_state == any(lan_state.values()) == live.peer_is_up("node2")


# ---------------------------------------------------------------- two-way liveness (ADR 0076)

ONE_LAN = {"lan1": LanTiming(pulse=0.2, timeout=1.5)}


def two_way_peer() -> Liveness:
    return Liveness(ONE_LAN, {"node2": ["lan1"]}, two_way=True)


def test_a_peer_that_no_longer_hears_this_node_is_lost_though_its_packets_arrive() -> None:
    """A one-way link: node2's packets keep coming, but echo nothing this node sent after 1.0 s."""
    live = two_way_peer()
    live.packet_received("node2", "lan1", 0.0)
    now = 0.0
    while now < 1.0:  # both ways work: each packet echoes our packet of a pulse before
        now = round(now + 0.2, 1)
        assert live.packet_received("node2", "lan1", now, answered=now - 0.2) == []
        assert live.tick(now) == []
    # from here on node2 no longer hears us: its packets echo our packet of 0.8 s for ever
    events = []
    while not events:
        now = round(now + 0.2, 1)
        live.packet_received("node2", "lan1", now, answered=0.8)
        events = live.tick(now)
    assert events == [LanDown("node2", "lan1", unanswered=True), PeerLost("node2")]
    assert now == 2.6, "down at the last answered packet's send time + timeout + one pulse (0.8 + 1.7)"
    assert live.last_contact("node2") == (1.0, True)


def test_a_cut_cable_is_still_reported_as_silence() -> None:
    live = two_way_peer()
    live.packet_received("node2", "lan1", 0.0)
    live.packet_received("node2", "lan1", 0.2, answered=0.0)
    assert live.next_deadline() == 1.7, "silence binds: 0.2 + 1.5 before 0.0 + 1.5 + 0.2"
    assert live.tick(1.7) == [LanDown("node2", "lan1", unanswered=False), PeerLost("node2")]
    assert live.last_contact("node2") == (0.2, False)


def test_the_first_packets_need_no_echo_for_a_timeout_and_a_pulse() -> None:
    """A peer that has just started has heard nothing of ours yet: it has the timeout and a pulse
    from its first packet to show that it hears this node, and its echo then keeps the LAN up."""
    live = two_way_peer()
    assert live.packet_received("node2", "lan1", 10.0) == [LanUp("node2", "lan1"), PeerUp("node2")]
    assert live.packet_received("node2", "lan1", 10.2) == []
    assert live.next_deadline() == 11.7
    live.packet_received("node2", "lan1", 10.4, answered=10.3)
    assert live.next_deadline() == 11.9, "silence now binds (10.4 + 1.5) before the echo (10.3 + 1.7)"
    assert live.tick(11.8) == []


def test_an_echo_from_another_clock_origin_proves_nothing() -> None:
    live = two_way_peer()
    live.packet_received("node2", "lan1", 5.0)
    live.packet_received("node2", "lan1", 5.2, answered=99_000.0)  # later than now: not ours
    live.packet_received("node2", "lan1", 6.0)
    assert live.tick(6.7) == [LanDown("node2", "lan1", unanswered=True), PeerLost("node2")]


def test_without_two_way_only_silence_takes_a_lan_down() -> None:
    live = Liveness(ONE_LAN, {"node2": ["lan1"]})
    for step in range(30):
        live.packet_received("node2", "lan1", step * 0.2, answered=0.0)
        assert live.tick(step * 0.2) == []
