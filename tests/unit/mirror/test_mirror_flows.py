"""Normal flows and the data-protection rules, one scenario at a time."""

from __future__ import annotations

import dataclasses

import pytest
from mirror_driver import (
    ME,
    PEER,
    Driver,
    alone,
    logs,
    of_type,
    own_above,
    peer_status,
    prim,
    record,
    second,
    settings,
    starting_primary,
)
from mirror_sim import Cluster

from safekit.mirror import (
    AcquireVip,
    ActionFailed,
    Announce,
    CheckerAction,
    CheckerVerdict,
    CommandKind,
    Intent,
    Log,
    MirrorSettings,
    ModuleState,
    Persist,
    PersistedRecord,
    QueryWitness,
    Readiness,
    ReleaseVip,
    ResourceUp,
    Role,
    RunScript,
    Script,
    ScriptAction,
    ScriptDone,
    ScriptOutcome,
    StartReplication,
    StopReplication,
    WaitCause,
    initial_state,
    next_deadline,
)

STOP, WAIT, ALONE, PRIM, SECOND = (
    ModuleState.STOP,
    ModuleState.WAIT,
    ModuleState.ALONE,
    ModuleState.PRIM,
    ModuleState.SECOND,
)
NR, TR, RD = Readiness.NOT_READY, Readiness.TRANSIENT, Readiness.READY
OK, FAILED, TIMED_OUT = ScriptOutcome.OK, ScriptOutcome.FAILED, ScriptOutcome.TIMED_OUT
WITNESS = {"witness_configured": True}


# --- normal flows ------------------------------------------------------------------------------


def test_start_without_peer_goes_alone_after_the_peer_timeout() -> None:
    d = Driver(persisted=record())
    d.cmd(CommandKind.START)
    assert d.running().argv() == ("STOP", "WAIT", "start")
    d.finish()
    assert d.shown == (WAIT, TR)
    assert next_deadline(d.cfg, d.state) == pytest.approx(0.1 + 5.0)
    d.tick(4.0)
    assert d.shown == (WAIT, TR)  # still looking for the peer
    acts = d.tick(1.5)
    # Persist (new generation) first, then replication, VIP, start_prim; Announce last.
    kinds = [type(a) for a in acts if not isinstance(a, Log)]
    assert kinds == [Persist, StartReplication, AcquireVip, RunScript, Announce]
    assert d.running().argv() == ("WAIT", "ALONE", "start")
    assert d.shown == (ALONE, TR)
    assert d.state.generation == 4  # at least two up from 1, even (n1): above an old primary's claim
    d.finish()
    assert d.shown == (ALONE, RD)


def test_start_with_a_primary_peer_becomes_second_then_ready_after_resync() -> None:
    d = second(synced=False)
    assert d.state.uptodate is False  # stale until the replication says otherwise
    assert of_type(d.history, StartReplication)[-1].role == "secondary"
    d.replica(True, 2)
    assert d.shown == (SECOND, RD)
    assert d.state.last_primary == PEER


def test_peer_lost_while_second_and_up_to_date_takes_over() -> None:
    d = second()
    d.lost()
    assert d.shown == (ALONE, TR)
    assert d.running().argv() == ("SECOND", "ALONE", "stopstart")
    d.finish()
    assert of_type(d.actions, StopReplication)
    assert of_type(d.actions, AcquireVip)
    assert d.running().script is Script.START_PRIM
    d.finish()
    assert d.shown == (ALONE, RD)
    assert d.state.generation == 4  # two up from the primary's 2 (see _count_up_alone)


def test_peer_returning_to_an_alone_node_makes_it_prim() -> None:
    d = alone()
    d.peer(peer_status(WAIT, TR, role=Role.CANDIDATE, generation=1))
    assert d.shown == (ALONE, RD)
    d.peer(peer_status(SECOND, TR, generation=1, uptodate=False))
    assert d.shown == (PRIM, RD)


def test_peer_lost_while_prim_goes_alone_with_a_new_generation() -> None:
    d = prim()
    gen = d.state.generation
    d.lost()
    assert d.shown == (ALONE, RD)
    assert d.state.generation == own_above(gen)
    assert of_type(d.actions, Persist)


def test_stop_runs_stop_prim_then_replication_stop_then_poststop() -> None:
    d = prim()
    d.cmd(CommandKind.STOP)
    d.settle()
    tail = [a for a in d.history if isinstance(a, ReleaseVip | RunScript | StopReplication)][-4:]
    assert [type(a) for a in tail] == [ReleaseVip, RunScript, StopReplication, RunScript]
    assert d.shown == (STOP, NR)


def test_swap_in_a_cluster() -> None:
    c = _started_pair()
    primary = c.serving()[0]
    c.command(primary, CommandKind.SWAP)
    c.advance(30)
    assert c.serving() == [n for n in ("n1", "n2") if n != primary]
    assert c.nodes[primary].state.module_state is SECOND
    assert c.violations == []


# --- rule 1: a stale node never becomes primary by itself --------------------------------------


def test_stale_second_does_not_take_over_when_the_peer_is_lost() -> None:
    d = second(synced=False)
    d.lost()
    assert d.running().argv() == ("SECOND", "WAIT", "stopwait")
    d.finish()
    assert d.shown == (WAIT, NR)
    assert d.state.wait_cause is WaitCause.STALE
    assert "rule 1" in d.state.reason
    assert not of_type(d.history, AcquireVip)


def test_a_node_with_an_older_generation_waits_even_if_flagged_up_to_date() -> None:
    d = Driver(persisted=record(generation=1))
    d.cmd(CommandKind.START)
    d.settle()
    d.peer(peer_status(STOP, NR, generation=4))
    assert d.shown == (WAIT, NR)
    assert "older" in d.state.reason
    d.lost()
    d.tick(10)
    assert d.shown == (WAIT, NR)


def test_prim_is_refused_on_a_stale_node_and_primforce_overrides() -> None:
    d = Driver(persisted=record(generation=3, uptodate=False))
    reply = d.cmd(CommandKind.PRIM)
    assert not reply.accepted
    assert "primforce" in reply.reason
    assert d.cmd(CommandKind.PRIMFORCE).accepted


def test_first_start_needs_prim_and_prim_works_on_a_fresh_replica() -> None:
    d = Driver()  # never synchronised: generation 0, rfs.uptodate false
    d.cmd(CommandKind.START)
    d.settle()
    d.tick(10)
    assert d.shown == (WAIT, NR)
    assert d.cmd(CommandKind.PRIM).accepted
    assert d.shown == (ALONE, TR)
    assert d.state.intent is Intent.AUTO  # consumed


# --- rule 2: witness ---------------------------------------------------------------------------


def test_primary_that_loses_heartbeats_and_witness_releases_the_vip_at_once() -> None:
    d = prim(settings(**WITNESS))
    d.lost()
    assert of_type(d.actions, QueryWitness)
    assert d.shown == (ALONE, RD)
    acts = d.witness(False, 0.2)
    kinds = [type(a) for a in acts if isinstance(a, ReleaseVip | RunScript)]
    assert kinds == [ReleaseVip, RunScript]
    assert d.running().argv() == ("ALONE", "WAIT", "stopwait")
    d.finish()
    assert d.shown == (WAIT, NR)
    assert d.state.wait_cause is WaitCause.WITNESS


def test_primary_without_witness_answer_fences_at_the_bound() -> None:
    d = prim(settings(**WITNESS))
    lost_at = d.now
    d.lost()
    assert next_deadline(d.cfg, d.state) == pytest.approx(lost_at + 4.0)
    d.tick(3.9)
    assert d.state.vip_held
    acts = d.tick(0.1)
    assert of_type(acts, ReleaseVip)
    assert "no witness answer" in logs(acts)


def test_primary_that_reaches_the_witness_keeps_serving_while_answers_come() -> None:
    d = prim(settings(**WITNESS))
    d.lost()
    for _ in range(10):
        d.witness(True, 1.0)
        assert d.state.vip_held
    d.tick(4.5)  # answers stop: the lease runs out
    assert not d.state.vip_held


def test_second_waits_for_the_guard_before_taking_over_with_a_witness() -> None:
    d = second(settings(**WITNESS))
    d.lost()
    lost_at = d.now
    d.witness(True, 0.0)
    for _ in range(5):
        d.witness(True, 1.0)
        assert d.shown == (SECOND, RD)
    d.witness(True, 1.0)
    assert d.now >= lost_at + 6.0
    assert d.shown == (ALONE, TR)


def test_second_that_cannot_reach_the_witness_waits_then_takes_over_when_it_returns() -> None:
    d = second(settings(**WITNESS))
    d.lost()
    d.witness(False)
    d.settle()
    assert d.shown == (WAIT, NR)
    assert d.state.wait_cause is WaitCause.WITNESS
    start = d.now
    while d.shown == (WAIT, NR):
        d.witness(True, 1.0)
    assert d.now - start >= 6.0
    assert d.shown == (ALONE, TR)


def test_fence_while_start_prim_runs_drops_the_vip_now_and_stops_after() -> None:
    d2 = starting_primary(settings(**WITNESS))
    assert d2.state.vip_held
    acts = d2.witness(False, 0.5)
    assert of_type(acts, ReleaseVip)
    assert d2.state.running is not None  # start_prim cannot be interrupted
    d2.finish()
    assert d2.running().argv() == ("ALONE", "WAIT", "stopwait")
    d2.finish()
    assert d2.shown == (WAIT, NR)


def test_start_with_witness_and_no_peer_needs_the_witness_for_the_guard() -> None:
    d = Driver(settings(**WITNESS), record())
    d.cmd(CommandKind.START)
    d.finish()
    d.tick(10)
    assert d.shown == (WAIT, TR)  # no answer yet: still waiting
    d.witness(False)
    assert d.shown == (WAIT, NR)
    assert "rule 2" in d.state.reason


# --- rule 3: never two primaries while heartbeats work -----------------------------------------


@pytest.mark.parametrize(
    ("defaultprim", "last", "expected"),
    [("n2", "n1", "n2"), ("lastprim", "n2", "n2"), ("alone", "n1", "n1"), ("alone", None, "n1")],
)
def test_simultaneous_start_is_decided_by_the_rules(
    defaultprim: str, last: str | None, expected: str
) -> None:
    rec = PersistedRecord(STOP, last, 1, True, 1)
    c = Cluster(
        witness=False, seed=3, defaultprim=defaultprim, fail_rate=0.0, persisted={"n1": rec, "n2": rec}
    )
    c.command("n1", CommandKind.START)
    c.command("n2", CommandKind.START)
    c.advance(20)
    assert c.serving() == [expected]
    assert c.violations == []


def test_both_primary_after_a_healed_split_the_loser_steps_down_and_resyncs() -> None:
    d = alone(settings(defaultprim="n2"))
    d.peer(peer_status(ALONE, generation=d.state.generation))
    assert d.shown == (SECOND, TR)
    assert d.state.uptodate is False
    assert "saved aside" in d.state.reason


def test_the_copies_last_shared_generation_is_kept_announced_as_primary_and_persisted() -> None:
    d = second()  # in sync with n2's ALONE at generation 2
    assert d.state.shared_generation == 2
    assert d.state.status(ME).shared is None  # a secondary does not announce it
    d.lost()
    d.tick(10.0)
    d.settle()
    assert d.state.module_state is ALONE and d.state.generation > 2
    assert d.state.shared_generation == 2  # the takeover starts after it
    assert d.state.status(ME).shared == 2
    assert initial_state(d.cfg, d.state.persisted()).shared_generation == 2


def test_both_primary_the_one_without_writes_since_the_split_steps_down_not_the_preferred() -> None:
    """ADR 0072: n1 took over from generation 2; n2, the preferred node (defaultprim), shows up
    as primary too but acknowledged nothing since the copies were last the same: n1 stays."""
    d = second(settings(defaultprim=PEER))
    d.lost()
    d.tick(10.0)
    d.settle()
    assert d.shown == (ALONE, RD)
    peer = dataclasses.replace(
        peer_status(ALONE, generation=3), confirmed=2, shared=2
    )  # counted up to 3, acknowledged up to 2
    d.peer(peer)
    assert d.shown == (ALONE, RD), d.state.reason
    assert "n2 acknowledged no write since the copies were last the same" in d.state.reason
    assert "n1 stays primary, n2 steps down" in d.state.reason


def test_failback_to_defaultprim_after_it_resynchronised() -> None:
    rec = PersistedRecord(STOP, "n1", 1, True, 1)
    c = Cluster(witness=False, seed=5, defaultprim="n2", fail_rate=0.0, persisted={"n1": rec, "n2": rec})
    c.command("n1", CommandKind.PRIM)
    c.advance(10)
    assert c.serving() == ["n1"]
    c.command("n2", CommandKind.START)
    c.advance(40)
    assert c.serving() == ["n2"]
    assert c.nodes["n1"].state.module_state is SECOND
    assert c.violations == []


# --- rule 4: errors, maxloop -------------------------------------------------------------------


def test_failed_start_prim_stopstarts_and_the_module_stops_on_error_maxloop_plus_one() -> None:
    d = Driver(settings(maxloop=2), record())
    d.cmd(CommandKind.START)
    for attempt in (1, 2, 3):
        d.finish()  # prestart
        d.tick(6)
        assert d.running().script is Script.START_PRIM
        d.finish(FAILED)
        assert not d.state.vip_held
        if attempt < 3:
            assert d.running().argv() == ("ALONE", "WAIT", "stopstart")
            d.finish()
        else:
            assert d.running().argv() == ("ALONE", "STOP", "stop")
    d.settle()
    assert d.shown == (STOP, NR)
    assert "exceeds maxloop=2" in "\n".join(a.reason for a in d.history if isinstance(a, Log))


def test_errors_older_than_loop_interval_do_not_count() -> None:
    d = alone(settings(maxloop=1, loop_interval=50.0))
    d.feed(CheckerVerdict(CheckerAction.RESTART, "custom.app", d.later(1)))
    d.settle()
    d.feed(CheckerVerdict(CheckerAction.RESTART, "custom.app", d.later(60)))
    d.settle()
    assert d.shown == (ALONE, RD)
    d.feed(CheckerVerdict(CheckerAction.RESTART, "custom.app", d.later(1)))
    d.settle()
    assert d.shown == (STOP, NR)


def test_stop_script_timeout_is_called_again_with_force() -> None:
    d = alone()
    d.cmd(CommandKind.STOP)
    d.finish(TIMED_OUT)
    forced = d.running()
    assert forced.forced
    assert forced.argv() == ("force", "ALONE", "STOP", "stop")
    d.finish(FAILED)
    assert "may still run" in logs(d.actions)
    d.settle()
    assert d.shown == (STOP, NR)


def test_checker_wait_then_resource_up() -> None:
    d = prim()
    d.feed(CheckerVerdict(CheckerAction.WAIT, "ping.router", d.now))
    assert d.running().action is ScriptAction.STOPWAIT
    d.finish()
    assert d.shown == (WAIT, NR)
    assert d.state.wait_cause is WaitCause.RESOURCE
    d.feed(ResourceUp("ping.other", d.now))
    assert d.shown == (WAIT, NR)
    d.feed(ResourceUp("ping.router", d.now))
    assert d.shown == (WAIT, TR)


def test_a_resource_back_while_the_role_stops_to_wait_for_it_starts_again() -> None:
    """Chaos round (lan_cut): the VIP's interface came back while stop_prim ran; the checker
    reports changes only, so the node waited for ever for an interface that was up."""
    d = prim()
    d.feed(CheckerVerdict(CheckerAction.WAIT, "intf.vip", d.now))
    assert d.running().action is ScriptAction.STOPWAIT
    d.feed(ResourceUp("intf.vip", d.now))
    assert "is up again while the role stops" in d.state.reason
    d.finish()
    assert d.state.wait_cause is None
    assert d.shown != (WAIT, NR)
    assert d.running().script is Script.PRESTART


def test_checker_stopstart_on_second() -> None:
    d = second()
    d.feed(CheckerVerdict(CheckerAction.STOPSTART, "custom.x", d.now))
    assert d.running().argv() == ("SECOND", "WAIT", "stopstart")


def test_vip_failure_comes_back_as_an_event_and_stopstarts() -> None:
    d = starting_primary()
    d.feed(ActionFailed(AcquireVip(), "arping: no such device", d.now))
    assert not d.state.vip_held
    d.finish()  # start_prim ends ok but the VIP is missing
    assert d.running().argv() == ("ALONE", "WAIT", "stopstart")


def test_a_late_script_result_is_ignored() -> None:
    d = alone()
    before = d.state
    acts = d.feed(ScriptDone(1, Script.PRESTART, OK, d.now))
    assert d.state == before
    assert "no longer waited for" in logs(acts)


def test_every_displayed_change_is_logged_with_a_reason() -> None:
    d = prim()
    for kind in (CommandKind.SWAP, CommandKind.STOP):
        d.cmd(kind)
        d.settle()
    seen = [a.reason for a in d.history if isinstance(a, Log) and "->" in a.reason]
    assert any("ALONE (Ready) -> PRIM" in r or "PRIM" in r for r in seen)
    assert all(r.split(": ", 1)[1] for r in seen)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="defaultprim='n3'"):
        MirrorSettings(local_node="n1", peer_node="n2", defaultprim="n3")
    with pytest.raises(ValueError, match="both 'n1'"):
        MirrorSettings(local_node="n1", peer_node="n1")


def _started_pair() -> Cluster:
    rec = PersistedRecord(STOP, "n1", 1, True, 1)
    c = Cluster(witness=False, seed=7, fail_rate=0.0, persisted={"n1": rec, "n2": rec})
    c.command("n1", CommandKind.START)
    c.command("n2", CommandKind.START)
    c.advance(20)
    assert len(c.serving()) == 1
    return c
