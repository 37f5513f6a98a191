"""Regressions: counterexamples found by the property tests, replayed deterministically.

Each simulator replay is the falsifying example as hypothesis reported it (the simulator is
seeded, so the run is the same every time); a `Driver` test next to it pins the rule that fixed
it on one machine, independent of the simulator's timing.
"""

from __future__ import annotations

from mirror_driver import Driver, peer_status, record
from mirror_sim import Cluster, Op, persisted_for, play

from safekit.mirror import (
    AcquireVip,
    CheckerAction,
    CommandKind,
    ModuleState,
    Readiness,
    Role,
    Script,
    next_deadline,
)

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
