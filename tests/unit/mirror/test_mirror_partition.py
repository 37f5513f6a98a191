"""Partition safety (issue 13, ADR 0010): every heartbeat path between the nodes cut while the
split-brain witness is reachable from both sides, from one, or from neither.

Deterministic scenarios in the two-node simulator (no script failures), one per witness kind:
the arbitrating witness never lets two nodes serve; a ping witness does so only while the VIP's
owner stays visible to the secondary (its ARP probe), which is the documented limit of that kind.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from mirror_sim import NODES, Cluster, Op, persisted_for, play

from safekit.mirror import ModuleState, WaitCause
from safekit.mirror.machine import may_acknowledge_alone

SETTLE = 25.0  # both nodes started, n1 primary (last primary), n2 secondary in sync


def started(kind: str, seed: int) -> Cluster:
    cluster = Cluster(
        witness=True, seed=seed, persisted=persisted_for("synced"), fail_rate=0.0, witness_kind=kind
    )
    play(cluster, [Op(SETTLE, "heal")])
    states = {n: cluster.nodes[n].state.module_state for n in NODES}
    assert states == {"n1": ModuleState.PRIM, "n2": ModuleState.SECOND}, cluster.dump()
    return cluster


@pytest.mark.parametrize("seed", range(8))
def test_arbitrator_split_with_the_witness_on_both_sides_keeps_one_primary(seed: int) -> None:
    cluster = started("arbitrator", seed)
    cluster.cut(None)  # the arbitrator still answers both nodes
    cluster.advance(20.0)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    assert n1.state.module_state is ModuleState.ALONE and n1.vip
    assert n2.state.module_state is ModuleState.WAIT and not n2.vip
    assert n2.state.wait_cause is WaitCause.STALE, n2.state.reason
    trace = "\n".join(cluster.trace)
    # n2 learns that n1 went on without it: n1 renews after the loss, or the arbitrator refuses
    # n2's older generation (n1's renewal carried its new one)
    assert "the arbitrator knows a copy at" in trace
    # n2 never takes over with its copy, even once n1 is gone (n1 acknowledged writes alone)
    assert n2.state.peer_generation_seen > n2.state.generation
    cluster.heal()
    cluster.advance(20.0)
    assert cluster.violations == []
    assert {n: cluster.nodes[n].state.module_state for n in NODES} == {
        "n1": ModuleState.PRIM,
        "n2": ModuleState.SECOND,
    }, cluster.dump()


@pytest.mark.parametrize("seed", range(8))
def test_arbitrator_reached_by_the_secondary_only_fails_over_once_the_primary_fenced(seed: int) -> None:
    cluster = started("arbitrator", seed)
    cluster.cut("n2")  # the primary lost the heartbeats and the arbitrator: as good as dead to n2
    cluster.advance(20.0)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    assert cluster.nodes["n2"].state.module_state is ModuleState.ALONE and cluster.nodes["n2"].vip
    assert cluster.nodes["n1"].state.module_state is ModuleState.WAIT and not cluster.nodes["n1"].vip


@pytest.mark.parametrize("seed", range(8))
def test_arbitrator_reached_by_neither_side_nobody_serves(seed: int) -> None:
    cluster = started("arbitrator", seed)
    cluster.set_witness(frozenset())
    cluster.cut(None)
    cluster.advance(20.0)
    assert cluster.violations == []
    assert not cluster.nodes["n1"].vip and not cluster.nodes["n2"].vip
    assert cluster.serving() == []


@pytest.mark.parametrize("seed", range(8))
def test_ping_witness_on_both_sides_with_the_vip_visible_keeps_one_primary(seed: int) -> None:
    cluster = started("ping_vip", seed)
    cluster.cut(None)
    cluster.advance(20.0)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    assert cluster.serving() == ["n1"]
    assert n2.state.wait_cause is WaitCause.STALE, n2.state.reason
    assert "virtual IP is still answered by" in "\n".join(cluster.trace)
    # n2 announces that its copy no longer follows: a primary that hears it again (its daemon was
    # frozen, not cut off) may acknowledge alone at once instead of holding its writes
    announced = n2.state.status("n2")
    assert not announced.uptodate
    assert announced.rank < n2.state.peer_rank_seen
    allowed, why = may_acknowledge_alone(n1.cfg, replace(n1.state, peer=announced))
    assert allowed, why
    assert "reports its copy not up to date" in why
    cluster.heal()
    cluster.advance(20.0)
    assert {n: cluster.nodes[n].state.module_state for n in NODES} == {
        "n1": ModuleState.PRIM,
        "n2": ModuleState.SECOND,
    }, cluster.dump()


def test_ping_witness_on_both_sides_without_the_vip_visible_gives_two_primaries() -> None:
    """The documented limit of the ping witness (docs/mirror.md): every frame between the nodes
    lost while both still reach the witness. The arbitrator exists for this case."""
    cluster = Cluster(
        witness=True, seed=3, persisted=persisted_for("synced"), fail_rate=0.0, witness_kind="ping_vip"
    )
    cluster.vip_visible = False
    play(cluster, [Op(SETTLE, "heal")])
    cluster.cut(None)
    cluster.advance(20.0)
    assert any("both nodes" in v for v in cluster.violations)


@pytest.mark.parametrize("seed", range(12))
def test_arbitrator_a_primary_that_lost_its_lease_earlier_fences_before_the_takeover(seed: int) -> None:
    """n1 cannot reach the arbitrator for a while (its lease runs out; heartbeats still work, so
    it goes on serving), then the heartbeats are cut too: n2 gets the lease at once, and waits
    detection_skew so that n1, which notices the loss up to that much later, has fenced."""
    cluster = started("arbitrator", seed)
    cluster.set_witness(frozenset({"n2"}))
    cluster.advance(10.0)
    assert cluster.serving() == ["n1"]
    cluster.cut(None)
    cluster.advance(20.0)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    assert cluster.serving() == ["n2"]


def test_ping_witness_on_both_sides_cannot_stop_two_nodes_starting_together_while_cut() -> None:
    """Documented limit: neither node serves when the split begins and both start at once; each
    probes the VIP before the other holds it. The arbitrator grants one lease: one primary."""
    for kind, two_primaries in (("ping_vip", True), ("arbitrator", False)):
        cluster = Cluster(
            witness=True, seed=7, persisted=persisted_for("synced"), fail_rate=0.0, witness_kind=kind
        )
        play(cluster, [Op(0.0, "cut", "")])
        assert any("both nodes" in v for v in cluster.violations) is two_primaries, (kind, cluster.dump())


@pytest.mark.parametrize("seed", range(8))
def test_arbitrator_a_primary_that_went_on_alone_then_lost_the_witness_loses_no_write(seed: int) -> None:
    """The hole the fault-injection suite found: n1 goes on alone (the arbitrator granted its new
    generation, so it acknowledges writes alone), then loses the arbitrator too and fences when
    its lease runs out. n2, which never heard of the new generation, must not take over with its
    older copy: the arbitrator refuses it (outdated). Nobody serves: availability is lost, no data."""
    cluster = started("arbitrator", seed)
    cluster.cut(None)
    cluster.advance(8.0)
    acked = cluster.acked_alone
    assert acked is not None and acked[1] == "n1", "n1 never acknowledged writes alone"
    cluster.set_witness(frozenset({"n2"}))
    cluster.advance(20.0)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    assert cluster.serving() == []
    cluster.heal()
    cluster.set_witness(frozenset(NODES))
    cluster.advance(30.0)
    assert cluster.violations == []
    assert cluster.nodes["n1"].state.module_state in (ModuleState.ALONE, ModuleState.PRIM), cluster.dump()


@pytest.mark.parametrize("seed", range(40))
def test_arbitrator_a_candidate_holding_the_lease_is_not_taken_for_a_serving_peer(seed: int) -> None:
    """Found by the fault-injection suite (partition, witness reached by neither, then healed): a
    node that does not serve may hold the lease while it waits; the other side must not conclude
    that it serves and mark its own copy stale - both would then wait for ever."""
    cluster = started("arbitrator", seed)
    cluster.set_witness(frozenset())
    cluster.cut(None)
    cluster.advance(8.0)
    assert cluster.serving() == []
    cluster.set_witness(frozenset(NODES))  # the witness returns just before the heartbeats
    cluster.advance(0.8)
    cluster.heal()
    cluster.advance(40.0)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    states = sorted(cluster.nodes[n].state.module_state for n in NODES)
    assert states == sorted([ModuleState.PRIM, ModuleState.SECOND]), cluster.dump()
