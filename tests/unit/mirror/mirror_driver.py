"""Drive one mirror state machine by hand in tests: feed events, finish scripts, build peers."""

from __future__ import annotations

from typing import TypeVar

from safekit.mirror import (
    Action,
    Command,
    CommandKind,
    CommandReply,
    Event,
    Intent,
    Log,
    MirrorSettings,
    MirrorState,
    ModuleState,
    NodeStatus,
    PeerHeartbeat,
    PeerLost,
    PersistedRecord,
    Readiness,
    ReplicaStatus,
    Role,
    RunScript,
    Script,
    ScriptDone,
    ScriptOutcome,
    Tick,
    WitnessMode,
    WitnessResult,
    initial_state,
    step,
)

ME, PEER = "n1", "n2"
T = TypeVar("T")


def settings(**kw: object) -> MirrorSettings:
    base: dict[str, object] = {
        "local_node": ME,
        "peer_node": PEER,
        "maxloop": 3,
        "loop_interval": 100.0,
        "split_brain_bound": 4.0,
        "detection_skew": 2.0,
        "peer_timeout": 5.0,
    }
    base.update(kw)
    return MirrorSettings(**base)  # type: ignore[arg-type]


def own_above(above: int, node: str = ME) -> int:
    """The smallest generation above `above` that `node` creates (ADR 0046: the node whose name
    sorts first creates the even numbers, the other the odd ones)."""
    residue = 0 if node == min(ME, PEER) else 1
    return above + 1 if (above + 1) % 2 == residue else above + 2


def record(generation: int = 1, uptodate: bool = True, last_primary: str | None = ME) -> PersistedRecord:
    return PersistedRecord(ModuleState.STOP, last_primary, generation, uptodate, generation)


def peer_status(
    state: ModuleState,
    readiness: Readiness = Readiness.READY,
    *,
    role: Role | None = None,
    generation: int = 1,
    uptodate: bool = True,
    verdict: str | None = None,
    intent: Intent = Intent.AUTO,
    last_primary: str | None = None,
) -> NodeStatus:
    default_role = {
        ModuleState.ALONE: Role.PRIMARY,
        ModuleState.PRIM: Role.PRIMARY,
        ModuleState.SECOND: Role.SECONDARY,
        ModuleState.WAIT: Role.CANDIDATE,
        ModuleState.STOP: Role.NONE,
    }[state]
    return NodeStatus(
        PEER, state, readiness, role or default_role, generation, uptodate, intent, last_primary, verdict
    )


class Driver:
    def __init__(self, cfg: MirrorSettings | None = None, persisted: PersistedRecord | None = None) -> None:
        self.cfg = cfg or settings()
        self.state: MirrorState = initial_state(self.cfg, persisted)
        self.now = 0.0
        self.actions: tuple[Action, ...] = ()
        self.history: list[Action] = []

    def feed(self, event: Event) -> tuple[Action, ...]:
        tr = step(self.cfg, self.state, event)
        self.state = tr.state
        self.actions = tr.actions
        self.history.extend(tr.actions)
        return tr.actions

    def later(self, dt: float) -> float:
        self.now += dt
        return self.now

    def cmd(self, kind: CommandKind) -> CommandReply:
        acts = self.feed(Command(kind, self.now))
        replies = [a for a in acts if isinstance(a, CommandReply)]
        assert len(replies) == 1, acts
        return replies[0]

    def tick(self, dt: float = 0.0) -> tuple[Action, ...]:
        return self.feed(Tick(self.later(dt)))

    def peer(self, status: NodeStatus) -> tuple[Action, ...]:
        return self.feed(PeerHeartbeat(status, self.now))

    def lost(self) -> tuple[Action, ...]:
        return self.feed(PeerLost(self.now))

    def witness(self, reachable: bool, dt: float = 0.0) -> tuple[Action, ...]:
        """An answer; with the arbitrator, a grant comes with a VIP probe that saw nobody."""
        arbitrated = self.cfg.witness_mode is WitnessMode.ARBITRATOR and reachable
        generation = self.state.generation if arbitrated else None
        return self.feed(
            WitnessResult(reachable, self.later(dt), vip_checked=arbitrated, generation=generation)
        )

    def replica(self, uptodate: bool, generation: int | None = None) -> tuple[Action, ...]:
        return self.feed(ReplicaStatus(uptodate, self.now, generation))

    def running(self) -> RunScript:
        runs = [a for a in self.history if isinstance(a, RunScript)]
        assert self.state.running is not None, "no script is running"
        return next(r for r in reversed(runs) if r.run_id == self.state.running.run_id)

    def finish(self, outcome: ScriptOutcome = ScriptOutcome.OK, dt: float = 0.1) -> tuple[Action, ...]:
        r = self.running()
        return self.feed(ScriptDone(r.run_id, r.script, outcome, self.later(dt)))

    def settle(self, limit: int = 20) -> None:
        """Let every script end successfully until none runs."""
        for _ in range(limit):
            if self.state.running is None:
                return
            self.finish()
        raise AssertionError("scripts kept running")

    @property
    def shown(self) -> tuple[ModuleState, Readiness]:
        return self.state.module_state, self.state.readiness


def of_type(actions: tuple[Action, ...] | list[Action], kind: type[T]) -> list[T]:
    return [a for a in actions if isinstance(a, kind)]


def logs(actions: tuple[Action, ...]) -> str:
    return "\n".join(a.reason for a in actions if isinstance(a, Log))


# --- reaching each state ----------------------------------------------------------------------


def stopped(cfg: MirrorSettings | None = None) -> Driver:
    return Driver(cfg, record())


def waiting_stale(cfg: MirrorSettings | None = None) -> Driver:
    d = Driver(cfg, record(uptodate=False))
    d.cmd(CommandKind.START)
    d.settle()
    d.tick(10.0)
    assert d.shown == (ModuleState.WAIT, Readiness.NOT_READY), d.state.reason
    return d


def _until_start_prim(d: Driver) -> None:
    """No peer: wait out the peer timeout (and, with a witness, the takeover guard)."""
    if not d.cfg.witness_configured:
        d.tick(10.0)
        return
    for _ in range(30):
        if d.state.running is not None:
            return
        d.witness(True, 1.0)


def alone(cfg: MirrorSettings | None = None) -> Driver:
    d = Driver(cfg, record())
    d.cmd(CommandKind.START)
    d.settle()
    _until_start_prim(d)
    assert d.shown == (ModuleState.ALONE, Readiness.TRANSIENT), d.state.reason
    d.settle()
    assert d.shown == (ModuleState.ALONE, Readiness.READY)
    return d


def prim(cfg: MirrorSettings | None = None) -> Driver:
    d = alone(cfg)
    d.peer(peer_status(ModuleState.SECOND, generation=d.state.generation))
    assert d.shown == (ModuleState.PRIM, Readiness.READY)
    return d


def second(cfg: MirrorSettings | None = None, *, synced: bool = True) -> Driver:
    d = Driver(cfg, record())
    d.cmd(CommandKind.START)
    d.settle()
    d.peer(peer_status(ModuleState.ALONE, generation=2))
    d.settle()
    assert d.shown == (ModuleState.SECOND, Readiness.TRANSIENT)
    if synced:
        d.replica(True, 2)
        assert d.shown == (ModuleState.SECOND, Readiness.READY)
    return d


def starting_primary(cfg: MirrorSettings | None = None) -> Driver:
    d = Driver(cfg, record())
    d.cmd(CommandKind.START)
    d.settle()
    _until_start_prim(d)
    assert d.running().script is Script.START_PRIM
    return d
