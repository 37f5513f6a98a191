"""When the primary's replication may acknowledge writes without its secondary (ADR 0010, item 5).

Only once the secondary cannot take over with its older copy: it says so itself, or it is lost
and the witness rules it out. Never on the loss alone when a witness is configured: a primary cut
from its peer and from the witness would acknowledge writes the peer then takes over without.
"""

from __future__ import annotations

from mirror_driver import Driver, logs, own_above, peer_status, prim, second, settings

from safekit.mirror import ModuleState, Readiness, Role, WitnessMode, WitnessResult, may_acknowledge_alone

ARBITRATOR = settings(witness_configured=True, witness_mode=WitnessMode.ARBITRATOR, lease_duration=3.0)
PING = settings(witness_configured=True)


def lost(d: Driver, dt: float = 1.0) -> int:
    d.later(dt)
    d.lost()
    return d.state.generation


def allowed(d: Driver) -> bool:
    return may_acknowledge_alone(d.cfg, d.state)[0]


def test_a_peer_that_says_its_copy_is_stale_releases_the_writes() -> None:
    d = prim(PING)
    assert not allowed(d)  # the peer still claims an up-to-date copy
    d.peer(peer_status(ModuleState.SECOND, generation=d.state.generation, uptodate=False))
    ok, why = may_acknowledge_alone(d.cfg, d.state)
    assert ok and "not up to date" in why


def test_without_a_witness_the_loss_is_enough() -> None:
    d = prim(settings())
    lost(d)
    assert allowed(d)


def test_ping_witness_only_an_answer_to_a_ping_sent_after_the_loss() -> None:
    d = prim(PING)
    d.feed(WitnessResult(True, d.later(0.5)))  # before the loss
    lost(d)
    assert not allowed(d)
    d.feed(WitnessResult(False, d.later(0.1), sent_at=d.now - 0.05))
    assert not allowed(d)
    d.feed(WitnessResult(True, d.later(0.1), sent_at=d.now - 0.05))
    ok, why = may_acknowledge_alone(d.cfg, d.state)
    assert ok and "witness answered after the loss" in why


def test_arbitrator_only_a_lease_granted_to_the_new_generation_after_the_loss() -> None:
    d = prim(ARBITRATOR)
    old = d.state.generation
    d.feed(WitnessResult(True, d.later(0.2), sent_at=d.now - 0.01, generation=old))
    new = lost(d, 0.2)
    assert new == own_above(old)
    assert not allowed(d)  # the lease it holds was granted to the old generation
    d.feed(WitnessResult(True, d.later(0.1), sent_at=d.now - 0.01, generation=old))
    assert not allowed(d)  # a late answer to a request that still carried the old one
    d.feed(WitnessResult(True, d.later(0.1), sent_at=d.now - 0.01, generation=new))
    ok, why = may_acknowledge_alone(d.cfg, d.state)
    assert ok and f"generation {new}" in why
    # and no longer once the lease has run out without renewal (it fences then anyway)
    d.tick(3.5)
    assert not allowed(d)


def test_arbitrator_no_answer_keeps_the_writes_held_until_the_primary_fences() -> None:
    d = prim(ARBITRATOR)
    d.feed(WitnessResult(True, d.later(0.2), sent_at=d.now, generation=d.state.generation))
    lost(d, 0.2)
    for _ in range(5):
        d.feed(WitnessResult(False, d.later(0.2), sent_at=d.now))
        assert not allowed(d)
    d.tick(3.0)
    assert not d.state.vip_held  # the lease ran out: fenced, never acknowledged alone


def test_arbitrator_outdated_copy_is_stale_and_never_takes_over() -> None:
    d = second(ARBITRATOR)
    lost(d)
    newer = d.state.generation + 5
    d.feed(WitnessResult(False, d.later(0.2), sent_at=d.now, other="n2", known_generation=newer))
    assert d.state.peer_generation_seen == newer
    d.settle()
    d.tick(10.0)
    assert not d.state.vip_held and d.state.module_state is ModuleState.WAIT


def test_a_fenced_primary_fails_the_writes_it_holds_before_stop_prim_runs() -> None:
    """Held fsync calls would keep the application stuck in them while stop_prim tries to stop it
    (8 s in the fault-injection suite): the fence releases them with an error, never an ack."""
    d = prim(ARBITRATOR)
    d.feed(WitnessResult(True, d.later(0.2), sent_at=d.now, generation=d.state.generation))
    lost(d, 0.2)
    acts = d.tick(3.5)
    kinds = [type(a).__name__ for a in acts]
    assert "FenceReplication" in kinds and "ReleaseVip" in kinds
    assert kinds.index("FenceReplication") < kinds.index("RunScript")  # before stop_prim
    assert d.tick(0.5) == () or "FenceReplication" not in [type(a).__name__ for a in d.actions]


def test_arbitrator_a_peer_holding_the_lease_is_not_proof_that_it_serves() -> None:
    """Found by the fault-injection suite: after a split in which neither side reached the
    arbitrator, the old secondary got the lease as a candidate (not serving) just before the
    heartbeats returned; the old primary took the refusal for "the peer goes on alone", marked its
    own copy stale, and both waited for ever. Only an outdated refusal (the arbitrator granted a
    newer generation) proves that the peer went on alone."""
    d = prim(ARBITRATOR)
    d.feed(WitnessResult(True, d.later(0.2), sent_at=d.now, generation=d.state.generation))
    lost(d, 0.2)
    d.tick(3.5)  # the lease ran out: fenced, WAIT
    d.settle()
    seen = d.state.peer_generation_seen
    d.feed(WitnessResult(False, d.later(1.0), sent_at=d.now - 0.01, other="n2", known_generation=seen))
    assert d.state.peer_generation_seen == seen, d.state.reason
    assert "renews" not in d.state.reason


def test_a_primary_with_its_secondary_starts_above_an_older_arbitrator_record() -> None:
    """A module reinstalled under the same name starts at generation 0 while the arbitrator still
    knows the old install's generation: the primary moves above it, or no lease would ever be
    granted to this copy (its secondary could never take over)."""
    d = prim(ARBITRATOR)
    old = d.state.generation
    d.feed(WitnessResult(False, d.later(0.2), sent_at=d.now, other="n1 (old)", known_generation=old + 6))
    assert d.state.generation == own_above(old + 6)
    assert d.shown == (ModuleState.PRIM, d.state.readiness)
    assert d.state.vip_held


def test_arbitrator_the_new_number_granted_confirms_it_the_confirmed_rank_granted_acknowledges() -> None:
    """ADR 0046: a grant of the claimed number lets the primary confirm it (no other copy can
    then be granted at that number or below), but writes are acknowledged alone only once the
    arbitrator recorded the confirmation: before that, a copy at the same number that holds none
    of these writes (a stale epoch on the other side) would still rank as high at the arbitrator."""
    d = prim(ARBITRATOR)
    before = d.state.rank
    new = lost(d, 0.2)
    assert d.state.rank == (before.confirmed, new)  # claimed, unconfirmed
    acts = d.feed(
        WitnessResult(True, d.later(0.1), sent_at=d.now - 0.01, generation=new, confirmed=before.confirmed)
    )
    assert d.state.rank == (new, new)  # confirmed by the grant of its number...
    assert not allowed(d)  # ...but the arbitrator still records the unconfirmed rank
    assert any(type(a).__name__ == "QueryWitness" for a in acts)  # so it asks again at once
    d.feed(WitnessResult(True, d.later(0.1), sent_at=d.now - 0.01, generation=new, confirmed=new))
    ok, why = may_acknowledge_alone(d.cfg, d.state)
    assert ok and "confirmed" in why


def test_arbitrator_a_known_rank_above_this_copy_at_the_same_number_makes_it_stale() -> None:
    """The hole ADR 0046 closes: the arbitrator knows a copy confirmed at 5 while this node, a
    stale epoch at the same number, holds writes up to 3 only: its copy is older, although the
    numbers are equal."""
    d = second(ARBITRATOR)
    lost(d)
    gen = d.state.generation
    d.feed(
        WitnessResult(
            False, d.later(0.2), sent_at=d.now, other="n2", known_generation=gen + 1, known_confirmed=gen + 1
        )
    )
    assert d.state.peer_rank_seen == (gen + 1, gen + 1)
    d.settle()
    d.tick(10.0)
    assert not d.state.vip_held and d.state.module_state is ModuleState.WAIT


def test_each_node_creates_numbers_of_its_own_residue() -> None:
    """Two histories never carry the same number: n1 (first by name) creates even numbers, n2 odd
    ones, whatever each knew when it picked."""
    d = prim(PING)
    for _ in range(3):
        old = d.state.generation
        d.later(0.5)
        d.replica(False)
        assert d.state.generation in (old + 1, old + 2) and d.state.generation % 2 == 0
        d.peer(peer_status(ModuleState.SECOND, generation=d.state.generation))


def test_a_secondary_says_its_copy_is_stale_to_a_primary_that_went_on_while_it_stops() -> None:
    """Chaos round (lan_cut): a checker stopped the primary (its VIP's interface down) just as its
    replication to the secondary was lost; it counted up its generation, and its application's
    stop waited on fsync for the stop timeout: the secondary, hearing it in the newer generation
    but not serving (WAIT, stopping its primary role), still announced an up-to-date copy."""
    d = second()
    synced = d.state.generation
    stopping = peer_status(
        ModuleState.WAIT, Readiness.TRANSIENT, role=Role.PRIMARY, generation=own_above(synced, "n2")
    )
    d.peer(stopping)
    assert not d.state.uptodate
    assert not d.state.status("n1").uptodate
    assert "not up to date" in logs(d.actions)
    # the same peer merely starting the primary role at the generation this copy has: nothing new
    d2 = second()
    d2.peer(
        peer_status(ModuleState.WAIT, Readiness.TRANSIENT, role=Role.PRIMARY, generation=d2.state.generation)
    )
    assert d2.state.uptodate
