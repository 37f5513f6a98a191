"""Replay protection: sequence windows per LAN, delivery once across LANs, incarnations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.membership.replay import ReplayGuard, Verdict, next_incarnation

SHORT = settings(max_examples=200, deadline=None)


def check(guard: ReplayGuard, lan: str, seq: int, incarnation: int = 10, peer: str = "node2") -> Verdict:
    return guard.check(peer=peer, module="mirror", lan=lan, incarnation=incarnation, sequence=seq)


def test_in_order_stream_is_fresh() -> None:
    guard = ReplayGuard()
    assert [check(guard, "lan1", seq) for seq in range(1, 6)] == [Verdict.FRESH] * 5


def test_same_packet_twice_on_one_lan_is_a_replay() -> None:
    guard = ReplayGuard()
    assert check(guard, "lan1", 1) is Verdict.FRESH
    assert check(guard, "lan1", 2) is Verdict.FRESH
    assert check(guard, "lan1", 1) is Verdict.REPLAY_SEEN
    assert check(guard, "lan1", 2) is Verdict.REPLAY_SEEN


def test_copy_on_a_second_lan_proves_the_lan_but_is_not_delivered_twice() -> None:
    guard = ReplayGuard()
    first, second = check(guard, "lan1", 7), check(guard, "lan2", 7)
    assert (first, second) == (Verdict.FRESH, Verdict.LAN_COPY)
    assert second.accepted and not second.deliver
    # ...and that copy, replayed on its own LAN, is a replay.
    assert check(guard, "lan2", 7) is Verdict.REPLAY_SEEN


def test_slower_lan_never_delivers_older_content() -> None:
    guard = ReplayGuard()
    assert check(guard, "lan1", 5) is Verdict.FRESH
    assert check(guard, "lan2", 4) is Verdict.LAN_COPY  # lan2 lags: liveness yes, state no
    assert check(guard, "lan2", 6) is Verdict.FRESH  # lan2 overtakes: its copy is first


def test_reordering_within_the_window_is_accepted_once() -> None:
    guard = ReplayGuard(window=8)
    assert check(guard, "lan1", 10) is Verdict.FRESH
    assert check(guard, "lan1", 8) is Verdict.LAN_COPY  # late, not seen: heard, not acted on
    assert check(guard, "lan1", 8) is Verdict.REPLAY_SEEN
    assert check(guard, "lan1", 2) is Verdict.REPLAY_TOO_OLD


def test_window_slides_forward() -> None:
    guard = ReplayGuard(window=4)
    assert check(guard, "lan1", 1) is Verdict.FRESH
    assert check(guard, "lan1", 100) is Verdict.FRESH
    assert check(guard, "lan1", 99) is Verdict.LAN_COPY
    assert check(guard, "lan1", 97) is Verdict.LAN_COPY
    assert check(guard, "lan1", 96) is Verdict.REPLAY_TOO_OLD
    assert check(guard, "lan1", 1) is Verdict.REPLAY_TOO_OLD


def test_new_incarnation_is_accepted_and_old_one_rejected_for_good() -> None:
    guard = ReplayGuard()
    for seq in range(1, 1000):
        check(guard, "lan1", seq, incarnation=10)
    # The peer restarted: its sequence starts again at 1, under a higher incarnation.
    assert check(guard, "lan1", 1, incarnation=11) is Verdict.FRESH
    assert check(guard, "lan2", 1, incarnation=11) is Verdict.LAN_COPY
    # A recording of the previous life, even with a higher sequence, is rejected.
    assert check(guard, "lan1", 5000, incarnation=10) is Verdict.REPLAY_STALE_INCARNATION
    assert check(guard, "lan2", 999, incarnation=10) is Verdict.REPLAY_STALE_INCARNATION
    assert check(guard, "lan1", 2, incarnation=11) is Verdict.FRESH


def test_streams_are_separate_per_peer_and_module() -> None:
    guard = ReplayGuard()
    assert check(guard, "lan1", 1, peer="node2") is Verdict.FRESH
    assert check(guard, "lan1", 1, peer="node3") is Verdict.FRESH
    other = guard.check(peer="node2", module="farm", lan="lan1", incarnation=10, sequence=1)
    assert other is Verdict.FRESH


def test_restored_incarnations_reject_older_lives_after_our_restart() -> None:
    guard = ReplayGuard()
    check(guard, "lan1", 1, incarnation=20)
    restarted = ReplayGuard(known_incarnations=guard.incarnations())
    assert check(restarted, "lan1", 9, incarnation=19) is Verdict.REPLAY_STALE_INCARNATION
    assert check(restarted, "lan1", 2, incarnation=20) is Verdict.FRESH


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReplayGuard(window=0)


@SHORT
@given(
    st.lists(
        st.tuples(st.sampled_from(["lan1", "lan2"]), st.integers(min_value=0, max_value=80)),
        max_size=120,
    )
)
def test_each_sequence_is_delivered_at_most_once_and_in_increasing_order(
    arrivals: list[tuple[str, int]],
) -> None:
    guard = ReplayGuard(window=16)
    delivered: list[int] = []
    accepted: set[tuple[str, int]] = set()
    for lan, seq in arrivals:
        verdict = check(guard, lan, seq)
        if verdict.deliver:
            delivered.append(seq)
        if verdict.accepted:
            assert (lan, seq) not in accepted, "the same copy was accepted twice"
            accepted.add((lan, seq))
    assert delivered == sorted(set(delivered))


def test_next_incarnation_follows_the_clock_and_never_goes_back() -> None:
    assert next_incarnation(1_000, None) == 1_000
    assert next_incarnation(2_000, 1_000) == 2_000
    assert next_incarnation(500, 1_000) == 1_001  # clock set back: still increases
    with pytest.raises(ValueError):
        next_incarnation(-1, None)
