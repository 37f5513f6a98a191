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
