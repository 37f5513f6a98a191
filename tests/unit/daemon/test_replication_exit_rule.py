"""What a dead replication process means (the mirror state machine's rule; the daemon executes it)."""

from __future__ import annotations

from safekit.mirror import (
    Action,
    Command,
    CommandKind,
    Event,
    Log,
    MirrorSettings,
    MirrorState,
    ModuleState,
    NodeStatus,
    PeerHeartbeat,
    PersistedRecord,
    Readiness,
    ReleaseVip,
    ReplicaStatus,
    ReplicationExited,
    ReplicationRole,
    Role,
    RunScript,
    Script,
    ScriptDone,
    ScriptOutcome,
    StartReplication,
    StopReplication,
    Tick,
    initial_state,
    step,
)
from safekit.mirror.actions import AcquireVip
from safekit.mirror.events import ActionFailed
from safekit.mirror.states import Intent

ME, PEER = "n1", "n2"
CFG = MirrorSettings(
    local_node=ME,
    peer_node=PEER,
    maxloop=3,
    loop_interval=100.0,
    split_brain_bound=4.0,
    detection_skew=2.0,
    peer_timeout=5.0,
)


class Node:
    def __init__(self, persisted: PersistedRecord) -> None:
        self.state: MirrorState = initial_state(CFG, persisted)
        self.now = 0.0
        self.actions: tuple[Action, ...] = ()

    def feed(self, event: Event) -> tuple[Action, ...]:
        tr = step(CFG, self.state, event)
        self.state, self.actions = tr.state, tr.actions
        return tr.actions

    def finish(self, outcome: ScriptOutcome = ScriptOutcome.OK) -> tuple[Action, ...]:
        r = self.state.running
        assert r is not None
        self.now += 0.1
        return self.feed(ScriptDone(r.run_id, r.script, outcome, self.now))

    def settle(self) -> list[Action]:
        out: list[Action] = []
        for _ in range(20):
            if self.state.running is None:
                return out
            out.extend(self.finish())
        raise AssertionError("scripts kept running")

    def died(self, role: ReplicationRole) -> tuple[Action, ...]:
        return self.feed(ReplicationExited(role, self.now, "exit code -9"))

    @property
    def shown(self) -> tuple[ModuleState, Readiness]:
        return self.state.module_state, self.state.readiness


def peer(state: ModuleState, role: Role, generation: int) -> NodeStatus:
    return NodeStatus(PEER, state, Readiness.READY, role, generation, True, Intent.AUTO, None, None)


def primary() -> Node:
    n = Node(PersistedRecord(ModuleState.STOP, ME, 1, True, 1))
    n.feed(Command(CommandKind.START, 0.0))
    n.settle()
    n.now = 10.0
    n.feed(Tick(n.now))
    n.settle()
    n.feed(PeerHeartbeat(peer(ModuleState.SECOND, Role.SECONDARY, n.state.generation), n.now))
    assert n.shown == (ModuleState.PRIM, Readiness.READY), n.state.reason
    assert n.state.replication is ReplicationRole.PRIMARY
    return n


def secondary() -> Node:
    n = Node(PersistedRecord(ModuleState.STOP, PEER, 1, True, 1))
    n.feed(Command(CommandKind.START, 0.0))
    n.settle()
    n.feed(PeerHeartbeat(peer(ModuleState.ALONE, Role.PRIMARY, 2), n.now))
    n.settle()
    n.feed(ReplicaStatus(True, n.now, 2))
    assert n.shown == (ModuleState.SECOND, Readiness.READY), n.state.reason
    return n


def runs(actions: tuple[Action, ...] | list[Action]) -> list[tuple[Script, bool]]:
    return [(a.script, a.forced) for a in actions if isinstance(a, RunScript)]


def test_a_dead_primary_replication_restarts_the_application_on_a_fresh_mount_keeping_the_vip() -> None:
    n = primary()
    acts = n.died(ReplicationRole.PRIMARY)
    # first the application, forced (its files on the dead mount fail), the VIP stays
    assert runs(acts) == [(Script.STOP_PRIM, True)]
    assert not [a for a in acts if isinstance(a, (ReleaseVip, StopReplication, StartReplication))]
    assert n.state.vip_held and n.state.module_state is ModuleState.PRIM
    # then a new replication process before start_prim, never after it
    acts = n.finish()
    kinds = [type(a) for a in acts if isinstance(a, (StartReplication, RunScript))]
    assert kinds == [StartReplication, RunScript]
    assert [a.role for a in acts if isinstance(a, StartReplication)] == [ReplicationRole.PRIMARY]
    assert runs(acts) == [(Script.START_PRIM, False)]
    n.settle()
    assert n.shown == (ModuleState.PRIM, Readiness.READY)
    assert n.state.replication is ReplicationRole.PRIMARY and n.state.vip_held


def test_if_the_new_replication_process_fails_the_secondary_takes_over_by_stopstart() -> None:
    n = primary()
    n.died(ReplicationRole.PRIMARY)
    acts = n.finish()
    start = next(a for a in acts if isinstance(a, StartReplication))
    n.feed(ActionFailed(start, "the replication process did not start", n.now))
    acts = n.finish()  # start_prim ends: the pending stopstart follows
    assert runs(acts) == [(Script.STOP_PRIM, False)]
    assert any(isinstance(a, ReleaseVip) for a in acts)  # the peer may take over
    acts = n.finish()
    assert any(isinstance(a, StopReplication) for a in acts)
    assert runs(acts) == [(Script.PRESTART, False)]


def test_a_replication_process_dying_again_and_again_stops_the_module_past_maxloop() -> None:
    n = primary()
    for _ in range(CFG.maxloop):
        n.died(ReplicationRole.PRIMARY)
        n.settle()
        assert n.shown == (ModuleState.PRIM, Readiness.READY)
    acts = n.died(ReplicationRole.PRIMARY)
    assert runs(acts) == [(Script.STOP_PRIM, False)]
    assert any(isinstance(a, ReleaseVip) for a in acts)
    rest = n.settle()
    assert any(isinstance(a, StopReplication) for a in rest)  # the dead mount is cleaned up
    assert n.state.module_state is ModuleState.STOP


def test_a_death_while_start_prim_runs_leads_to_stopstart_once_it_ends() -> None:
    n = Node(PersistedRecord(ModuleState.STOP, ME, 1, True, 1))
    n.feed(Command(CommandKind.START, 0.0))
    n.settle()
    n.now = 10.0
    acts = n.feed(Tick(n.now))
    assert any(isinstance(a, AcquireVip) for a in acts) and n.state.running is not None
    assert not runs(n.died(ReplicationRole.PRIMARY))  # start_prim cannot be interrupted
    acts = n.finish()
    assert runs(acts) == [(Script.STOP_PRIM, False)]


def test_a_dead_secondary_replication_is_not_up_to_date_and_is_started_again() -> None:
    n = secondary()
    acts = n.died(ReplicationRole.SECONDARY)
    assert [a.role for a in acts if isinstance(a, StartReplication)] == [ReplicationRole.SECONDARY]
    assert not runs(acts)
    assert n.shown == (ModuleState.SECOND, Readiness.TRANSIENT) and not n.state.uptodate
    n.feed(ReplicaStatus(True, n.now, 2))
    assert n.shown == (ModuleState.SECOND, Readiness.READY)


def test_a_late_report_of_a_process_that_no_longer_runs_is_ignored() -> None:
    n = secondary()
    acts = n.died(ReplicationRole.PRIMARY)
    assert all(isinstance(a, Log) for a in acts)
    assert n.shown == (ModuleState.SECOND, Readiness.READY)
