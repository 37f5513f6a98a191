"""A round's verdict and the run's summary: every broken invariant is named, per fault kind."""

from __future__ import annotations

from safekit.chaos.judge import OwnerEpisode, RfsStop
from safekit.chaos.report import RoundResult, passed, summarise


def a_round(number: int, kind: str, **changes: object) -> RoundResult:
    result = RoundResult(number, kind, {"kind": kind}, "node1", "node2", acknowledged=100, recovered=True)
    result.recovery_s = 4.0
    result.longest_unavailability_s = 2.5
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def stop(node: str, seconds: float | None, killed: bool = False) -> RfsStop:
    return RfsStop(node, "primary", 0.0, "PRIM -> WAIT", seconds, killed)


def test_a_clean_round_passes() -> None:
    assert a_round(1, "power_cut_primary", rfs_stops=[stop("node2", 0.4)]).violations() == []


def test_each_broken_invariant_is_named() -> None:
    bad = a_round(
        2,
        "partition_witness_both",
        two_owner_s=7.5,
        owner_episodes=[OwnerEpisode(1.0, 8.5, ("node1", "node2"))],
        lost=list(range(2160)),
        recovered=False,
        rfs_stops=[stop("node2", 31.0, killed=True), stop("node1", 6.0)],
    )
    text = "\n".join(bad.violations())
    assert "two VIP owners seen by the client for 7.50 s" in text and "node1 + node2" in text
    assert "2160 acknowledged records lost" in text
    assert "not back to PRIM/SECOND" in text
    assert "node2: replication process stopped killed after the stop timeout" in text
    assert "node1: replication process stopped after 6.0 s" in text


def test_a_stop_never_logged_is_late_unless_the_node_lost_power() -> None:
    assert a_round(3, "rfs_kill_primary", rfs_stops=[stop("node1", None)]).violations()
    powered_off = a_round(4, "power_cut_primary", rfs_stops=[stop("node1", None)], rebooted=["node1"])
    assert powered_off.violations() == []


def test_the_summary_sums_by_kind_and_lists_the_failed_rounds() -> None:
    rounds = [
        a_round(1, "power_cut_primary"),
        a_round(2, "power_cut_primary", longest_unavailability_s=3.5, recovery_s=9.0),
        a_round(3, "partition_witness_both", lost=[5, 6], two_owner_s=1.25, recovered=False, recovery_s=None),
    ]
    summary = summarise(rounds)
    power = summary["by_kind"]["power_cut_primary"]
    assert (power["rounds"], power["acknowledged"], power["lost"]) == (2, 200, 0)
    assert power["longest_unavailability_s"] == 3.5 and power["recovery_max_s"] == 9.0
    split = summary["by_kind"]["partition_witness_both"]
    assert (split["lost"], split["two_owner_s"], split["not_recovered"]) == (2, 1.25, 1)
    totals = summary["totals"]
    assert totals["lost"] == 2 and totals["rounds_not_recovered"] == [3] and totals["rounds_failed"] == [3]
    assert not passed(rounds)
    assert passed(rounds[:2])
    assert not passed([])
    assert rounds[2].to_json()["lost"] == 2 and rounds[2].to_json()["violations"]


def test_lost_postgres_commits_are_a_violation_and_are_summed_by_kind() -> None:
    clean = a_round(1, "power_cut_primary", pg_acknowledged=300, pg_longest_unavailability_s=4.5)
    bad = a_round(2, "power_cut_primary", pg_acknowledged=200, pg_lost=[17, 18, 19])
    other = a_round(3, "lan_cut", pg_acknowledged=50, pg_longest_unavailability_s=7.25)
    assert clean.violations() == []
    assert bad.violations() == ["3 acknowledged PostgreSQL commits lost (first: [17, 18, 19])"]
    summary = summarise([clean, bad, other])
    power = summary["by_kind"]["power_cut_primary"]
    assert (power["pg_acknowledged"], power["pg_lost"], power["pg_longest_unavailability_s"]) == (500, 3, 4.5)
    assert summary["by_kind"]["lan_cut"]["pg_longest_unavailability_s"] == 7.25
    totals = summary["totals"]
    assert (totals["pg_acknowledged"], totals["pg_lost"]) == (550, 3)
    assert totals["pg_longest_unavailability_s"] == 7.25 and totals["longest_unavailability_s"] == 2.5
    assert totals["rounds_failed"] == [2]
    out = bad.to_json()
    assert (out["pg_acknowledged"], out["pg_lost"], out["pg_lost_first"]) == (200, 3, [17, 18, 19])
    assert out["pg_longest_unavailability_s"] == 0.0 and out["violations"]


def test_a_run_without_postgres_has_zero_commits_and_no_violation_for_it() -> None:
    summary = summarise([a_round(1, "lan_cut")])
    assert summary["totals"]["pg_acknowledged"] == 0 and summary["totals"]["pg_lost"] == 0
    assert summary["by_kind"]["lan_cut"]["pg_lost"] == 0
    assert passed([a_round(1, "lan_cut")])
