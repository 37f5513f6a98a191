"""The lease rules: one holder at a time, renewal, release, expiry, and the grace after a restart."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.arbiter.leases import MAX_LEASE, LeaseTable, LeaseView, Reason

C = b"\x01" * 8
OTHER_CLUSTER = b"\x02" * 8


def ready_table() -> LeaseTable:
    """A table whose grace period is over at t=0 (started long ago)."""
    return LeaseTable(started_at=-100.0)


def test_first_request_is_granted_for_the_duration_asked() -> None:
    table = ready_table()
    d = table.request(C, "am", "node1", 3.0, 0, now=0.0)
    assert d.granted and d.reason is Reason.GRANTED
    assert d.holder == "node1" and d.remaining == 3.0
    assert d.log is not None and "granted to node1" in d.log


def test_other_node_is_refused_with_the_holder_and_its_time_left() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 3.0, 0, now=0.0)
    d = table.request(C, "am", "node2", 3.0, 0, now=1.0)
    assert not d.granted and d.reason is Reason.HELD
    assert d.holder == "node1" and d.remaining == 2.0


def test_duration_is_capped_at_max_lease() -> None:
    table = ready_table()
    d = table.request(C, "am", "node1", 3600.0, 0, now=0.0)
    assert d.remaining == MAX_LEASE
    assert table.request(C, "am", "node2", 1.0, 0, now=MAX_LEASE - 0.001).reason is Reason.HELD
    assert table.request(C, "am", "node2", 1.0, 0, now=MAX_LEASE).granted


def test_renewal_extends_from_now_and_keeps_the_other_node_out() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 0, now=0.0)
    for t in (1.0, 2.5, 4.0):
        assert table.request(C, "am", "node1", 2.0, 0, now=t).reason is Reason.RENEWED
        assert table.request(C, "am", "node2", 2.0, 0, now=t + 0.5).reason is Reason.HELD
    # node1 stops renewing: its last lease ran to 6.0
    assert table.request(C, "am", "node2", 2.0, 0, now=5.999).reason is Reason.HELD
    d = table.request(C, "am", "node2", 2.0, 0, now=6.0)
    assert d.reason is Reason.GRANTED and d.log is not None and "lease of node1 expired" in d.log


def test_release_by_the_holder_frees_the_lease_at_once() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 5.0, 0, now=0.0, session=b"s1")
    d = table.release(C, "am", "node1", now=1.0, session=b"s1")
    assert d.reason is Reason.RELEASED and d.holder is None
    assert table.request(C, "am", "node2", 5.0, 0, now=1.0).granted


def test_release_by_a_non_holder_changes_nothing() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 5.0, 0, now=0.0, session=b"s1")
    d = table.release(C, "am", "node2", now=1.0, session=b"s2")
    assert d.reason is Reason.NOT_HOLDER and d.holder == "node1"
    assert table.request(C, "am", "node2", 5.0, 0, now=1.0).reason is Reason.HELD


def test_release_from_an_earlier_session_of_the_holder_changes_nothing() -> None:
    """A release recorded from a previous run of node1's daemon cannot end the lease of the current one."""
    table = ready_table()
    table.request(C, "am", "node1", 5.0, 0, now=0.0, session=b"old")
    table.request(C, "am", "node1", 5.0, 0, now=1.0, session=b"new")
    assert table.release(C, "am", "node1", now=2.0, session=b"old").reason is Reason.NOT_HOLDER
    assert table.request(C, "am", "node2", 5.0, 0, now=2.0).reason is Reason.HELD


def test_nothing_is_granted_during_the_grace_period_after_start() -> None:
    table = LeaseTable(started_at=100.0)
    d = table.request(C, "am", "node1", 3.0, 0, now=101.0)
    assert d.reason is Reason.GRACE and not d.granted and d.holder is None
    assert d.remaining == MAX_LEASE - 1.0
    assert d.log is not None and "arbiter restarted" in d.log
    # refusals in grace are logged once per node, not at every retry
    assert table.request(C, "am", "node1", 3.0, 0, now=102.0).log is None
    assert table.request(C, "am", "node1", 3.0, 0, now=100.0 + MAX_LEASE - 0.001).reason is Reason.GRACE
    assert table.request(C, "am", "node1", 3.0, 0, now=100.0 + MAX_LEASE).granted


def test_refusals_are_logged_once_per_holder_change() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 0, now=0.0)
    logs = [table.request(C, "am", "node2", 2.0, 0, now=t / 10).log for t in range(1, 15)]
    assert sum(1 for line in logs if line is not None) == 1
    table.request(C, "am", "node1", 2.0, 0, now=1.5)  # renewal: same holder, no new refusal line
    assert table.request(C, "am", "node2", 2.0, 0, now=1.6).log is None
    table.request(C, "am", "node2", 2.0, 0, now=3.5)  # node1 expired at 3.5, node2 holds now
    line = table.request(C, "am", "node1", 2.0, 0, now=3.6).log
    assert line is not None and "held by node2" in line


def test_modules_and_clusters_are_independent() -> None:
    table = ready_table()
    assert table.request(C, "am", "node1", 3.0, 0, now=0.0).granted
    assert table.request(C, "other", "node2", 3.0, 0, now=0.0).granted
    assert table.request(OTHER_CLUSTER, "am", "node2", 3.0, 0, now=0.0).granted
    assert [v.holder for v in table.leases(C, now=1.0)] == ["node1", "node2"]
    assert [v.module for v in table.leases(C, now=1.0, module="other")] == ["other"]


def test_sweep_logs_each_expiry_and_forgets_the_lease() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 1.0, 0, now=0.0)
    assert table.sweep(now=0.5) == []
    lines = table.sweep(now=1.2)
    assert len(lines) == 1 and "lease of node1 expired" in lines[0]
    assert table.leases(C, now=1.2) == []
    assert table.sweep(now=2.0) == []


_NODES = ("node1", "node2", "node3")
_op = st.tuples(
    st.sampled_from(("request", "release", "sweep")),
    st.sampled_from(_NODES),
    st.floats(min_value=0.01, max_value=30.0),  # duration asked
    st.floats(min_value=0.0, max_value=4.0),  # time step before the operation
    st.booleans(),  # release from the current session or from another one
)


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(_op, max_size=60), started_at=st.floats(min_value=-20.0, max_value=5.0))
def test_never_two_holders_whose_leases_overlap(
    ops: list[tuple[str, str, float, float, bool]], started_at: float
) -> None:
    """Whatever the sequence, a node granted a lease at t believes it holds it until t + granted time,
    or until it releases it; no two nodes' beliefs overlap, and nothing is granted during grace."""
    table = LeaseTable(started_at=started_at)
    believed: dict[str, float] = {}  # node -> end of the lease it believes it holds
    sessions: dict[str, int] = dict.fromkeys(_NODES, 0)
    now = 0.0
    for kind, node, duration, step, same_session in ops:
        now += step
        if kind == "sweep":
            table.sweep(now)
            continue
        if kind == "release":
            session = bytes([sessions[node]]) if same_session else b"other"
            d = table.release(C, "am", node, now, session=session)
            if d.reason is Reason.RELEASED:
                believed[node] = min(believed.get(node, now), now)
            continue
        sessions[node] += 1
        d = table.request(C, "am", node, duration, 0, now, session=bytes([sessions[node]]))
        if d.granted:
            assert now >= started_at + MAX_LEASE, "granted during the grace period"
            assert d.remaining <= MAX_LEASE
            for other, until in believed.items():
                assert other == node or until <= now, (
                    f"{node} granted at {now} while {other} holds until {until}"
                )
            believed[node] = now + min(duration, MAX_LEASE)
        elif d.reason is Reason.HELD:
            assert d.holder != node and d.holder is not None
            assert believed[d.holder] - now == d.remaining


# ------------------------------------------------------------------ replica generations


def test_a_grant_records_the_highest_generation_and_says_so() -> None:
    table = ready_table()
    d = table.request(C, "am", "node1", 3.0, 6, now=0.0)
    assert d.granted and d.generation == 6 and d.raised
    assert (
        d.log is not None
        and "granted to node1" in d.log
        and "highest copy now generation 6 (was generation 0)" in d.log
    )
    assert table.generation(C, "am") == 6
    renewed = table.request(C, "am", "node1", 3.0, 6, now=1.0)
    assert renewed.reason is Reason.RENEWED and renewed.generation == 6 and not renewed.raised
    # a renewal with a newer generation (the holder moved on alone) raises it too
    moved = table.request(C, "am", "node1", 3.0, 7, now=2.0)
    assert moved.reason is Reason.RENEWED and moved.generation == 7 and moved.raised


def test_an_older_copy_is_refused_outdated_even_after_the_holder_expired() -> None:
    """The hole: node1 served alone at generation 6 and vanished; node2 (generation 5) must not
    take the lease over with its older copy, however long it waits."""
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 6, now=0.0)
    during = table.request(C, "am", "node2", 2.0, 5, now=1.0)
    assert during.reason is Reason.OUTDATED and not during.granted
    assert during.holder == "node1" and during.remaining == 1.0 and during.generation == 6
    assert during.log is not None and "outdated" in during.log and "generation 5" in during.log
    for t in (2.0, 10.0, 1000.0):
        after = table.request(C, "am", "node2", 2.0, 5, now=t)
        assert after.reason is Reason.OUTDATED and after.holder is None and after.generation == 6
        assert after.log is None  # logged once, not at every retry
    assert table.leases(C, now=1000.0) == [LeaseView("am", "", 0.0, 6, 6)]
    # node2 resynchronised from node1 (now at generation 6): it may hold the lease again
    assert table.request(C, "am", "node2", 2.0, 6, now=1001.0).granted


def test_outdated_refusal_does_not_touch_the_lease() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 6, now=0.0, session=b"s1")
    table.request(C, "am", "node2", 2.0, 1, now=0.5)
    # node1's lease is unchanged: it still expires at 2.0, and node1 can still release it
    assert table.holder_session(C, "am", now=1.999) == ("node1", b"s1")
    assert table.holder_session(C, "am", now=2.0) is None


def test_a_refused_request_never_raises_the_known_generation() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 3, now=0.0)
    held = table.request(C, "am", "node2", 2.0, 9, now=0.5)
    assert held.reason is Reason.HELD and held.generation == 3 and not held.raised
    assert table.generation(C, "am") == 3
    grace_table = LeaseTable(started_at=0.0)
    in_grace = grace_table.request(C, "am", "node1", 2.0, 9, now=1.0)
    assert in_grace.reason is Reason.GRACE and grace_table.generation(C, "am") == 0


def test_an_outdated_node_is_told_so_during_the_grace_of_a_restarted_arbiter() -> None:
    table = LeaseTable(started_at=100.0, generations={(C, "am"): 6})
    d = table.request(C, "am", "node2", 2.0, 5, now=101.0)
    assert d.reason is Reason.OUTDATED and d.generation == 6
    ok = table.request(C, "am", "node1", 2.0, 6, now=101.0)
    assert ok.reason is Reason.GRACE
    assert table.request(C, "am", "node2", 2.0, 5, now=100.0 + MAX_LEASE + 1).reason is Reason.OUTDATED


def test_generations_are_per_cluster_and_module_and_survive_release_and_sweep() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 1.0, 4, now=0.0, session=b"s")
    assert table.request(C, "other", "node2", 1.0, 0, now=0.0).granted
    assert table.request(OTHER_CLUSTER, "am", "node2", 1.0, 0, now=0.0).granted
    released = table.release(C, "am", "node1", now=0.5, session=b"s")
    assert released.reason is Reason.RELEASED and released.generation == 4
    table.sweep(now=5.0)
    assert table.generation(C, "am") == 4
    assert table.request(C, "am", "node2", 1.0, 3, now=5.0).reason is Reason.OUTDATED
    assert table.generations() == {(C, "am"): (4, 4)}


def test_generation_out_of_range_is_a_programming_error() -> None:
    table = ready_table()
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="replica generation"):
            table.request(C, "am", "node1", 1.0, bad, now=0.0)


_gen_op = st.tuples(
    st.sampled_from(("request", "request", "request", "release", "sweep", "restart")),
    st.sampled_from(_NODES),
    st.floats(min_value=0.01, max_value=12.0),  # duration asked
    st.floats(min_value=0.0, max_value=4.0),  # time step before the operation
    st.integers(min_value=0, max_value=6),  # the requester's generation
)


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(_gen_op, max_size=80))
def test_never_a_grant_to_a_copy_older_than_an_earlier_grant(
    ops: list[tuple[str, str, float, float, int]],
) -> None:
    """Whatever the sequence of requests, releases, sweeps and restarts of the arbiter (with its
    generations persisted), a grant never goes to a generation below that of an earlier grant of the
    module; only grants raise the known generation; a refusal for age is exactly OUTDATED."""
    table = LeaseTable(started_at=-100.0)
    highest_granted = 0
    now = 0.0
    for kind, node, duration, step, generation in ops:
        now += step
        if kind == "sweep":
            table.sweep(now)
        elif kind == "release":
            table.release(C, "am", node, now)
        elif kind == "restart":
            table = LeaseTable(started_at=now, grace=1.0, generations=table.generations())
        else:
            d = table.request(C, "am", node, duration, generation, now)
            if d.granted:
                assert generation >= highest_granted, f"{node} granted at generation {generation}"
                highest_granted = max(highest_granted, generation)
            assert (d.reason is Reason.OUTDATED) == (generation < highest_granted)
            assert d.generation == highest_granted
        assert table.generation(C, "am") == highest_granted


def test_withdrawing_an_unanswered_grant_restores_the_lease_and_generation_before_it() -> None:
    """The server could not persist a raised generation: the grant is undone. A renewing holder keeps
    the lease it held (another node is still refused until it ends); a new holder holds nothing."""
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 3, now=0.0, session=b"s1")
    renewal = table.request(C, "am", "node1", 5.0, 4, now=1.0, session=b"s2")
    assert renewal.raised and renewal.raised_from == (3, 3)
    table.withdraw(C, "am")
    assert table.generation(C, "am") == 3
    assert table.holder_session(C, "am", now=1.5) == ("node1", b"s1")
    assert table.request(C, "am", "node2", 2.0, 3, now=1.9).reason is Reason.HELD  # node1's 2.0 s lease
    fresh = table.request(C, "am", "node2", 2.0, 5, now=2.0)
    assert fresh.granted and fresh.raised
    table.withdraw(C, "am")
    assert table.holder_session(C, "am", now=2.0) is None and table.generation(C, "am") == 3
    with pytest.raises(ValueError, match="no grant to withdraw"):
        table.withdraw(C, "am")


# ------------------------------------------------------------------ copy ranks (ADR 0046)


def test_a_stale_epoch_at_the_takers_number_is_refused_once_the_taker_confirmed_it() -> None:
    """The hole ADR 0046 closes: node2 took over at 5 and the arbitrator recorded it confirmed
    (it acknowledged writes alone then); node1 started an epoch at 5 too, on a stale view, and
    holds writes up to 3 only. Once node2 is gone, node1 must never get the lease with that copy,
    although its number is the same."""
    table = ready_table()
    assert table.request(C, "am", "node2", 2.0, 5, now=0.0, confirmed=3).granted  # the takeover
    confirmed = table.request(C, "am", "node2", 2.0, 5, now=0.5, confirmed=5)  # its confirmation
    assert confirmed.reason is Reason.RENEWED and confirmed.raised and confirmed.known == (5, 5)
    for t in (1.0, 10.0, 1000.0):
        stale = table.request(C, "am", "node1", 2.0, 5, now=t, confirmed=3)
        assert stale.reason is Reason.OUTDATED and stale.known == (5, 5)
    assert stale.log is None  # logged once
    assert table.rank(C, "am") == (5, 5)


def test_ranks_compare_confirmed_first() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 7, now=0.0, confirmed=3)
    # a higher confirmed generation outranks a higher number that acknowledged nothing at it
    d = table.request(C, "am", "node2", 2.0, 6, now=5.0, confirmed=6)
    assert d.granted and d.known == (6, 6) and d.raised_from == (3, 7)
    assert table.request(C, "am", "node1", 2.0, 7, now=10.0, confirmed=3).reason is Reason.OUTDATED
    # a request without a confirmed generation (wire version 2) ranks (generation, generation)
    assert table.request(C, "am", "node1", 2.0, 6, now=15.0).granted
    assert table.request(C, "am", "node1", 2.0, 7, now=16.0).known == (7, 7)


def test_a_confirmed_generation_above_the_generation_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="confirmed generation"):
        ready_table().request(C, "am", "node1", 2.0, 5, now=0.0, confirmed=6)


def test_ranks_survive_a_restart_and_bare_numbers_read_as_confirmed() -> None:
    table = ready_table()
    table.request(C, "am", "node1", 2.0, 9, now=0.0, confirmed=4)
    again = LeaseTable(started_at=-100.0, generations=table.generations())
    assert again.rank(C, "am") == (4, 9)
    legacy = LeaseTable(started_at=-100.0, generations={(C, "am"): 6})
    assert legacy.rank(C, "am") == (6, 6)
    assert legacy.request(C, "am", "node1", 2.0, 6, now=0.0, confirmed=5).reason is Reason.OUTDATED
