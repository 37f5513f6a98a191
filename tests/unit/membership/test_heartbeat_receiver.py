"""The receive path: only authentic, fresh packets for us are acted on; every drop is counted."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from safekit.membership.liveness import LanDown, LanTiming, LanUp, Liveness, PeerLost, PeerUp
from safekit.membership.receiver import HeartbeatReceiver
from safekit.membership.replay import Verdict
from safekit.membership.wire import Heartbeat, ModuleState, SubState, encode

KEY = bytes(range(32))
TIMINGS = {"lan1": LanTiming(pulse=0.1, timeout=1.0), "lan2": LanTiming(pulse=0.1, timeout=1.0)}


def receiver() -> HeartbeatReceiver:
    return HeartbeatReceiver(
        key=KEY,
        local_node="node1",
        module="mirror",
        liveness=Liveness(TIMINGS, {"node2": ["lan1", "lan2"]}),
    )


def packet(lan: str, seq: int, incarnation: int = 100, key: bytes = KEY, **changes: object) -> bytes:
    hb = Heartbeat(
        module="mirror",
        sender="node2",
        target="node1",
        lan=lan,
        incarnation=incarnation,
        sequence=seq,
        sent_at_us=seq * 100_000,
        state=ModuleState.SECOND,
        substate=SubState.READY,
    )
    return encode(dataclasses.replace(hb, **changes), key)  # type: ignore[arg-type]


def test_fresh_packet_is_delivered_and_brings_the_peer_up() -> None:
    rx = receiver()
    result = rx.receive(packet("lan1", 1), lan="lan1", now=0.0)
    assert result.verdict is Verdict.FRESH
    assert result.heartbeat is not None and result.heartbeat.state is ModuleState.SECOND
    assert result.events == (LanUp("node2", "lan1"), PeerUp("node2"))
    assert rx.counters("lan1").received == 1


def test_wrong_key_is_dropped_counted_and_never_acted_on() -> None:
    rx = receiver()
    result = rx.receive(packet("lan1", 1, key=bytes(32)), lan="lan1", now=0.0)
    assert result.heartbeat is None and result.events == ()
    assert result.reason is not None and "BadSignature" in result.reason
    assert rx.counters("lan1").dropped_bad_signature == 1
    assert not rx.liveness.peer_is_up("node2")
    # A forged packet must not poison replay state: the real sequence 1 is still fresh.
    assert rx.receive(packet("lan1", 1), lan="lan1", now=0.1).verdict is Verdict.FRESH


def test_garbage_is_counted_as_malformed() -> None:
    rx = receiver()
    rx.receive(b"hello", lan="lan2", now=0.0)
    rx.receive(packet("lan2", 1)[:-5], lan="lan2", now=0.0)
    assert rx.counters("lan2").dropped_malformed == 2
    assert rx.counters("lan2").dropped == 2


def test_replay_of_an_old_packet_is_dropped_and_counted() -> None:
    rx = receiver()
    old = packet("lan1", 1)
    rx.receive(old, lan="lan1", now=0.0)
    rx.receive(packet("lan1", 2), lan="lan1", now=0.1)
    result = rx.receive(old, lan="lan1", now=0.2)
    assert result.verdict is Verdict.REPLAY_SEEN and result.heartbeat is None
    assert rx.counters("lan1").dropped_replay == 1
    assert rx.counters("lan1").received == 2


def test_duplicate_across_two_lans_keeps_both_lans_up_and_delivers_once() -> None:
    rx = receiver()
    first = rx.receive(packet("lan1", 1), lan="lan1", now=0.0)
    second = rx.receive(packet("lan2", 1), lan="lan2", now=0.001)
    assert first.heartbeat is not None and second.heartbeat is None
    assert second.verdict is Verdict.LAN_COPY
    assert second.events == (LanUp("node2", "lan2"),)
    assert rx.counters("lan2").lan_copies == 1 and rx.counters("lan2").dropped_replay == 0


def test_copy_moved_to_another_lan_is_refused() -> None:
    rx = receiver()
    result = rx.receive(packet("lan1", 1), lan="lan2", now=0.0)
    assert result.heartbeat is None and result.reason is not None and "arrived on LAN" in result.reason
    assert rx.counters("lan2").dropped_misdirected == 1
    assert not rx.liveness.lan_is_up("node2", "lan2")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"target": "node3"}, "addressed to node"),
        ({"module": "other"}, "for module"),
        ({"sender": "intruder"}, "not a peer"),
        ({"sender": "node1", "target": "node1"}, "not a peer"),
    ],
)
def test_authentic_but_misdirected_packets_are_not_acted_on(changes: dict[str, Any], reason: str) -> None:
    rx = receiver()
    result = rx.receive(packet("lan1", 1, **changes), lan="lan1", now=0.0)
    assert result.heartbeat is None and result.reason is not None and reason in result.reason
    assert rx.counters("lan1").dropped_misdirected == 1


def test_rebooted_peer_is_accepted_and_its_old_life_is_not() -> None:
    rx = receiver()
    recorded = packet("lan1", 50, incarnation=100)
    rx.receive(recorded, lan="lan1", now=0.0)
    assert rx.receive(packet("lan1", 1, incarnation=200), lan="lan1", now=1.0).verdict is Verdict.FRESH
    result = rx.receive(recorded, lan="lan1", now=1.1)
    assert result.verdict is Verdict.REPLAY_STALE_INCARNATION
    assert rx.counters("lan1").dropped_replay == 1


def test_peer_lost_and_recovered_through_the_receiver() -> None:
    rx = receiver()
    rx.receive(packet("lan1", 1), lan="lan1", now=0.0)
    rx.receive(packet("lan2", 1), lan="lan2", now=0.0)
    rx.receive(packet("lan1", 2), lan="lan1", now=0.5)
    assert rx.tick(1.0) == [LanDown("node2", "lan2")]
    assert rx.tick(1.5) == [LanDown("node2", "lan1"), PeerLost("node2")]
    # back once it answers a packet this node sent after the LAN went down (at 1.0 s)
    result = rx.receive(packet("lan2", 3, echo_sent_at_us=1_800_000), lan="lan2", now=2.0)
    assert result.events == (LanUp("node2", "lan2"), PeerUp("node2"))


def _lost_at_1_5() -> HeartbeatReceiver:
    rx = receiver()
    rx.receive(packet("lan1", 1, echo_sent_at_us=400_000), lan="lan1", now=0.5)
    assert rx.tick(2.0) == [LanDown("node2", "lan1"), PeerLost("node2")]
    return rx


def test_a_packet_written_during_the_outage_and_delivered_late_is_not_the_peer_back() -> None:
    """The CI failure of test_partition_safety: packets the cut node wrote while cut (queued in
    its neighbour table) arrived after the heal and showed it still serving; the true primary
    stepped down for it. They echo only packets this node sent before it declared the LAN down."""
    rx = _lost_at_1_5()
    for seq, echo in ((2, 400_000), (3, 1_900_000), (4, 0)):  # before the loss at 2.0 s, or none
        result = rx.receive(packet("lan1", seq, echo_sent_at_us=echo), lan="lan1", now=5.0)
        assert result.heartbeat is None and result.stale and result.events == ()
        assert result.sender == "node2"  # whose late packets the warning names
        assert result.reason is not None and "late packet from the outage" in result.reason
    assert not rx.liveness.peer_is_up("node2")
    assert rx.counters("lan1").dropped_stale == 3
    assert rx.counters("lan1").received == 1
    assert rx.rtt("node2", "lan1").samples == 1  # a late packet is no round-trip sample


def test_the_first_packet_answering_this_node_after_the_loss_brings_the_peer_back() -> None:
    rx = _lost_at_1_5()
    result = rx.receive(packet("lan1", 5, echo_sent_at_us=2_000_000), lan="lan1", now=5.0)
    assert result.heartbeat is not None and not result.stale
    assert result.events == (LanUp("node2", "lan1"), PeerUp("node2"))
    # up again: the rule applies only while the LAN is down
    assert rx.receive(packet("lan1", 6, echo_sent_at_us=0), lan="lan1", now=5.1).heartbeat is not None


def test_a_late_packet_still_gives_its_timestamp_to_echo() -> None:
    """Echoing it lets the peer, if it also declared the LAN down, see this node answer it."""
    rx = _lost_at_1_5()
    rx.receive(packet("lan1", 7, echo_sent_at_us=400_000), lan="lan1", now=5.0)
    assert rx.echo_for("node2", "lan1", 5.2)[0] == 700_000


def test_a_peer_never_heard_is_accepted_without_an_echo() -> None:
    result = receiver().receive(packet("lan1", 1, echo_sent_at_us=0), lan="lan1", now=0.0)
    assert result.heartbeat is not None and not result.stale


def test_round_trip_time_from_echoed_timestamp() -> None:
    rx = receiver()
    # We sent at t=10.000 s; the peer held our timestamp 20 ms before answering; it arrives at 10.050.
    rx.receive(packet("lan1", 1, echo_sent_at_us=10_000_000, echo_hold_us=20_000), lan="lan1", now=10.05)
    stats = rx.rtt("node2", "lan1")
    assert stats.samples == 1 and stats.last == pytest.approx(0.030)
    # An echo from before our restart (another clock origin) is not a sample.
    rx.receive(packet("lan1", 2, echo_sent_at_us=99_000_000_000), lan="lan1", now=10.1)
    assert stats.samples == 1


def test_echo_for_the_peer_carries_its_newest_timestamp_and_hold_time() -> None:
    rx = receiver()
    assert rx.echo_for("node2", "lan1", 0.0) == (0, 0)
    rx.receive(packet("lan1", 2), lan="lan1", now=5.0)
    rx.receive(packet("lan1", 1), lan="lan1", now=5.01)  # reordered older packet: not echoed
    assert rx.echo_for("node2", "lan1", 5.1) == (200_000, 100_000)
    assert rx.echo_for("node2", "lan2", 5.1) == (0, 0)


def test_rtt_statistics_smooth_and_bound() -> None:
    rx = receiver()
    stats = rx.rtt("node2", "lan1")
    for sample in (0.010, 0.010, 0.090):
        assert stats.add(sample)
    assert stats.minimum == 0.010 and stats.maximum == 0.090
    assert stats.smoothed == pytest.approx(0.020)
    assert not stats.add(-0.001)
    assert stats.samples == 3


def test_a_one_way_link_is_down_on_the_side_that_still_hears_until_the_peer_answers_again() -> None:
    """ADR 0076: node2's packets keep arriving on lan1 but echo nothing of ours after 0.3 s (it no
    longer hears this node). The LAN goes down a timeout and a pulse after that echo, its packets
    are then ignored as late ones, and the first that echoes a packet sent since brings it back."""
    rx = HeartbeatReceiver(
        key=KEY,
        local_node="node1",
        module="mirror",
        liveness=Liveness({"lan1": TIMINGS["lan1"]}, {"node2": ["lan1"]}, two_way=True),
    )
    events = []
    seq, now = 1, 0.0
    while not events and now < 5.0:
        echo = min(now, 0.3) - 0.1 if now >= 0.1 else 0.0
        rx.receive(packet("lan1", seq, echo_sent_at_us=round(echo * 1e6)), lan="lan1", now=now)
        events = rx.tick(now)
        seq, now = seq + 1, round(now + 0.1, 1)
    assert events == [LanDown("node2", "lan1", unanswered=True), PeerLost("node2")]
    assert now - 0.1 == pytest.approx(1.3), "the echo of 0.2 s + 1.0 s timeout + 0.1 s pulse"
    late = rx.receive(packet("lan1", seq, echo_sent_at_us=200_000), lan="lan1", now=now)
    assert late.heartbeat is None and late.stale and late.reason and "one-way link" in late.reason
    back = rx.receive(packet("lan1", seq + 1, echo_sent_at_us=1_400_000), lan="lan1", now=1.5)
    assert back.events == (LanUp("node2", "lan1"), PeerUp("node2"))
