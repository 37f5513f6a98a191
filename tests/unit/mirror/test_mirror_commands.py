"""Every operator command in every state: accepted with its effect, or refused with a reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from mirror_driver import (
    Driver,
    alone,
    of_type,
    peer_status,
    prim,
    record,
    second,
    settings,
    starting_primary,
    stopped,
    waiting_stale,
)

from safekit.mirror import (
    AcquireVip,
    Announce,
    CommandKind,
    KillScript,
    Log,
    LogLevel,
    ModuleState,
    Readiness,
    ReleaseVip,
    RunScript,
    Script,
    StartReplication,
)
from safekit.mirror.states import NodeStatus

STOP, WAIT, ALONE, PRIM, SECOND = (
    ModuleState.STOP,
    ModuleState.WAIT,
    ModuleState.ALONE,
    ModuleState.PRIM,
    ModuleState.SECOND,
)
NR, TR, RD = Readiness.NOT_READY, Readiness.TRANSIENT, Readiness.READY
C = CommandKind

STATES: dict[str, Callable[[], Driver]] = {
    "STOP": stopped,
    "WAIT": waiting_stale,
    "ALONE": alone,
    "PRIM": prim,
    "SECOND": second,
    "ALONE-transient": starting_primary,
}

# (from, command) -> (accepted, shown afterwards, script started or None, refusal words)
TABLE: dict[tuple[str, CommandKind], tuple[bool, tuple[ModuleState, Readiness], Script | None, str]] = {
    ("STOP", C.START): (True, (WAIT, TR), Script.PRESTART, ""),
    ("STOP", C.STOP): (False, (STOP, NR), None, "already stopped"),
    ("STOP", C.RESTART): (False, (STOP, NR), None, "needs a running role"),
    ("STOP", C.STOPSTART): (False, (STOP, NR), None, "use start"),
    ("STOP", C.FORCESTOP): (False, (STOP, NR), None, "already stopped"),
    ("STOP", C.PRIM): (True, (WAIT, TR), Script.PRESTART, ""),
    ("STOP", C.SECOND): (True, (WAIT, TR), Script.PRESTART, ""),
    ("STOP", C.SWAP): (False, (STOP, NR), None, "runs on the primary"),
    ("STOP", C.PRIMFORCE): (True, (WAIT, TR), Script.PRESTART, ""),
    ("WAIT", C.START): (False, (WAIT, NR), None, "already started"),
    ("WAIT", C.STOP): (True, (STOP, TR), Script.POSTSTOP, ""),
    ("WAIT", C.RESTART): (False, (WAIT, NR), None, "needs a running role"),
    ("WAIT", C.STOPSTART): (True, (WAIT, TR), Script.PRESTART, ""),
    ("WAIT", C.FORCESTOP): (True, (STOP, NR), None, ""),
    ("WAIT", C.PRIM): (False, (WAIT, NR), None, "not up to date"),
    ("WAIT", C.SECOND): (True, (WAIT, TR), None, ""),
    ("WAIT", C.SWAP): (False, (WAIT, NR), None, "runs on the primary"),
    ("WAIT", C.PRIMFORCE): (True, (ALONE, TR), Script.START_PRIM, ""),
    ("ALONE", C.START): (False, (ALONE, RD), None, "already started"),
    ("ALONE", C.STOP): (True, (STOP, TR), Script.STOP_PRIM, ""),
    ("ALONE", C.RESTART): (True, (ALONE, TR), Script.STOP_PRIM, ""),
    ("ALONE", C.STOPSTART): (True, (WAIT, TR), Script.STOP_PRIM, ""),
    ("ALONE", C.FORCESTOP): (True, (STOP, TR), Script.STOP_PRIM, ""),
    ("ALONE", C.PRIM): (False, (ALONE, RD), None, "already primary"),
    ("ALONE", C.SECOND): (False, (ALONE, RD), None, "must be SECOND (Ready)"),
    ("ALONE", C.SWAP): (False, (ALONE, RD), None, "must be SECOND (Ready)"),
    ("ALONE", C.PRIMFORCE): (False, (ALONE, RD), None, "already primary"),
    ("PRIM", C.START): (False, (PRIM, RD), None, "already started"),
    ("PRIM", C.STOP): (True, (STOP, TR), Script.STOP_PRIM, ""),
    ("PRIM", C.RESTART): (True, (PRIM, TR), Script.STOP_PRIM, ""),
    ("PRIM", C.STOPSTART): (True, (WAIT, TR), Script.STOP_PRIM, ""),
    ("PRIM", C.FORCESTOP): (True, (STOP, TR), Script.STOP_PRIM, ""),
    ("PRIM", C.PRIM): (False, (PRIM, RD), None, "already primary"),
    ("PRIM", C.SECOND): (True, (SECOND, TR), Script.STOP_PRIM, ""),
    ("PRIM", C.SWAP): (True, (SECOND, TR), Script.STOP_PRIM, ""),
    ("PRIM", C.PRIMFORCE): (False, (PRIM, RD), None, "already primary"),
    ("SECOND", C.START): (False, (SECOND, RD), None, "already started"),
    ("SECOND", C.STOP): (True, (STOP, TR), Script.STOP_SECOND, ""),
    ("SECOND", C.RESTART): (True, (SECOND, TR), Script.STOP_SECOND, ""),
    ("SECOND", C.STOPSTART): (True, (WAIT, TR), Script.STOP_SECOND, ""),
    ("SECOND", C.FORCESTOP): (True, (STOP, TR), Script.STOP_SECOND, ""),
    ("SECOND", C.PRIM): (False, (SECOND, RD), None, "run swap on n2"),
    ("SECOND", C.SECOND): (False, (SECOND, RD), None, "already SECOND"),
    ("SECOND", C.SWAP): (False, (SECOND, RD), None, "runs on the primary"),
    ("SECOND", C.PRIMFORCE): (False, (SECOND, RD), None, "run swap on n2"),
    ("ALONE-transient", C.START): (False, (ALONE, TR), None, "busy: start_prim is running"),
    ("ALONE-transient", C.STOP): (True, (ALONE, TR), None, ""),
    ("ALONE-transient", C.RESTART): (False, (ALONE, TR), None, "busy"),
    ("ALONE-transient", C.STOPSTART): (False, (ALONE, TR), None, "busy"),
    ("ALONE-transient", C.FORCESTOP): (True, (STOP, TR), Script.STOP_PRIM, ""),
    ("ALONE-transient", C.PRIM): (False, (ALONE, TR), None, "busy"),
    ("ALONE-transient", C.SECOND): (False, (ALONE, TR), None, "busy"),
    ("ALONE-transient", C.SWAP): (False, (ALONE, TR), None, "busy"),
    ("ALONE-transient", C.PRIMFORCE): (False, (ALONE, TR), None, "busy"),
}


def test_table_covers_every_command_in_every_state() -> None:
    assert set(TABLE) == {(s, c) for s in STATES for c in CommandKind}


CASES = [(origin, kind) for origin in STATES for kind in CommandKind]


@pytest.mark.parametrize(("origin", "kind"), CASES)
def test_command_in_state(origin: str, kind: CommandKind) -> None:
    accepted, shown, script, words = TABLE[(origin, kind)]
    d = STATES[origin]()
    before = d.state
    reply = d.cmd(kind)
    assert reply.accepted is accepted, reply.reason
    assert d.shown == shown, d.state.reason
    runs = of_type(d.actions, RunScript)
    assert [r.script for r in runs] == ([script] if script else [])
    if not accepted:
        assert words in reply.reason
        assert d.state == before  # a refused command changes nothing
    assert reply.reason


def test_stopping_a_serving_node_releases_the_vip_before_its_stop_script() -> None:
    d = prim()
    d.cmd(C.STOP)
    kinds = [type(a) for a in d.actions if isinstance(a, ReleaseVip | RunScript)]
    assert kinds == [ReleaseVip, RunScript]
    assert d.state.vip_held is False


def test_restart_keeps_the_vip_and_restarts_the_application() -> None:
    d = alone()
    d.cmd(C.RESTART)
    assert not of_type(d.actions, ReleaseVip)
    d.finish()
    assert [r.script for r in of_type(d.actions, RunScript)] == [Script.START_PRIM]
    d.finish()
    assert d.shown == (ALONE, RD)
    assert d.state.vip_held


def test_stop_while_start_prim_runs_is_done_when_it_ends() -> None:
    d = starting_primary()
    d.cmd(C.STOP)
    d.finish()
    assert [r.script for r in of_type(d.actions, RunScript)] == [Script.STOP_PRIM]
    assert of_type(d.actions, ReleaseVip)
    d.settle()
    assert d.shown == (STOP, NR)


def test_forcestop_kills_the_running_script_and_forces_the_stop_script() -> None:
    d = starting_primary()
    running = d.running()
    d.cmd(C.FORCESTOP)
    assert of_type(d.actions, KillScript)[0].run_id == running.run_id
    forced = of_type(d.actions, RunScript)[0]
    assert forced.forced
    assert forced.argv()[0] == "force"
    d.settle()
    assert d.shown == (STOP, NR)
    assert not d.state.vip_held


def test_primforce_on_a_stale_node_is_accepted_and_says_what_is_lost() -> None:
    d = waiting_stale()
    reply = d.cmd(C.PRIMFORCE)
    assert reply.accepted
    assert "discarded" in "\n".join(a.reason for a in of_type(d.history, Log))
    assert of_type(d.actions, AcquireVip)
    d.settle()
    assert d.shown == (ALONE, RD)
    assert d.state.uptodate  # this node's copy is now the reference


def test_stop_from_wait_runs_poststop_only() -> None:
    d = waiting_stale()
    d.cmd(C.STOP)
    d.settle()
    scripts = [r.script for r in of_type(d.history, RunScript)]
    assert scripts[-1] is Script.POSTSTOP
    assert Script.STOP_PRIM not in scripts
    assert d.shown == (STOP, NR)


@pytest.mark.parametrize("kind", [C.PRIM, C.PRIMFORCE])
def test_prim_without_the_peer_warns_that_its_writes_would_be_overwritten(kind: CommandKind) -> None:
    """An operator-made split brain (ADR 0045): the unreachable peer may have taken over and
    acknowledged writes alone; the reply and the log say they are overwritten, not saved aside."""
    d = waiting_stale() if kind is C.PRIMFORCE else stopped()
    assert d.state.peer is None
    reply = d.cmd(kind)
    assert reply.accepted
    assert "n2 is not reachable" in reply.reason and "not saved aside" in reply.reason
    assert any("not saved aside" in a.reason and a.level is LogLevel.WARNING for a in of_type(d.history, Log))


def test_prim_with_the_peer_present_does_not_warn() -> None:
    d = stopped()
    d.peer(peer_status(STOP, generation=d.state.generation))
    reply = d.cmd(C.PRIM)
    assert reply.accepted and "warning" not in reply.reason


# --- primforce over an unreachable peer: what the forced copy lacks is saved aside (ADR 0047) ----


def _forced_primary(base: int, generation: int) -> NodeStatus:
    return dataclasses.replace(peer_status(ALONE, generation=generation), forced_base=base)


def test_primforce_announces_the_base_of_the_forced_copy_until_its_secondary_is_in_sync() -> None:
    d = waiting_stale()
    base = d.state.generation_confirmed
    d.cmd(C.PRIMFORCE)
    d.settle()
    assert d.shown == (ALONE, RD)
    assert d.state.forced_base == base and d.state.persisted().forced_base == base
    announced = [a for a in d.history if isinstance(a, Announce)][-1]
    assert announced.status.forced_base == base
    d.peer(peer_status(SECOND, TR, generation=1, uptodate=False))
    assert d.state.forced_base == base  # not in sync yet: the peer may still save aside
    d.peer(peer_status(SECOND, RD, generation=d.state.generation))
    assert d.state.forced_base is None


def test_a_copy_with_writes_the_forced_primary_lacks_saves_them_aside_before_the_resync() -> None:
    d = Driver(settings(), record(generation=7))  # this copy: writes acknowledged up to 7
    d.cmd(C.START)
    d.settle()
    d.peer(_forced_primary(base=3, generation=10))  # n2 forced from a copy holding writes up to 3
    d.settle()
    starts = [a for a in d.history if isinstance(a, StartReplication)]
    assert starts and starts[-1].diverged, d.state.reason
    assert "saved aside" in "\n".join(a.reason for a in of_type(d.history, Log))
    assert d.state.forced_base is None


@pytest.mark.parametrize(("confirmed", "peer_generation"), [(3, 10), (2, 10), (10, 10)])
def test_nothing_is_saved_aside_when_the_forced_copy_holds_this_copys_writes(
    confirmed: int, peer_generation: int
) -> None:
    """At or below the base the forced copy holds them; at the forced primary's own generation this
    copy already resynchronised from it."""
    d = Driver(settings(), record(generation=confirmed))
    d.cmd(C.START)
    d.settle()
    d.peer(_forced_primary(base=3, generation=peer_generation))
    d.settle()
    starts = [a for a in d.history if isinstance(a, StartReplication)]
    assert starts and not starts[-1].diverged, d.state.reason
