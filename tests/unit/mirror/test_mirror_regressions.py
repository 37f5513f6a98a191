"""Regressions: counterexamples found by the property tests, replayed deterministically.

Each simulator replay is the falsifying example as hypothesis reported it (the simulator is
seeded, so the run is the same every time); a `Driver` test next to it pins the rule that fixed
it on one machine, independent of the simulator's timing.
"""

from __future__ import annotations

import pytest
from mirror_driver import Driver, own_above, peer_status, prim, record, second, settings
from mirror_sim import Cluster, Op, persisted_for, play

from safekit.mirror import (
    AcquireVip,
    CheckerAction,
    CommandKind,
    ModuleState,
    Readiness,
    Role,
    Script,
    may_acknowledge_alone,
    next_deadline,
)
from safekit.mirror.states import WaitCause

# --- a consent heard before this node started competing again ----------------------------------
#
# n2 was PRIM; a checker stopstart made it a candidate, and n1 (SECOND) announced "n2 should be
# primary". n2's prestart timed out (STOP: it no longer competes) and an operator started n2
# again at once. n1 heard the STOP and took over; n2, its prestart done, still held n1's old
# "n2 should be primary" - sent before n1 had heard the STOP - and started the primary role as
# well, although every heartbeat worked: ALONE/PRIM and two VIPs.


def test_replay_stale_consent_after_a_quick_restart_without_witness() -> None:
    sequence = [
        Op(2.5, "start", "n1"),
        Op(2.5, "start", "n1"),
        Op(10.5, "start", "n1"),
        Op(5.0, "heal"),
        Op(0.0, "cmd", "n1", CommandKind.RESTART),
        Op(2.4567873403417497, "start", "n1"),
        Op(11.0, "start", "n1"),
        Op(13.0, "start", "n1"),
        Op(12.0, "cmd", "n1", CommandKind.START),
        Op(24.0, "cmd", "n1", CommandKind.START),
        Op(7.077075420311812, "checker", "n1", CheckerAction.STOPSTART),
        Op(18.5, "checker", "n2", CheckerAction.STOPSTART),
        Op(2.5, "cmd", "n2", CommandKind.START),
    ]
    cluster = Cluster(witness=False, seed=11350847, persisted=persisted_for("n2_ahead"))
    play(cluster, sequence)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    assert not cluster.ever_cut  # heartbeats worked all along


# The same race across a split: n1's prestart failed (STOP), n2 heard it and went ALONE just as
# the LAN was cut; n1 restarted and, before membership declared n2 lost, acted on n2's old
# verdict "n1 should be primary". Only n1 reached the witness, so n2 kept the VIP until it
# declared n1 lost: two VIPs although the witness answers one side only.


def test_replay_stale_consent_at_a_split_with_witness() -> None:
    sequence = [Op(2.0, "cut", "n1"), Op(0.0, "start", "n1")]
    cluster = Cluster(witness=True, seed=1, persisted=persisted_for("synced"), failover=False)
    play(cluster, sequence)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()


def test_a_consent_heard_before_competing_again_does_not_start_the_primary_role() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.START)
    d.settle()
    # n2 competes and names n1 (it will say so once it has heard n1's candidacy).
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, verdict="n1"))
    assert d.state.running is None
    # n1 stops competing for a moment: its STOP is an invitation to n2 to take the role.
    d.cmd(CommandKind.STOP)
    d.settle()
    assert d.shown == (ModuleState.STOP, Readiness.NOT_READY)
    started_again = d.later(0.5)
    d.cmd(CommandKind.START)
    d.settle()
    # n2's "n1 should be primary" was heard before the restart: n2 may be taking the role now.
    assert d.state.running is None
    assert d.shown == (ModuleState.WAIT, Readiness.TRANSIENT)
    assert "may predate n1 competing again" in d.state.reason
    settled = started_again + d.cfg.peer_timeout + d.cfg.detection_skew
    assert next_deadline(d.cfg, d.state) == settled
    assert not any(isinstance(a, AcquireVip) for a in d.tick(1.0))
    # n2 took the role on n1's STOP: n1 follows it.
    acts = d.peer(peer_status(ModuleState.ALONE, Readiness.TRANSIENT, role=Role.PRIMARY))
    assert not any(isinstance(a, AcquireVip) for a in acts)
    assert d.running().script is Script.START_SECOND


def test_a_consent_that_stands_after_the_delay_starts_the_primary_role() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.START)
    d.settle()
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, verdict="n1"))
    at = next_deadline(d.cfg, d.state)
    assert at is not None and at > d.now
    d.tick(at - d.now)
    assert d.shown == (ModuleState.ALONE, Readiness.TRANSIENT)


def test_a_secondary_does_not_take_over_on_a_consent_older_than_its_own_withdrawal() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.SECOND)  # does not compete: n2 may be primary
    d.settle()
    d.peer(peer_status(ModuleState.ALONE, Readiness.TRANSIENT, generation=2))
    d.settle()
    d.replica(True, 2)
    assert d.shown == (ModuleState.SECOND, Readiness.READY)
    # The `second` request is fulfilled: n1 competes again from now on.
    withdrawn = d.state.handshake_not_before
    assert withdrawn is not None
    # n2 stops at once: its STOP lets n1 take over, but only once n2 has heard n1 compete.
    d.peer(peer_status(ModuleState.STOP, Readiness.NOT_READY, generation=2))
    assert d.state.running is None and d.shown == (ModuleState.SECOND, Readiness.READY)
    d.tick(withdrawn - d.now)
    assert d.running().script is Script.STOP_SECOND
    assert d.state.role is Role.PRIMARY


# --- two histories under one replica generation -------------------------------------------------
#
# Found by the lab (test_split_brain_only_the_side_that_reaches_the_witness_serves, CI of
# 2026-12-05): n1, the primary, was cut from everything. On the loss it counted its replica
# generation up to 6 ("the peer's copy is older") although it never acknowledged a write alone:
# the witness did not answer it. n2 took over with the witness and counted up from 5 to 6 too.
# Two different copies then carried generation 6. With the arbitrator, once n2 (which acknowledged
# writes alone at 6) was gone, n1's copy at "6" was not older than what the arbitrator had
# granted, so n1 got the lease and took over without n2's acknowledged writes.


def test_replay_an_isolated_primary_does_not_claim_the_generation_the_other_side_serves() -> None:
    sequence = [
        Op(20.0, "cut", "n2"),  # every LAN; the arbitrator is reachable from n2 only
        Op(20.0, "cmd", "n2", CommandKind.STOP),  # n2 served alone, then is gone
        Op(2.0, "witness", "n1"),  # n1 reaches the arbitrator again, never n2
    ]
    cluster = Cluster(witness=True, seed=7, persisted=persisted_for("synced"), witness_kind="arbitrator")
    play(cluster, sequence)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    assert cluster.acked_alone is not None and cluster.acked_alone[1] == "n2", cluster.dump()
    assert cluster.nodes["n1"].state.module_state is not ModuleState.ALONE, cluster.dump()


def test_a_primary_claims_one_generation_per_loss_until_it_may_go_on_alone() -> None:
    """The replication link lost first, then the peer: one claim, not two (the peer starts the
    primary role two up from what it knew, so one claim stays below it)."""
    cfg = settings(witness_configured=True)
    d = prim(cfg)
    before = d.state.generation
    d.replica(False)  # the link to the secondary broke while its heartbeats still came
    assert (d.state.generation, d.state.generation_unconfirmed) == (own_above(before), True)
    d.later(1.0)
    d.lost()  # then every heartbeat: the same claim
    assert (d.state.generation, d.state.generation_unconfirmed) == (own_above(before), True)
    d.witness(True, 0.2)  # the witness answers this side: it goes on alone at the claimed number
    assert may_acknowledge_alone(d.cfg, d.state)[0]
    assert not d.state.generation_unconfirmed


def test_a_peer_in_sync_at_the_claimed_generation_confirms_it() -> None:
    d = prim(settings(witness_configured=True))
    d.replica(False)
    gen = d.state.generation
    assert d.state.generation_unconfirmed
    d.peer(peer_status(ModuleState.SECOND, generation=gen, uptodate=True))
    assert not d.state.generation_unconfirmed


def test_a_secondary_takes_over_above_what_the_old_primary_may_have_claimed() -> None:
    d = second()  # in sync at generation 2 with the primary n2
    d.lost()
    d.settle()
    assert d.shown == (ModuleState.ALONE, Readiness.READY)
    # n2, cut off, may have counted up to 3 before it stopped serving: this copy is 4.
    assert d.state.generation == 4


# A hole found by the stricter check above, older than it (the generations before ADR 0034 lost
# the same way), closed by ADR 0045: both nodes start with a ping witness; the LAN is cut 3 s in
# and the witness answers n2 only. n1, acting on n2's consent heard before the cut, starts the
# primary role at 7.00 (generation 5) on a view that is already stale, loses the peer at 7.35 and
# fences (the witness does not answer it): it never acknowledged a write. n2, which never heard of
# generation 5, takes over at 13.36 two up from its 3 (5) and acknowledges writes alone. It is then
# stopped and the LAN heals. Before ADR 0045, n1 had claimed 6 at the loss, its 6 read as newer than
# n2's 5, n1 became primary and n2's acknowledged writes were gone. Now n1's copy ranks as confirmed
# at 3 only, below n2's 5: n1 waits for n2.


def test_replay_an_epoch_started_on_a_stale_view_does_not_outrank_the_taker() -> None:
    sequence = [
        Op(3.0, "cut", "n2"),
        Op(11.0, "cmd", "n2", CommandKind.STOP),
        Op(0.0, "heal"),
    ]
    cluster = Cluster(witness=True, seed=0, persisted=persisted_for("synced"))
    play(cluster, sequence)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    n1, n2 = cluster.nodes["n1"].state, cluster.nodes["n2"].state
    assert (n1.generation_confirmed, n2.generation_confirmed) == (3, 5)
    assert n1.generation >= n2.generation  # the numbers alone would not have ruled n1 out
    assert n1.module_state is ModuleState.WAIT and n1.wait_cause is WaitCause.STALE, n1.reason
    assert "lacks writes acknowledged at generation 5" in n1.reason


def test_a_new_epoch_holds_no_write_until_one_may_be_acknowledged_at_it() -> None:
    """Elected with the peer's copy up to date (a candidate): the epoch is a number only until the
    peer is in sync at it; a loss meanwhile claims nothing more (the peer is below it already)."""
    d = Driver(settings(witness_configured=True), record(generation=3))
    d.cmd(CommandKind.START)
    d.settle()
    d.peer(peer_status(ModuleState.WAIT, Readiness.TRANSIENT, generation=3, verdict="n1"))
    d.tick(20.0)
    assert d.state.running is not None and d.running().script is Script.START_PRIM, d.state.reason
    epoch = own_above(3 + 1)  # at least two up, of n1's residue: 6
    assert (d.state.generation, d.state.generation_confirmed) == (epoch, 3)
    assert not may_acknowledge_alone(d.cfg, d.state)[0]
    d.lost()
    assert (d.state.generation, d.state.generation_confirmed) == (epoch, 3)


def test_a_secondary_confirms_the_generation_its_copy_is_up_to_date_at() -> None:
    d = second(synced=False)
    assert d.state.generation_confirmed == 1
    d.replica(True, 2)
    assert (d.state.generation, d.state.generation_confirmed) == (2, 2)


def test_primforce_makes_the_new_epoch_the_reference_at_once() -> None:
    d = Driver(settings(), record(generation=3, uptodate=False))
    d.peer(peer_status(ModuleState.STOP, generation=5))
    d.cmd(CommandKind.PRIMFORCE)
    d.settle()
    d.tick(10.0)  # the handshake delay after it started competing
    d.settle()
    assert d.state.generation == own_above(5 + 1) == 8, d.state.reason
    assert d.state.generation_confirmed == 8


def test_replay_a_peer_at_the_same_number_from_another_history_confirms_nothing() -> None:
    """The arbitrator's variant: n1 starts the primary role at 5 on a stale view and fences when
    the lease runs out, unconfirmed (3, 5); n2 takes over at 5 with the lease, acknowledges writes
    alone (5, 5) and is stopped. After the heal n1 heard n2 "up to date at 5" while n1's stop_prim
    still ran (role primary): taking that for its secondary in sync confirmed n1's own, different
    5, and n1 became primary without n2's writes. Only this node's secondary, SECOND Ready at its
    generation, confirms it."""
    sequence = [
        Op(3.0, "cut", "n2"),
        Op(6.0, "cmd", "n2", CommandKind.STOP),
        Op(0.0, "heal"),
    ]
    cluster = Cluster(witness=True, seed=22, persisted=persisted_for("synced"), witness_kind="arbitrator")
    play(cluster, sequence)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    assert cluster.nodes["n1"].state.generation_confirmed == 3


# Found by a targeted scan of the arbitrator simulator (334 of 960 runs), fixed by ADR 0046: n1
# starts the primary role at 5 on a stale view and fences, unconfirmed; n2 takes over at 3 + 2 = 5
# as well with the lease, acknowledges writes alone, and is stopped; the arbitrator then answers
# n1 only. The arbitrator compared numbers: n1 asked with 5, not below the 5 it recorded (n2's),
# got the lease and took over without n2's writes. Now the arbitrator compares ranks (n1's
# (3, 5) is below n2's recorded (6, 6)), n2 acknowledges alone only once the arbitrator recorded
# its confirmation, and each node creates numbers of its own residue (two histories never share
# one).


def test_replay_the_arbitrator_grants_a_stale_epoch_at_the_takers_number() -> None:
    sequence = [
        Op(3.0, "cut", "n2"),
        Op(11.0, "cmd", "n2", CommandKind.STOP),
        Op(1.0, "witness", "n1"),
    ]
    cluster = Cluster(witness=True, seed=0, persisted=persisted_for("synced"), witness_kind="arbitrator")
    play(cluster, sequence)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()


@pytest.mark.parametrize("stop_after", [6.0, 11.0, 16.0])
@pytest.mark.parametrize("cut_at", [2.0, 3.0, 4.0])
def test_scan_a_stopped_taker_and_a_stale_epoch_that_reaches_the_arbitrator_alone(
    cut_at: float, stop_after: float
) -> None:
    """The family of the replay above, over seeds: the LAN is cut early, n2 takes over with the
    lease and is stopped, then only n1 reaches the arbitrator. Before ADR 0046 about a third of
    such runs lost n2's acknowledged writes (334 of 960 in the scan that found it)."""
    for seed in range(12):
        sequence = [
            Op(cut_at, "cut", "n2"),
            Op(stop_after, "cmd", "n2", CommandKind.STOP),
            Op(1.0, "witness", "n1"),
        ]
        cluster = Cluster(
            witness=True, seed=seed, persisted=persisted_for("synced"), witness_kind="arbitrator"
        )
        play(cluster, sequence)
        assert cluster.violations == [], (
            f"seed {seed}\n" + "\n".join(cluster.violations) + "\n" + cluster.dump()
        )
