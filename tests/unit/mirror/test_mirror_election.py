"""The election and witness rules on their own."""

from __future__ import annotations

import pytest
from mirror_driver import Driver, peer_status, record

from safekit.mirror import CommandKind, Intent, ModuleState, NodeStatus, Readiness, Role, next_deadline
from safekit.mirror.election import conflict_winner, elect, prim_refusal
from safekit.mirror.states import ReplicaRank
from safekit.mirror.witness import (
    WitnessMode,
    WitnessRules,
    WitnessView,
    fence_deadline,
    may_keep_serving,
    may_take_over,
)

PING = WitnessRules(WitnessMode.PING, bound=4.0, skew=2.0, lease=10.0)


def cand(node: str, gen: int = 1, uptodate: bool = True, **kw: object) -> NodeStatus:
    base: dict[str, object] = {
        "node": node,
        "state": ModuleState.WAIT,
        "readiness": Readiness.TRANSIENT,
        "role": Role.CANDIDATE,
        "generation": gen,
        "uptodate": uptodate,
    }
    base.update(kw)
    return NodeStatus(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "defaultprim", "winner", "words"),
    [
        (cand("n1"), cand("n2"), "alone", "n1", "sorts first"),
        (cand("n1"), cand("n2"), "n2", "n2", "defaultprim"),
        (cand("n1", last_primary="n2"), cand("n2", last_primary="n2"), "lastprim", "n2", "last primary"),
        (cand("n1", last_primary="n1"), cand("n2", last_primary="n2"), "lastprim", "n1", "sorts first"),
        (cand("n1", gen=1), cand("n2", gen=2), "n1", "n2", "older"),
        (cand("n1", uptodate=False), cand("n2"), "n1", "n2", "not up to date"),
        (cand("n1", uptodate=False), cand("n2", uptodate=False), "alone", None, "no node may be primary"),
        (
            cand("n1", gen=0, uptodate=False, intent=Intent.PRIM),
            cand("n2", gen=0, uptodate=False),
            "n2",
            "n1",
            "",
        ),
        (
            cand("n1", gen=1, uptodate=False, intent=Intent.PRIMFORCE),
            cand("n2", gen=5),
            "n2",
            "n1",
            "primforce",
        ),
        (cand("n1", intent=Intent.PRIM), cand("n2"), "n2", "n1", "operator ran prim"),
        (cand("n1", intent=Intent.SECOND), cand("n2"), "n1", "n2", "asked to be secondary"),
        (cand("n1", role=Role.NONE), cand("n2"), "n1", "n2", "does not compete"),
    ],
)
def test_elect(a: NodeStatus, b: NodeStatus, defaultprim: str, winner: str | None, words: str) -> None:
    v = elect(a, b, defaultprim)
    assert v.winner == winner
    assert words in v.reason
    assert elect(b, a, defaultprim) == v  # both nodes reach the same verdict


def test_conflict_follows_the_preference_not_the_generation() -> None:
    """A healed split: both copies took writes; the taker's generation is higher by construction
    (two up, ADR 0034), which says nothing about whose writes to keep."""
    a = cand("n1", gen=4, role=Role.PRIMARY)
    b = cand("n2", gen=5, role=Role.PRIMARY)
    assert conflict_winner(a, b, "n1").winner == "n1"
    assert "defaultprim=n1" in conflict_winner(a, b, "n1").reason
    assert conflict_winner(a, b, "n2").winner == "n2"
    assert conflict_winner(a, b, "alone").winner == "n1"  # no preference: the name
    assert conflict_winner(b, a, "alone") == conflict_winner(a, b, "alone")  # the same on both nodes


def test_conflict_keeps_the_primary_whose_copy_holds_every_acknowledged_write() -> None:
    """ADR 0072, the CI failure of 2026-12-06: n1, primary at 4 with n2 in sync, was cut; it
    counted up to 6 but acknowledged nothing alone (confirmed 4); n2 took over at 7. Whatever the
    preference, n1 steps down: n2's copy holds everything n1 acknowledged."""
    a = cand("n1", gen=6, confirmed=4, role=Role.PRIMARY, shared=4)
    b = cand("n2", gen=7, role=Role.PRIMARY, shared=4)
    for preference in ("n1", "n2", "alone"):
        v = conflict_winner(a, b, preference)
        assert v.winner == "n2"
        assert "n1 acknowledged no write since the copies were last the same" in v.reason
        assert conflict_winner(b, a, preference) == v  # the same verdict on both nodes


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (  # both acknowledged writes since the split: a true conflict
            cand("n1", gen=6, role=Role.PRIMARY, shared=4),
            cand("n2", gen=7, role=Role.PRIMARY, shared=4),
            "both wrote",
        ),
        (  # neither did: either copy holds everything
            cand("n1", gen=6, confirmed=4, role=Role.PRIMARY, shared=4),
            cand("n2", gen=7, confirmed=4, role=Role.PRIMARY, shared=4),
            "neither wrote",
        ),
        (  # an older peer does not announce where the copies were last the same
            cand("n1", gen=6, confirmed=4, role=Role.PRIMARY),
            cand("n2", gen=7, role=Role.PRIMARY),
            "not announced",
        ),
    ],
)
def test_conflict_falls_back_to_the_preference(a: NodeStatus, b: NodeStatus, why: str) -> None:
    assert conflict_winner(a, b, "n1").winner == "n1", why
    assert conflict_winner(a, b, "n2").winner == "n2", why
    assert "acknowledged no write" not in conflict_winner(a, b, "n1").reason


def test_prim_refusal() -> None:
    assert prim_refusal(uptodate=False, rank=ReplicaRank(0, 0), peer_seen=ReplicaRank(0, 0)) is None
    assert prim_refusal(uptodate=True, rank=ReplicaRank(3, 3), peer_seen=ReplicaRank(3, 3)) is None
    assert "older" in (prim_refusal(uptodate=True, rank=ReplicaRank(2, 2), peer_seen=ReplicaRank(3, 3)) or "")
    assert "did not finish" in (
        prim_refusal(uptodate=False, rank=ReplicaRank(2, 2), peer_seen=ReplicaRank(2, 2)) or ""
    )
    # A higher number that no write was acknowledged at does not outrank the peer's acknowledged
    # writes (ADR 0045).
    why = prim_refusal(uptodate=True, rank=ReplicaRank(3, 6), peer_seen=ReplicaRank(5, 5))
    assert "lacks writes acknowledged at generation 5" in (why or "")


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        # n1 began an epoch (5, then claimed 6) on a view that was already stale and never
        # acknowledged a write at it; n2 took over at 5 and acknowledged writes alone.
        (cand("n1", gen=6, confirmed=3), cand("n2", gen=5), "n2"),
        # Both claimed without acknowledging anything: the higher number is the newer epoch.
        (cand("n1", gen=6, confirmed=5), cand("n2", gen=7, confirmed=5), "n2"),
        # Confirmed at the same generation, the same number: the usual tie-break (name).
        (cand("n1", gen=5), cand("n2", gen=5), "n1"),
        # A peer that does not announce its confirmed generation (older version): its number.
        (cand("n1", gen=4, confirmed=None), cand("n2", gen=5, confirmed=3), "n1"),
    ],
)
def test_the_copy_with_the_newest_acknowledged_writes_is_eligible(
    a: NodeStatus, b: NodeStatus, winner: str
) -> None:
    for first, second in ((a, b), (b, a)):  # the same verdict on both nodes
        assert elect(first, second, "alone").winner == winner


def test_witness_lease_and_streak() -> None:
    v = WitnessView().record(True, 10.0, 4.0)
    assert fence_deadline(PING, v, absent_since=12.0) == 16.0
    assert may_keep_serving(PING, v, 15.9, 12.0)
    assert not may_keep_serving(PING, v, 16.0, 12.0)
    v = v.record(True, 13.0, 4.0)
    assert v.reachable_since == 10.0
    assert not may_take_over(PING, v, 13.0, absent_since=12.0)
    v = v.record(True, 16.0, 4.0).record(True, 18.0, 4.0)
    assert may_take_over(PING, v, 18.0, absent_since=12.0)
    gap = v.record(True, 23.0, 4.0)  # more than the bound without an answer: a new streak
    assert gap.reachable_since == 23.0
    bad = v.record(False, 19.0, 4.0)
    assert bad.refused_since(12.0)
    assert not may_keep_serving(PING, bad, 19.0, 12.0)
    assert not bad.refused_since(20.0)  # answers older than the peer loss do not count


def test_the_winner_waits_until_the_peer_announces_the_same_verdict() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.START)
    d.settle()
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, verdict=None))
    assert d.state.running is None
    assert "waiting for n2 to agree" in d.state.reason
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, verdict="n2"))
    assert d.state.running is None  # a peer that disagrees never lets this node start
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, verdict="n1"))
    # The agreement may answer a status n1 announced before it started (STOP: "n2 may be
    # primary"), so n1 waits until n2's answer to its current status must have arrived.
    assert d.state.running is None
    assert "may predate n1 competing again" in d.state.reason
    settled = d.cfg.peer_timeout + d.cfg.detection_skew  # after the start command at t=0
    assert next_deadline(d.cfg, d.state) == settled
    d.tick(settled - d.now)
    assert d.shown == (ModuleState.ALONE, Readiness.TRANSIENT)


def test_the_loser_waits_for_the_winner_and_then_becomes_its_secondary() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.SECOND)
    d.settle()
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT))
    assert d.state.running is None
    assert "n2 should be primary" in d.state.reason
    d.peer(peer_status(ModuleState.ALONE, Readiness.TRANSIENT))
    assert d.shown == (ModuleState.SECOND, Readiness.TRANSIENT)
