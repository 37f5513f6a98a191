"""The mirror module state machine: `step(settings, state, event) -> Transition(state, actions)`.

This module owns the transitions. It is pure: no clock (events carry `now`), no I/O, no logging
calls; what should happen is returned as actions that the daemon executes in order, and what
the daemon observes comes back as events. See docs/mirror-state-machine.md for the table.

Each step does three things in this order:

1. apply the event (a command, a heartbeat, a script result, ...);
2. enforce the witness rule (rule 2): a node that claims the primary role without heartbeats
   and without a valid witness lease releases the VIP now, whatever else is going on;
3. reconcile: in a stable phase (no script running), decide from what is known whether to
   start or leave a role (election, takeover, waiting).

Then every change of the displayed state is logged with its reason, a changed persisted record
is written before any other effect, and a changed status is announced to the peer last (after
the VIP was released, so the peer never learns "not primary" before it is true).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from safekit.lifecycle import (
    CheckerAction,
    CheckerVerdict,
    CommandReply,
    Log,
    LogLevel,
    Readiness,
    ResourceUp,
    Script,
    ScriptAction,
    ScriptDone,
    ScriptOutcome,
    Tick,
)
from safekit.mirror import witness
from safekit.mirror.actions import (
    AcquireVip,
    Action,
    Announce,
    FenceReplication,
    KillScript,
    Persist,
    QueryWitness,
    ReleaseVip,
    RunScript,
    StartReplication,
    StopReplication,
)
from safekit.mirror.election import (
    conflict_winner,
    consents_to,
    elect,
    prim_refusal,
    replica_eligibility,
)
from safekit.mirror.events import (
    ActionFailed,
    Command,
    CommandKind,
    Event,
    PeerHeartbeat,
    PeerLost,
    ReplicaStatus,
    ReplicationExited,
    WitnessResult,
)
from safekit.mirror.settings import MirrorSettings
from safekit.mirror.states import (
    PENDING_PRIORITY,
    Intent,
    MirrorState,
    ModuleState,
    Next,
    NodeStatus,
    Pending,
    PersistedRecord,
    Phase,
    ReplicaRank,
    ReplicationRole,
    Role,
    Running,
    WaitCause,
)
from safekit.mirror.witness import WitnessMode, WitnessView


@dataclass(frozen=True)
class Transition:
    state: MirrorState
    actions: tuple[Action, ...]


def initial_state(settings: MirrorSettings, persisted: PersistedRecord | None = None) -> MirrorState:
    """The module as the daemon loads it: STOP, with what was persisted before."""
    del settings  # part of the signature so callers need not change when it is used
    if persisted is None:
        return MirrorState(phase=Phase.STOPPED, reason="module loaded; no persisted state (first start)")
    return MirrorState(
        phase=Phase.STOPPED,
        reason=f"module loaded; it was {persisted.state} when the daemon last persisted its state",
        last_primary=persisted.last_primary,
        generation=persisted.generation,
        generation_confirmed=_or(persisted.generation_confirmed, persisted.generation),
        uptodate=persisted.uptodate,
        peer_generation_seen=persisted.peer_generation_seen,
        peer_confirmed_seen=_or(persisted.peer_confirmed_seen, persisted.peer_generation_seen),
        forced_base=persisted.forced_base,
        shared_generation=persisted.shared_generation,
    )


def _or(value: int | None, default: int) -> int:
    """A field of the persisted record, or what a record written before it stands for."""
    return default if value is None else value


def announced_status(settings: MirrorSettings, state: MirrorState) -> NodeStatus:
    """The status this node puts in its heartbeats (what `Announce` carries)."""
    verdict = None
    if state.peer is not None and state.role in (Role.CANDIDATE, Role.SECONDARY):
        verdict = elect(state.status(settings.local_node), state.peer, settings.defaultprim).winner
    return state.status(settings.local_node, verdict)


def next_deadline(settings: MirrorSettings, state: MirrorState) -> float | None:
    """When the daemon must send a `Tick` at the latest for time-based rules to fire on time."""
    times: list[float] = []
    if state.phase is Phase.ELECTING and state.peer is None and state.election_deadline is not None:
        times.append(state.election_deadline)
    if state.handshake_not_before is not None and state.peer is not None:
        times.append(state.handshake_not_before)
    if state.yield_until is not None:
        times.append(state.yield_until)
    absent = state.peer_absent_since
    if settings.witness_configured and state.peer is None and absent is not None:
        rules = settings.witness_rules
        if state.claims_primary:
            times.append(witness.fence_deadline(rules, state.witness, absent))
        else:
            at = witness.takeover_time(rules, state.witness, absent)
            if at is not None:
                times.append(at)
    future = [t for t in times if t > state.now]
    return min(future, default=None)


def witness_wanted(settings: MirrorSettings, state: MirrorState) -> bool:
    """Whether the daemon should query the split-brain witness now (besides `QueryWitness`).

    ping: always (slowly while the peer is present). arbitrator: a node that serves, or may
    serve, renews its lease all the time - at a split the peer must find it held - and a node
    that does not serve asks only while the peer is lost: asking while the peer is there could
    take the lease from a primary that is just renewing it.
    """
    if not settings.witness_configured:
        return False
    if settings.witness_mode is WitnessMode.PING:
        return True
    if state.claims_primary:
        return True
    return state.peer is None and state.phase not in (Phase.STOPPED, Phase.POSTSTOP)


def may_acknowledge_alone(
    settings: MirrorSettings, state: MirrorState, *, confirming: bool = False
) -> tuple[bool, str]:
    """Whether the primary's replication may acknowledge writes without the secondary, and why.

    Only once the secondary cannot take over with its older copy: it says its copy is not up to
    date, or it is lost and the witness rules exclude it (`witness.may_acknowledge_alone`);
    without a witness, a lost peer is enough (a split then gives two primaries, documented).
    `confirming`: whether the primary may confirm its generation, the step before (with the
    arbitrator: a grant of the number, before the grant of the confirmed rank).
    """
    peer = state.peer
    if peer is not None:
        if peer.uptodate:
            return False, f"{settings.peer_node} still reports an up-to-date copy"
        return True, f"{settings.peer_node} reports its copy not up to date"
    absent = state.peer_absent_since
    if absent is None:
        return False, f"{settings.peer_node} not seen yet"
    if not settings.witness_configured:
        return True, f"{settings.peer_node} is lost (no split-brain witness configured)"
    why = witness.may_acknowledge_alone(
        settings.witness_rules, state.witness, state.now, absent, state.generation, confirming=confirming
    )
    if why is None:
        return False, f"{settings.peer_node} is lost: waiting for the witness to rule it out"
    return True, f"{settings.peer_node} is lost and {why}"


def checker_applies(state: MirrorState, when: str) -> bool:
    """Whether a checker of `when` acts on a "down" now: `pre` always, `both` on the primary or the
    secondary, `prim` (the default) on the primary only."""
    if when == "pre":
        return True
    if when == "both":
        return state.module_state in (ModuleState.PRIM, ModuleState.ALONE, ModuleState.SECOND)
    return state.module_state in (ModuleState.PRIM, ModuleState.ALONE)


def errd_classes(state: MirrorState) -> frozenset[str]:
    """The `<errd>` process classes that must be running now: only in a settled, Ready state (a
    script that runs may stop or start them)."""
    if state.readiness is not Readiness.READY or state.running is not None:
        return frozenset()
    if state.module_state in (ModuleState.PRIM, ModuleState.ALONE):
        return frozenset({"prim", "both", "pre"})
    if state.module_state is ModuleState.SECOND:
        return frozenset({"second", "sec", "both", "pre"})
    return frozenset()


def step(settings: MirrorSettings, state: MirrorState, event: Event) -> Transition:
    """Apply one event; return the new state and the actions to execute in order."""
    now = max(state.now, event.now)  # the daemon's clock is monotonic; never go back
    ctx = _Ctx(settings, replace(state, now=now), now)
    _apply(ctx, event)
    _enforce_witness(ctx)
    _note_withdrawn_consent(ctx, state)
    _reconcile(ctx)
    _note_withdrawn_consent(ctx, state)
    _confirm_generation(ctx)
    return _finish(settings, state, ctx)


class _Ctx:
    """Working copy of one step: the state being built and the actions emitted so far."""

    def __init__(self, cfg: MirrorSettings, s: MirrorState, now: float) -> None:
        self.cfg = cfg
        self.s = s
        self.now = now
        self.acts: list[Action] = []

    @property
    def me(self) -> str:
        return self.cfg.local_node

    @property
    def peer_name(self) -> str:
        return self.cfg.peer_node

    def log(self, reason: str, level: LogLevel = LogLevel.INFO) -> None:
        self.acts.append(Log(reason, level))

    def emit(self, *actions: Action) -> None:
        self.acts.extend(actions)

    def set(self, **changes: object) -> None:
        self.s = replace(self.s, **changes)  # type: ignore[arg-type]

    def run(
        self,
        script: Script,
        action: ScriptAction,
        current: ModuleState,
        target: ModuleState,
        *,
        then: Next | None = None,
        forced: bool = False,
    ) -> None:
        rid = self.s.next_run_id
        self.emit(RunScript(rid, script, current, target, action, forced))
        running = Running(rid, script, action, current, target, forced, then)
        self.set(running=running, next_run_id=rid + 1)


_Starter = Callable[[_Ctx, str], None]


# --- 1. events ---------------------------------------------------------------------------------


def _apply(ctx: _Ctx, event: Event) -> None:
    match event:
        case Command():
            _on_command(ctx, event)
        case PeerHeartbeat():
            _on_heartbeat(ctx, event)
        case PeerLost():
            _on_peer_lost(ctx)
        case WitnessResult():
            _on_witness(ctx, event)
        case ReplicaStatus():
            _on_replica(ctx, event)
        case ReplicationExited():
            _on_replication_exited(ctx, event)
        case ScriptDone():
            _on_script_done(ctx, event)
        case CheckerVerdict():
            _on_checker(ctx, event)
        case ResourceUp():
            _on_resource_up(ctx, event)
        case ActionFailed():
            _on_action_failed(ctx, event)
        case Tick():
            pass  # time-based rules run in _enforce_witness and _reconcile


def _on_heartbeat(ctx: _Ctx, ev: PeerHeartbeat) -> None:
    st, s = ev.status, ctx.s
    if st.node != ctx.peer_name:
        ctx.log(f"ignored a heartbeat from {st.node}: the peer is {ctx.peer_name}", LogLevel.WARNING)
        return
    prev = s.peer
    if prev is None:
        ctx.log(
            f"heartbeat from {st.node}: {st.state} ({st.readiness}), role {st.role}, "
            f"replica generation {st.generation}, uptodate={st.uptodate}"
        )
    elif (prev.state, prev.readiness, prev.role) != (st.state, st.readiness, st.role):
        ctx.log(f"peer {st.node} is now {st.state} ({st.readiness}), role {st.role}")
    ctx.set(
        peer=st,
        peer_absent_since=None,
        peer_generation_seen=max(s.peer_generation_seen, st.generation),
        peer_confirmed_seen=max(s.peer_confirmed_seen, st.rank.confirmed),
    )
    if st.role is Role.PRIMARY and s.role is not Role.PRIMARY and s.uptodate and st.rank > s.rank:
        # The primary went on in a newer generation without this copy: it is stale, and this node
        # says so in its heartbeats (what a primary that lost its secondary waits for). Also while
        # that primary starts or stops (not serving): one whose checker stops it holds its
        # application's writes, and so its stop, until this node says so.
        ctx.set(uptodate=False)
        ctx.log(
            f"{st.node} is primary at replica {st.rank.describe()}, this copy is at {s.rank.describe()}: "
            "not up to date",
            LogLevel.WARNING,
        )
    if (
        st.serving
        and st.readiness is Readiness.READY
        and s.role is not Role.PRIMARY
        and s.last_primary != st.node
    ):
        # Not while this node serves too (a healed split): both would name the other and, each
        # deciding on a view the other has already left, both would step down.
        ctx.set(last_primary=st.node)
    if s.intent is Intent.SECOND and st.role is Role.PRIMARY:
        ctx.set(intent=Intent.AUTO)  # the `second` request is fulfilled
    peer_just_synced = (
        st.state is ModuleState.SECOND
        and st.readiness is Readiness.READY
        and not (prev is not None and prev.state is ModuleState.SECOND and prev.readiness is Readiness.READY)
    )
    if (
        peer_just_synced
        and s.phase is Phase.PRIMARY
        and s.running is None
        and ctx.cfg.default_primary_node == st.node
    ):
        _step_down(
            ctx,
            f"failback: {st.node} is defaultprim and has resynchronised (SECOND Ready): swapping roles",
            diverged=False,
        )


def _on_peer_lost(ctx: _Ctx) -> None:
    s = ctx.s
    if s.peer is None and s.peer_absent_since is not None:
        return  # already known; membership repeats itself
    ctx.set(peer=None, peer_absent_since=ctx.now)
    ctx.log(f"all heartbeats from {ctx.peer_name} lost", LogLevel.WARNING)
    if s.role is Role.PRIMARY:
        # From now on the peer's copy no longer follows ours: start a new replica generation so
        # that the peer's copy is recognisably older wherever it shows up later.
        _count_up_alone(ctx, f"serving without {ctx.peer_name}")
    if ctx.cfg.witness_configured:
        ctx.emit(QueryWitness())


def _count_up_alone(ctx: _Ctx, why: str, level: LogLevel = LogLevel.INFO) -> None:
    """The primary's peer no longer follows its copy: a new replica generation, claimed once.

    The claim is made before this node knows whether it may go on alone (the witness decides,
    rule 2): on the other side of a split the peer may be taking over. So it is made at most once
    until confirmed (`_confirm_generation`): the peer starts the primary role two generations up
    from what it last knew of this copy, above anything this side claimed without it. Two copies
    that went apart then never carry the same generation; otherwise an isolated primary that
    never acknowledged a write alone would hold "generation N" beside the taker's N, and once the
    taker is gone the arbitrator would not find its copy older (lost acknowledged writes).
    """
    s = ctx.s
    if s.generation_unconfirmed:
        ctx.log(
            f"{why}: replica generation stays {s.generation} (no write acknowledged at it yet: "
            f"the peer's copy, at most at {s.generation_confirmed}, already reads as older)",
            level,
        )
        return
    gen = _new_generation(ctx, max(s.generation, s.peer_generation_seen))
    ctx.set(generation=gen)
    ctx.log(f"{why}: replica generation {gen} (the peer's copy is older)", level)


def _new_generation(ctx: _Ctx, above: int) -> int:
    """The smallest generation above `above` that this node may create (docs/adr/0046).

    Each node creates only numbers of its own residue: the node whose name sorts first the even
    ones, the other the odd ones. A number then names the node that created it, and so one
    history: two copies at generation g hold the same writes, even where both nodes picked a
    number without hearing of the other (a stale epoch and a takeover). Without this, both could
    confirm "g" on different writes, and a copy that acknowledged nothing at g would rank with
    one that did.
    """
    residue = 0 if ctx.me < ctx.peer_name else 1
    gen = above + 1
    return gen if gen % 2 == residue else gen + 1


def _confirm_generation(ctx: _Ctx) -> None:
    """A primary's generation (a new epoch, or a claim) holds writes acknowledged at it once this
    primary may acknowledge writes alone at it, or once the peer is in sync at it: from then on it
    ranks above the copies it left behind (rule 1), and the next loss claims a new one. This runs
    after every step, so the replication is never allowed to acknowledge alone at a generation
    that is not confirmed yet. A primary made by primforce forgets its base (ADR 0047) once its
    secondary is in sync."""
    s = ctx.s
    if s.role is not Role.PRIMARY:
        return
    peer = s.peer
    # In sync means this node's own secondary, resynchronised from this copy (SECOND Ready comes
    # only from the replication process once it follows this primary): a peer announcing the same
    # number from another history (a primary on the other side of a healed split, a node still
    # starting its secondary role on its old copy) confirms nothing.
    in_sync = (
        peer is not None
        and peer.state is ModuleState.SECOND
        and peer.readiness is Readiness.READY
        and peer.generation == s.generation
    )
    if in_sync and s.forced_base is not None:
        ctx.set(forced_base=None)  # the peer resynchronised from the forced copy: nothing to save now
    if in_sync:
        _note_shared(ctx, s.generation)
    if not s.generation_unconfirmed:
        return
    if in_sync or may_acknowledge_alone(ctx.cfg, s, confirming=True)[0]:
        ctx.set(generation_confirmed=s.generation)
        if ctx.cfg.witness_mode is WitnessMode.ARBITRATOR and peer is None and ctx.cfg.witness_configured:
            # The grant of the number let this node confirm it; the grant of the confirmed rank
            # lets it acknowledge alone (`witness.may_acknowledge_alone`): ask at once.
            ctx.emit(QueryWitness())


def _note_shared(ctx: _Ctx, generation: int) -> None:
    """This copy and the peer's are the same at `generation` (ADR 0072)."""
    if ctx.s.shared_generation is None or generation > ctx.s.shared_generation:
        ctx.set(shared_generation=generation)


def _on_witness(ctx: _Ctx, ev: WitnessResult) -> None:
    cfg, s = ctx.cfg, ctx.s
    if not cfg.witness_configured:
        ctx.log("ignored a witness answer: no split-brain witness is configured", LogLevel.WARNING)
        return
    reachable, other = ev.reachable, ev.other
    before = s.witness
    after = before.record(
        reachable,
        ctx.now,
        cfg.split_brain_bound,
        sent_at=ev.sent_at,
        other=other,
        vip_checked=ev.vip_checked,
        vip_owner=ev.vip_owner,
        generation=ev.generation,
        confirmed=ev.confirmed,
    )
    ctx.set(witness=after)
    if ev.known is not None:
        _on_known_generation(ctx, ev.known)
    owner_is_news = before.vip_owner_at is None or (
        before.vip_clear_at is not None and before.vip_clear_at > before.vip_owner_at
    )
    if ev.vip_owner is not None and owner_is_news:
        ctx.log(f"the virtual IP is still answered by {ev.vip_owner}: not taking it", LogLevel.WARNING)
    arbitrator = cfg.witness_mode is WitnessMode.ARBITRATOR
    if other is not None:
        if before.other_server != other or before.other_server_at is None or not _recent_other(before, after):
            what = (
                f"the arbitrator lease is held by {other}"
                if arbitrator
                else f"the virtual IP is answered by {other}"
            )
            ctx.log(f"split-brain witness: {what}", LogLevel.WARNING)
        return
    was_reachable = before.reachable_since is not None
    first = before.last_reachable_at is None and before.last_unreachable_at is None
    if first or was_reachable != reachable:  # changes only: the idle witness poll must not flood the log
        if arbitrator:
            word = "granted the lease to this node" if reachable else "did not answer"
            ctx.log(f"split-brain arbitrator {word}", LogLevel.INFO if reachable else LogLevel.WARNING)
            return
        word = "reachable" if reachable else "unreachable"
        level = LogLevel.INFO if reachable else LogLevel.WARNING
        ctx.log(f"split-brain witness {word}", level)


def _on_known_generation(ctx: _Ctx, known: ReplicaRank) -> None:
    """The highest copy rank the arbitrator granted for this module.

    Never this node's own past request when it ranks above this copy: a copy's rank only rises
    (a node persists a confirmation before a request carries it)."""
    s = ctx.s
    if known <= s.rank:
        return
    if s.claims_primary and s.peer is not None and s.peer.role is Role.SECONDARY:
        # Serving with its secondary, yet the arbitrator knows a newer copy: its record predates
        # this module's (a module reinstalled under the same name, an arbitrator state restored).
        # Start a newer generation, or no lease would ever be granted to this copy (the
        # secondary then resynchronises to it once, which confirms it).
        gen = _new_generation(ctx, max(known.generation, s.generation))
        ctx.set(generation=gen)
        ctx.log(
            f"the arbitrator knows a copy at {known.describe()}, newer than this primary's "
            f"{s.rank.describe()}: its record predates this module; now generation {gen}",
            LogLevel.WARNING,
        )
    elif _peer_copy_reaches(ctx, known):
        # The arbitrator granted a lease to a newer copy than ours, which may have acknowledged
        # writes alone at it: ours is stale (rule 1).
        ctx.log(
            f"the arbitrator knows a copy at {known.describe()}, this copy is at "
            f"{s.rank.describe()}: not up to date (rule 1)",
            LogLevel.WARNING,
        )


def _peer_copy_reaches(ctx: _Ctx, rank: ReplicaRank) -> bool:
    """Evidence that another copy may hold writes acknowledged up to `rank` (the arbitrator
    granted it, or the lost peer goes on alone): the peer's copy is seen at least there, each
    number never lowered. Whether that raised what was seen."""
    s = ctx.s
    if s.peer_rank_seen >= rank:
        return False
    ctx.set(
        peer_generation_seen=max(rank.generation, s.peer_generation_seen),
        peer_confirmed_seen=max(rank.confirmed, s.peer_confirmed_seen),
    )
    return True


def _recent_other(before: WitnessView, after: WitnessView) -> bool:
    """The previous answer already named another server (no new log line for a repeat)."""
    at = before.other_server_at
    if at is None:
        return False
    newer_ok = [t for t in (before.last_reachable_at, before.last_unreachable_at) if t is not None and t > at]
    return not newer_ok and after.other_server == before.other_server


def _on_replica(ctx: _Ctx, ev: ReplicaStatus) -> None:
    s = ctx.s
    if s.role is Role.PRIMARY:
        # On the primary, "not up to date" is about the peer: the replication link was lost, the
        # secondary's copy no longer follows ours. A new generation makes that copy recognisably
        # older (rule 1) before this node acknowledges writes the secondary does not have. A node
        # that is leaving the primary role acknowledges nothing alone (replica.after_step fences
        # its held writes): the generation stays, so that the peer's copy, which holds every
        # acknowledged write, can take over (ADR 0079).
        if not ev.uptodate and (
            (s.peer is not None and s.peer.uptodate) or s.generation < s.peer_generation_seen
        ):
            if not s.claims_primary:
                ctx.log(
                    f"replication to {ctx.peer_name} lost while this node leaves the primary role: "
                    f"replica generation stays {s.generation} (nothing is acknowledged alone)",
                    LogLevel.WARNING,
                )
                return
            _count_up_alone(ctx, f"replication to {ctx.peer_name} lost", LogLevel.WARNING)
        return
    gen = s.generation if ev.generation is None else ev.generation
    if (ev.uptodate, gen) != (s.uptodate, s.generation):
        ctx.log(f"replica: rfs.uptodate={ev.uptodate}, generation {gen}")
        ctx.set(uptodate=ev.uptodate, generation=gen)
    if ev.uptodate and gen > s.generation_confirmed:
        # In sync with the primary at `gen`: this copy holds every write acknowledged at it.
        ctx.set(generation_confirmed=gen)
    if ev.uptodate:
        _note_shared(ctx, gen)


def _on_replication_exited(ctx: _Ctx, ev: ReplicationExited) -> None:
    """The replication process died. A secondary's copy is no longer known to follow the primary:
    not up to date, and a new process. A primary's mount is dead under its application: stop the
    application (forced), then start it again on a fresh mount (`_restore_replication`); if that
    fails, the usual stopstart hands over to the in-sync secondary; past maxloop, the module stops."""
    s = ctx.s
    what = f"the replication process ({ev.role}) died" + (f": {ev.detail}" if ev.detail else "")
    if s.replication is not ev.role:
        ctx.log(f"{what}: ignored, this node runs no {ev.role} replication now")
        return
    if ev.role is ReplicationRole.SECONDARY:
        ctx.log(f"{what}: this copy is not up to date; starting a new one", LogLevel.WARNING)
        ctx.emit(StartReplication(ReplicationRole.SECONDARY))
        ctx.set(uptodate=False)
        return
    if s.phase is Phase.PRIMARY and s.running is None:
        if _count_error(ctx, what):
            _leave_role(ctx, ScriptAction.STOP, Next.STOP, f"{what}: too many errors, stopping the module")
            return
        # The VIP stays (a local restart); the application goes first, forced: its files on the
        # dead mount fail. Replication is marked gone so that the restart starts a fresh process.
        current = s.module_state
        ctx.set(replication=ReplicationRole.NONE)
        ctx.run(Script.STOP_PRIM, ScriptAction.STOPSTART, current, current, then=Next.RESTART, forced=True)
        ctx.set(phase=Phase.STOPPING_PRIMARY, reason=f"{what}: restarting the application on a fresh mount")
        ctx.log(f"{what}: stop_prim (forced), new replication process, start_prim", LogLevel.WARNING)
    elif s.phase is Phase.STARTING_PRIMARY:
        _role_failed_async(ctx, what)  # stopstart once start_prim ends
    elif s.phase is Phase.STOPPING_PRIMARY and s.then is Next.RESTART:
        ctx.set(replication=ReplicationRole.NONE)  # the restart starts a fresh process
        ctx.log(f"{what}: the restart starts a new one", LogLevel.WARNING)
    else:
        ctx.log(f"{what}: the role is being left anyway", LogLevel.WARNING)


def _restore_replication(ctx: _Ctx) -> None:
    """Before start_prim of a local restart: a replication process that died meanwhile is replaced
    (the daemon removes the dead mount and serves the directories again)."""
    if ctx.s.replication is ReplicationRole.NONE:
        ctx.emit(StartReplication(ReplicationRole.PRIMARY))
        ctx.set(replication=ReplicationRole.PRIMARY, fenced=False)


def _on_checker(ctx: _Ctx, ev: CheckerVerdict) -> None:
    s = ctx.s
    src = f"{ev.resource} asks {ev.action}" + (f" ({ev.detail})" if ev.detail else "")
    if s.running is not None:
        ctx.log(f"{src}: ignored while {s.running.script} runs (the rule fires again if still true)")
        return
    if ev.action is CheckerAction.STOP:
        if s.phase is not Phase.STOPPED:
            _stop_module(ctx, f"{src}: stopping the module")
        return
    if ev.action is CheckerAction.WAIT:
        _wait_for_resource(ctx, ev.resource, f"{src}: WAIT until {ev.resource} is up")
        return
    if s.phase not in (Phase.PRIMARY, Phase.SECONDARY):
        ctx.log(f"{src}: ignored, no role is running ({s.module_state})")
        return
    if _count_error(ctx, src):
        _leave_role(ctx, ScriptAction.STOP, Next.STOP, f"{src}: too many errors, stopping the module")
    elif ev.action is CheckerAction.RESTART:
        _leave_role(ctx, ScriptAction.STOPSTART, Next.RESTART, f"{src}: restarting the application locally")
    else:
        _leave_role(ctx, ScriptAction.STOPSTART, Next.STARTUP, f"{src}: stopstart (the peer may take over)")


def _wait_for_resource(ctx: _Ctx, resource: str, reason: str) -> None:
    s = ctx.s
    if s.phase in (Phase.PRIMARY, Phase.SECONDARY):
        _leave_role(
            ctx, ScriptAction.STOPWAIT, Next.WAIT, reason, cause=WaitCause.RESOURCE, resource=resource
        )
    elif s.phase in (Phase.ELECTING, Phase.WAITING):
        ctx.set(phase=Phase.WAITING, wait_cause=WaitCause.RESOURCE, waiting_resource=resource, reason=reason)
    else:
        ctx.log(f"{reason}: ignored in {s.module_state}")


def _on_resource_up(ctx: _Ctx, ev: ResourceUp) -> None:
    s = ctx.s
    awaited = s.wait_cause is WaitCause.RESOURCE and s.waiting_resource == ev.resource
    if awaited and s.phase is Phase.WAITING:
        _enter_electing(ctx, f"{ev.resource} is up again: leaving WAIT")
    elif awaited and s.running is not None and s.running.then is Next.WAIT:
        # Back while the role stops to wait for it: a checker reports changes only, so no other
        # ResourceUp would come, and the node would wait for ever for a resource that is up.
        _retarget(
            ctx,
            Next.STARTUP,
            None,
            f"{ev.resource} is up again while the role stops: prestart and a new election once stopped",
        )
    else:
        ctx.log(f"{ev.resource} is up (nothing waits for it)")


def _on_action_failed(ctx: _Ctx, ev: ActionFailed) -> None:
    action, what = ev.action, f"{type(ev.action).__name__} failed: {ev.detail}"
    match action:
        case AcquireVip() | StartReplication():
            if isinstance(action, AcquireVip):
                # A provider may have done part of the work (the address is on the interface, the
                # cloud call failed): undo it, release succeeds on what is not held.
                ctx.emit(ReleaseVip())
                ctx.set(vip_held=False)
            _role_failed_async(ctx, what)
        case ReleaseVip():
            ctx.log(
                f"{what}; the daemon already retried: check the address by hand (health probes answer 404)",
                LogLevel.ERROR,
            )
            _count_error(ctx, what)
        case Persist():
            ctx.log(f"{what}: a crash now would lose the module's state", LogLevel.ERROR)
            _count_error(ctx, what)
        case QueryWitness():
            _on_witness(ctx, WitnessResult(False, ctx.now))  # no answer: treat as unreachable
        case _:
            ctx.log(what, LogLevel.WARNING)


def _role_failed_async(ctx: _Ctx, what: str) -> None:
    """A role's resource failed while the role starts or runs: stopstart, or stop past maxloop."""
    s = ctx.s
    exceeded = _count_error(ctx, what)
    if s.running is not None and not s.running.script.stops_application:
        _add_pending(ctx, Pending.STOP if exceeded else Pending.STOPSTART)
    elif s.running is None and s.phase in (Phase.PRIMARY, Phase.SECONDARY):
        if exceeded:
            _leave_role(ctx, ScriptAction.STOP, Next.STOP, f"{what}: too many errors, stopping the module")
        else:
            _leave_role(ctx, ScriptAction.STOPSTART, Next.STARTUP, f"{what}: stopstart")


# --- commands ----------------------------------------------------------------------------------


def _accept(ctx: _Ctx, kind: CommandKind, reason: str) -> None:
    ctx.emit(CommandReply(str(kind), True, reason))
    ctx.log(f"command {kind}: {reason}")


def _refuse(ctx: _Ctx, kind: CommandKind, reason: str) -> None:
    ctx.emit(CommandReply(str(kind), False, reason))
    ctx.log(f"command {kind} refused: {reason}", LogLevel.WARNING)


def _on_command(ctx: _Ctx, ev: Command) -> None:
    kind, s = ev.kind, ctx.s
    if kind is CommandKind.FORCESTOP:
        _cmd_forcestop(ctx, kind)
    elif kind is CommandKind.STOP:
        _cmd_stop(ctx, kind)
    elif s.running is not None:
        _refuse(ctx, kind, f"busy: {s.running.script} is running; retry when it ends, or use stop/forcestop")
    elif kind is CommandKind.START:
        _cmd_start(ctx, kind)
    elif kind in (CommandKind.PRIM, CommandKind.PRIMFORCE):
        _cmd_prim(ctx, kind)
    elif kind is CommandKind.SECOND:
        _cmd_second(ctx, kind)
    elif kind is CommandKind.SWAP:
        _cmd_swap(ctx, kind)
    elif kind is CommandKind.RESTART:
        _cmd_restart(ctx, kind)
    else:
        _cmd_stopstart(ctx, kind)


def _cmd_start(ctx: _Ctx, kind: CommandKind) -> None:
    if ctx.s.phase is not Phase.STOPPED:
        _refuse(ctx, kind, f"already started ({ctx.s.module_state})")
        return
    _accept(ctx, kind, "starting: prestart")
    ctx.set(errors=())  # an operator start begins a new maxloop window
    _begin_start(ctx, Intent.AUTO, "start command: prestart runs")


def _cmd_prim(ctx: _Ctx, kind: CommandKind) -> None:
    s = ctx.s
    if s.phase is Phase.PRIMARY:
        _refuse(ctx, kind, f"already primary ({s.module_state})")
        return
    if s.phase is Phase.SECONDARY:
        _refuse(ctx, kind, f"this node is SECOND: run swap on {ctx.peer_name}, or stop it first")
        return
    if s.peer is not None and s.peer.role is Role.PRIMARY:
        _refuse(ctx, kind, f"{ctx.peer_name} is {s.peer.state}: two primaries are never allowed; use swap")
        return
    if kind is CommandKind.PRIM:
        why = prim_refusal(s.uptodate, s.rank, s.peer_rank_seen)
        if why is not None:
            _refuse(ctx, kind, why)
            return
    intent = Intent.PRIM if kind is CommandKind.PRIM else Intent.PRIMFORCE
    if kind is CommandKind.PRIMFORCE and (not s.uptodate or s.rank < s.peer_rank_seen):
        ctx.log(
            f"primforce on a replica that is not up to date ({s.rank.describe()}, "
            f"peer seen at {s.peer_rank_seen.describe()}): what only {ctx.peer_name} has will be discarded "
            "when it resynchronises from this node",
            LogLevel.WARNING,
        )
    accepted = "this node will be primary (the witness rule still applies)"
    if s.peer is None:
        # Nothing can tell what the unreachable peer did since this node last heard it: it may
        # have taken over and acknowledged writes alone. Those are overwritten, not saved aside,
        # when it resynchronises from this node (docs/mirror.md, prim and primforce).
        unseen = (
            f"{ctx.peer_name} is not reachable: writes it may have acknowledged since this node "
            f"last heard it (at {s.peer_rank_seen.describe()}) will be overwritten, not saved aside, "
            f"when it resynchronises from this node; use {kind} without the peer only if "
            f"{ctx.peer_name} is gone for good or known to be stopped since"
        )
        ctx.log(f"{kind} while {unseen}", LogLevel.WARNING)
        accepted = f"{accepted}; warning: {unseen}"
    _accept(ctx, kind, accepted)
    if s.phase is Phase.STOPPED:
        ctx.set(errors=())
        _begin_start(ctx, intent, f"{kind} command: prestart runs")
    else:
        ctx.set(intent=intent)
        _enter_electing(ctx, f"{kind} command")


def _cmd_second(ctx: _Ctx, kind: CommandKind) -> None:
    s = ctx.s
    if s.phase is Phase.SECONDARY:
        _refuse(ctx, kind, "already SECOND")
    elif s.phase is Phase.PRIMARY:
        _cmd_swap(ctx, kind)
    elif s.phase is Phase.STOPPED:
        _accept(ctx, kind, "starting as secondary")
        ctx.set(errors=())
        _begin_start(ctx, Intent.SECOND, "second command: prestart runs")
    else:
        _accept(ctx, kind, "this node will be secondary")
        ctx.set(intent=Intent.SECOND)
        _enter_electing(ctx, "second command: waiting for a primary")


def _cmd_swap(ctx: _Ctx, kind: CommandKind) -> None:
    s, peer = ctx.s, ctx.s.peer
    if s.phase is not Phase.PRIMARY:
        _refuse(ctx, kind, f"swap runs on the primary; this node is {s.module_state}")
        return
    if peer is None or peer.state is not ModuleState.SECOND or peer.readiness is not Readiness.READY:
        seen = "not seen" if peer is None else f"{peer.state} ({peer.readiness})"
        _refuse(ctx, kind, f"{ctx.peer_name} must be SECOND (Ready) to take over; it is {seen}")
        return
    _accept(ctx, kind, f"swapping roles with {ctx.peer_name}")
    _step_down(ctx, f"{kind} command: {ctx.me} becomes secondary, {ctx.peer_name} primary", diverged=False)


def _cmd_restart(ctx: _Ctx, kind: CommandKind) -> None:
    if ctx.s.phase not in (Phase.PRIMARY, Phase.SECONDARY):
        state = ctx.s.module_state
        _refuse(ctx, kind, f"restart needs a running role (ALONE, PRIM or SECOND); this node is {state}")
        return
    _accept(ctx, kind, "restarting the application locally, no failover")
    _leave_role(ctx, ScriptAction.STOPSTART, Next.RESTART, "restart command: local restart")


def _cmd_stopstart(ctx: _Ctx, kind: CommandKind) -> None:
    s = ctx.s
    if s.phase is Phase.STOPPED:
        _refuse(ctx, kind, "the module is stopped: use start")
    elif s.phase in (Phase.PRIMARY, Phase.SECONDARY):
        _accept(ctx, kind, "stopping, then starting again (the peer may take over)")
        _leave_role(ctx, ScriptAction.STOPSTART, Next.STARTUP, "stopstart command")
    else:
        _accept(ctx, kind, "starting again")
        _begin_start(ctx, Intent.AUTO, "stopstart command: prestart runs")


def _cmd_stop(ctx: _Ctx, kind: CommandKind) -> None:
    s, r = ctx.s, ctx.s.running
    if s.phase is Phase.STOPPED:
        _refuse(ctx, kind, "already stopped")
    elif r is None:
        _accept(ctx, kind, "stopping")
        _stop_module(ctx, "stop command")
    elif s.phase is Phase.POSTSTOP or r.then in (Next.STOP, Next.STOP_NOW):
        _refuse(ctx, kind, "already stopping")
    elif r.script.stops_application:
        _accept(ctx, kind, f"stopping once {r.script} ends")
        _retarget(ctx, Next.STOP, None, "stop command")
    else:
        _accept(ctx, kind, f"stopping once {r.script} ends")
        _add_pending(ctx, Pending.STOP)


def _cmd_forcestop(ctx: _Ctx, kind: CommandKind) -> None:
    s = ctx.s
    if s.phase is Phase.STOPPED:
        _refuse(ctx, kind, "already stopped")
        return
    _accept(ctx, kind, "forced stop: no nice stop, no poststop")
    current = s.module_state
    if s.running is not None:
        ctx.emit(KillScript(s.running.run_id, s.running.script))
    if s.vip_held:
        ctx.emit(ReleaseVip())
    primary_app = s.phase in (Phase.STARTING_PRIMARY, Phase.PRIMARY, Phase.STOPPING_PRIMARY)
    secondary_app = s.phase in (Phase.STARTING_SECONDARY, Phase.SECONDARY, Phase.STOPPING_SECONDARY)
    ctx.set(running=None, pending=None, vip_held=False, intent=Intent.AUTO)
    if primary_app or secondary_app:
        script = Script.STOP_PRIM if primary_app else Script.STOP_SECOND
        phase = Phase.STOPPING_PRIMARY if primary_app else Phase.STOPPING_SECONDARY
        ctx.run(script, ScriptAction.STOP, current, ModuleState.STOP, then=Next.STOP_NOW, forced=True)
        ctx.set(phase=phase, reason="forcestop: forced stop script")
    else:
        _stop_replication(ctx)
        ctx.set(phase=Phase.STOPPED, reason="forcestop", wait_cause=None, election_deadline=None)


# --- scripts -----------------------------------------------------------------------------------


def _on_script_done(ctx: _Ctx, ev: ScriptDone) -> None:
    r = ctx.s.running
    if r is None or r.run_id != ev.run_id:
        ctx.log(f"ignored the end of {ev.script} (run {ev.run_id}): no longer waited for")
        return
    if ev.outcome is not ScriptOutcome.OK:
        detail = f": {ev.detail}" if ev.detail else ""
        ctx.log(f"{ev.script} {ev.outcome}{detail}", LogLevel.WARNING)
    if r.script.stops_application:
        _stop_script_done(ctx, r, ev.outcome)
    else:
        _start_script_done(ctx, r, ev.outcome)


def _stop_script_done(ctx: _Ctx, r: Running, outcome: ScriptOutcome) -> None:
    if outcome is not ScriptOutcome.OK and not r.forced:
        # SafeKit calls a stop script a second time with "force" when the first call fails.
        ctx.set(running=None)
        ctx.run(r.script, r.action, r.current, r.target, then=r.then, forced=True)
        ctx.set(reason=f"{r.script} {outcome}: calling it again with force")
        return
    if outcome is not ScriptOutcome.OK:
        ctx.log(f"forced {r.script} {outcome}: the application may still run on {ctx.me}", LogLevel.ERROR)
        _count_error(ctx, f"forced {r.script} {outcome}")
    ctx.set(running=None)
    _after_stop(ctx, r.then or Next.STOP)


def _after_stop(ctx: _Ctx, then: Next) -> None:
    if then is not Next.RESTART:
        _stop_replication(ctx)
    if then is Next.STOP:
        _to_poststop(ctx, "application stopped: poststop runs")
    elif then is Next.STOP_NOW:
        ctx.set(phase=Phase.STOPPED, reason="forcestop done", wait_cause=None, intent=Intent.AUTO)
    elif then is Next.WAIT:
        cause = ctx.s.wait_cause or WaitCause.STALE
        what = ctx.s.waiting_resource if cause is WaitCause.RESOURCE else str(cause)
        ctx.set(phase=Phase.WAITING, wait_cause=cause, reason=f"WAIT: {what}")
    elif then is Next.PRIMARY:
        _launch_primary(ctx, "secondary role stopped: starting the primary role")
    elif then is Next.SECONDARY:
        _launch_secondary(ctx, "primary role stopped: starting the secondary role")
    elif then is Next.RESTART:
        _restart_role(ctx)
    else:
        if ctx.s.phase is Phase.STOPPING_PRIMARY:
            _hand_over(ctx)
        _begin_start(ctx, Intent.AUTO, "stopstart: prestart runs")


def _peer_can_take_over(ctx: _Ctx, peer: NodeStatus | None) -> str | None:
    """Why the peer cannot take the primary role over from this node now, or None if it can."""
    if not ctx.cfg.failover:
        return "failover is off"
    if peer is None:
        return f"{ctx.peer_name} is not seen"
    if peer.role is not Role.SECONDARY or not peer.competing:
        return f"{ctx.peer_name} is {peer.state}, role {peer.role}, not a secondary ready to take over"
    if not peer.uptodate or peer.rank < ctx.s.rank:
        return f"{ctx.peer_name}'s copy is not up to date ({peer.rank.describe()})"
    return None


def _hand_over(ctx: _Ctx) -> None:
    """A stopstart left the primary role: let an up-to-date secondary take over (SafeKit's
    stopstart fails over), instead of winning the election again as the last primary."""
    why_not = _peer_can_take_over(ctx, ctx.s.peer)
    if why_not is not None:
        ctx.log(f"{ctx.me} stopstarted the primary role and starts again here: {why_not}")
        return
    window = _handshake_window(ctx.cfg)
    ctx.set(yield_until=ctx.now + window)
    ctx.log(
        f"{ctx.me} stopstarted the primary role: {ctx.peer_name} is an up-to-date secondary and takes "
        f"over; {ctx.me} does not compete for the primary role for {window:.2f} s"
    )


def _end_hand_over(ctx: _Ctx) -> None:
    """Stop yielding once the peer took over, cannot, or did not within the time."""
    s = ctx.s
    if s.yield_until is None:
        return
    if s.phase not in (Phase.STARTING, Phase.ELECTING):
        ctx.set(yield_until=None)
        return
    peer = s.peer
    if peer is not None and peer.role is Role.PRIMARY:
        return  # taking over: this node becomes its secondary once it serves
    why_not = _peer_can_take_over(ctx, peer)
    if why_not is None and ctx.now < s.yield_until:
        return
    if why_not is None:
        why_not = f"{ctx.peer_name} did not take over within {_handshake_window(ctx.cfg):.2f} s"
    ctx.set(yield_until=None)
    ctx.log(f"{why_not}: {ctx.me} competes for the primary role again", LogLevel.WARNING)


def _restart_role(ctx: _Ctx) -> None:
    s = ctx.s
    current = s.module_state
    if s.phase is Phase.STOPPING_PRIMARY:
        _restore_replication(ctx)
        ctx.run(Script.START_PRIM, ScriptAction.START, current, current)
        ctx.set(phase=Phase.STARTING_PRIMARY, reason="restart: start_prim runs")
    else:
        ctx.run(Script.START_SECOND, ScriptAction.START, current, ModuleState.SECOND)
        ctx.set(phase=Phase.STARTING_SECONDARY, reason="restart: start_second runs")


def _start_script_done(ctx: _Ctx, r: Running, outcome: ScriptOutcome) -> None:
    ok = outcome is ScriptOutcome.OK
    pending = ctx.s.pending
    ctx.set(running=None, pending=None)
    if r.script is Script.POSTSTOP:
        ctx.set(phase=Phase.STOPPED, reason="stopped", wait_cause=None, intent=Intent.AUTO)
    elif r.script is Script.PRESTART:
        if pending is Pending.STOP:
            _to_poststop(ctx, "stop requested while prestart ran: poststop runs")
        elif not ok:
            reason = f"prestart {outcome}: the module cannot start"
            ctx.set(phase=Phase.STOPPED, reason=reason, intent=Intent.AUTO)
        else:
            _enter_electing(ctx, "prestart done: looking for the peer")
    else:
        _role_started(ctx, r.script, outcome, pending)


def _role_started(ctx: _Ctx, script: Script, outcome: ScriptOutcome, pending: Pending | None) -> None:
    primary = script is Script.START_PRIM
    ctx.set(phase=Phase.PRIMARY if primary else Phase.SECONDARY)
    if outcome is ScriptOutcome.OK:
        if not primary and ctx.s.replication is not ReplicationRole.SECONDARY:
            diverged = ctx.s.diverged or _forced_peer_lacks_our_writes(ctx)
            ctx.emit(StartReplication(ReplicationRole.SECONDARY, diverged=diverged))
            ctx.set(forced_base=None)  # this copy follows the primary's from now on
            # A new secondary is stale until the replication process says otherwise: it may
            # hold changes the primary never saw (rule 4) or lack the primary's latest ones.
            ctx.set(replication=ReplicationRole.SECONDARY, uptodate=False, diverged=False)
        ctx.set(reason=f"{script} done")
    if pending is Pending.STOP:
        _leave_role(ctx, ScriptAction.STOP, Next.STOP, f"stop requested while {script} ran")
    elif pending is Pending.FENCE:
        _leave_role(
            ctx,
            ScriptAction.STOPWAIT,
            Next.WAIT,
            "witness lost while start_prim ran",
            cause=WaitCause.WITNESS,
        )
    elif outcome is not ScriptOutcome.OK:
        _fail_role(ctx, f"{script} {outcome}")
    elif pending is Pending.STOPSTART:
        _leave_role(ctx, ScriptAction.STOPSTART, Next.STARTUP, f"a resource failed while {script} ran")


def _fail_role(ctx: _Ctx, what: str) -> None:
    """A role failed to start: stopstart (the peer may take over), or stop past maxloop."""
    if _count_error(ctx, what):
        _leave_role(ctx, ScriptAction.STOP, Next.STOP, f"{what}: too many errors, stopping the module")
    else:
        _leave_role(ctx, ScriptAction.STOPSTART, Next.STARTUP, f"{what}: stopstart")


def _count_error(ctx: _Ctx, what: str) -> bool:
    """Record an error; True when it is error number maxloop+1 within loop_interval."""
    cfg = ctx.cfg
    recent = (*(t for t in ctx.s.errors if ctx.now - t < cfg.loop_interval), ctx.now)
    ctx.set(errors=recent)
    n = len(recent)
    window = f"within loop_interval={cfg.loop_interval:g}s"
    if n > cfg.maxloop:
        ctx.log(f"{what}: error {n} {window} exceeds maxloop={cfg.maxloop}: the module stops", LogLevel.ERROR)
        return True
    ctx.log(f"{what}: error {n} of maxloop={cfg.maxloop} {window}", LogLevel.WARNING)
    return False


# --- building blocks of transitions ------------------------------------------------------------


def _begin_start(ctx: _Ctx, intent: Intent, reason: str) -> None:
    current = ctx.s.module_state
    ctx.run(Script.PRESTART, ScriptAction.START, current, ModuleState.WAIT)
    ctx.set(phase=Phase.STARTING, intent=intent, reason=reason, wait_cause=None, waiting_resource=None)


def _enter_electing(ctx: _Ctx, reason: str) -> None:
    s, cfg = ctx.s, ctx.cfg
    changes: dict[str, object] = {
        "phase": Phase.ELECTING,
        "reason": reason,
        "wait_cause": None,
        "waiting_resource": None,
        "election_deadline": None,
    }
    if s.peer is None:
        changes["election_deadline"] = ctx.now + cfg.peer_timeout
        if s.peer_absent_since is None:
            changes["peer_absent_since"] = ctx.now
        if cfg.witness_configured:
            ctx.emit(QueryWitness())
    ctx.set(**changes)


def _stop_replication(ctx: _Ctx) -> None:
    if ctx.s.replication is not ReplicationRole.NONE:
        ctx.emit(StopReplication())
        ctx.set(replication=ReplicationRole.NONE, fenced=False)


def _to_poststop(ctx: _Ctx, reason: str) -> None:
    _stop_replication(ctx)
    ctx.run(Script.POSTSTOP, ScriptAction.STOP, ctx.s.module_state, ModuleState.STOP)
    ctx.set(phase=Phase.POSTSTOP, reason=reason, wait_cause=None, waiting_resource=None)


def _stop_module(ctx: _Ctx, reason: str) -> None:
    """Stop from a stable phase: the role's stop script (if any), then poststop."""
    if ctx.s.phase in (Phase.PRIMARY, Phase.SECONDARY):
        _leave_role(ctx, ScriptAction.STOP, Next.STOP, reason)
    else:
        _to_poststop(ctx, reason)


def _leave_role(
    ctx: _Ctx,
    action: ScriptAction,
    then: Next,
    reason: str,
    *,
    cause: WaitCause | None = None,
    resource: str | None = None,
) -> None:
    """Run the stop script of the running role; the VIP goes first unless the role restarts."""
    s = ctx.s
    if s.phase is Phase.PRIMARY:
        script, phase = Script.STOP_PRIM, Phase.STOPPING_PRIMARY
    elif s.phase is Phase.SECONDARY:
        script, phase = Script.STOP_SECOND, Phase.STOPPING_SECONDARY
    else:
        ctx.log(f"{reason}: no role to leave in {s.module_state}", LogLevel.WARNING)
        return
    if then is not Next.RESTART and s.vip_held:
        # Released before the stop script: stop_prim may take up to the stop timeouts, and the
        # node must stop attracting clients within split_brain_bound (rule 2).
        ctx.emit(ReleaseVip())
        ctx.set(vip_held=False)
    current = s.module_state
    placeholder = Running(0, script, action, current, current, then=then)
    target = replace(ctx.s, phase=phase, running=placeholder).module_state
    ctx.run(script, action, current, target, then=then)
    ctx.set(phase=phase, reason=reason, wait_cause=cause, waiting_resource=resource)


def _retarget(ctx: _Ctx, then: Next, cause: WaitCause | None, reason: str) -> None:
    """Change where the running stop script leads (stop, fence)."""
    s, r = ctx.s, ctx.s.running
    if r is None:
        return
    if then is not Next.RESTART and s.vip_held:
        ctx.emit(ReleaseVip())
        ctx.set(vip_held=False)
    ctx.set(running=replace(r, then=then), wait_cause=cause, waiting_resource=None, reason=reason)


def _add_pending(ctx: _Ctx, pending: Pending) -> None:
    old = ctx.s.pending
    if old is None or PENDING_PRIORITY[pending] > PENDING_PRIORITY[old]:
        ctx.set(pending=pending)


def _step_down(ctx: _Ctx, reason: str, *, diverged: bool) -> None:
    """Leave the primary role for the secondary one; the peer is elected meanwhile."""
    ctx.set(intent=Intent.SECOND)
    if diverged:
        ctx.set(uptodate=False, diverged=True)
    _leave_role(ctx, ScriptAction.STOPSTART, Next.SECONDARY, reason)


def _launch_primary(ctx: _Ctx, reason: str) -> None:
    s = ctx.s
    if s.peer is not None and s.peer.role is Role.PRIMARY:
        # Last check before the VIP: the peer became primary while our scripts ran.
        _enter_electing(ctx, f"not starting the primary role: {ctx.peer_name} is {s.peer.state}")
        return
    eligible = replica_eligibility(ctx.me, s.uptodate, s.rank, s.peer_rank_seen, s.intent)
    if not eligible.ok:
        # The peer was heard with a newer copy while our scripts ran: ours must not become the
        # reference (rule 1), the peer's must not be overwritten with it (rule 4).
        _enter_electing(ctx, f"not starting the primary role: {eligible.reason}")
        return
    # Every primary epoch gets a new generation: a copy that does not follow this one (peer
    # down, stopped, or failing to become secondary) is recognisably older later on (rule 1).
    # At least two up: an old primary cut from this node may have claimed the next number of its
    # own residue without it (`_count_up_alone`: one or two up), and that copy must be older than
    # this one (this node's residue differs: at two up when the old primary's claim is one up).
    gen = _new_generation(ctx, max(s.generation, s.peer_generation_seen) + 1)
    # The operator's primforce makes this copy the reference, whatever the peer acknowledged: it
    # ranks above every other copy at once. Otherwise the new epoch holds no write until one is
    # acknowledged at it (`_confirm_generation`).
    confirmed = gen if s.intent is Intent.PRIMFORCE else s.generation_confirmed
    # What the forced copy holds: a peer whose copy holds writes acknowledged above it saves them
    # aside before it resynchronises from this one (ADR 0047).
    forced_base = s.generation_confirmed if s.intent is Intent.PRIMFORCE else s.forced_base
    current = s.module_state
    if s.replication is not ReplicationRole.PRIMARY or s.fenced:
        if s.replication is not ReplicationRole.NONE:
            ctx.emit(StopReplication())  # fenced: its held writes failed; a fresh process serves
        ctx.emit(StartReplication(ReplicationRole.PRIMARY))
        ctx.set(fenced=False)
    ctx.emit(AcquireVip())
    ctx.set(
        generation=gen,
        generation_confirmed=confirmed,
        forced_base=forced_base,
        uptodate=True,
        last_primary=ctx.me,
        intent=Intent.AUTO,
        vip_held=True,
        replication=ReplicationRole.PRIMARY,
        diverged=False,
        wait_cause=None,
        waiting_resource=None,
        election_deadline=None,
    )
    target = replace(ctx.s, phase=Phase.STARTING_PRIMARY).module_state
    ctx.run(Script.START_PRIM, ScriptAction.START, current, target)
    ctx.set(phase=Phase.STARTING_PRIMARY, reason=f"{reason} (replica generation {gen})")


def _forced_peer_lacks_our_writes(ctx: _Ctx) -> bool:
    """The primary was made by primforce over a copy that lacks writes this copy acknowledged
    (an operator-made split brain, ADR 0047): save them aside before the resynchronisation
    overwrites them (rule 4), as the loser of two primaries does.

    Its copy holds the writes acknowledged up to its `forced_base`; this copy's confirmed
    generation above it names writes it lacks, unless this copy already follows the forced one
    (the same generation: it resynchronised from it, a number names one history)."""
    s, peer = ctx.s, ctx.s.peer
    if peer is None or peer.role is not Role.PRIMARY or peer.forced_base is None:
        return False
    if s.generation_confirmed <= peer.forced_base or s.generation == peer.generation:
        return False
    ctx.log(
        f"{ctx.peer_name} was made primary by primforce over a copy with acknowledged writes up to "
        f"generation {peer.forced_base}; this copy holds writes acknowledged at generation "
        f"{s.generation_confirmed} that it lacks: they are saved aside before the resynchronisation "
        "(rule 4)",
        LogLevel.WARNING,
    )
    return True


def _launch_secondary(ctx: _Ctx, reason: str) -> None:
    ctx.run(Script.START_SECOND, ScriptAction.START, ctx.s.module_state, ModuleState.SECOND)
    ctx.set(phase=Phase.STARTING_SECONDARY, reason=reason, wait_cause=None, election_deadline=None)


# --- 2. the witness rule -----------------------------------------------------------------------


def _enforce_witness(ctx: _Ctx) -> None:
    s, cfg = ctx.s, ctx.cfg
    absent = s.peer_absent_since
    if not cfg.witness_configured or s.peer is not None or absent is None or not s.claims_primary:
        return
    rules = cfg.witness_rules
    if witness.may_keep_serving(rules, s.witness, ctx.now, absent):
        return
    why = witness.fence_reason(rules, s.witness, absent)
    reason = f"all heartbeats lost and {why}: stop serving (rule 2)"
    ctx.log(reason, LogLevel.WARNING)
    if s.vip_held:
        ctx.emit(ReleaseVip())
        ctx.set(vip_held=False)
    if s.replication is ReplicationRole.PRIMARY and not s.fenced:
        ctx.emit(FenceReplication())
        ctx.set(fenced=True)
    if s.phase is Phase.PRIMARY and s.running is None:
        _leave_role(ctx, ScriptAction.STOPWAIT, Next.WAIT, reason, cause=WaitCause.WITNESS)
    elif s.phase is Phase.STARTING_PRIMARY:
        _add_pending(ctx, Pending.FENCE)
        ctx.set(reason=f"{reason}; stop_prim runs once start_prim ends")
    elif s.running is not None and s.running.script.stops_application:
        _retarget(ctx, Next.WAIT, WaitCause.WITNESS, reason)


# --- 3. reconcile: automatic decisions in stable phases ---------------------------------------


def _note_withdrawn_consent(ctx: _Ctx, old: MirrorState) -> None:
    """Start the handshake delay when this step withdraws the consent the peer last heard.

    Until the peer has heard the withdrawal, it may act on the consent (a node that does not
    compete, or whose verdict names the peer) and start the primary role; and a consent heard
    from the peer before may be an answer to this node's former status. Either way the peer's
    reaction reaches this node, or membership declares the peer lost, within peer_timeout (plus
    detection_skew for the transit and scheduling): only then is the peer's consent an answer to
    the current status.
    """
    cfg = ctx.cfg
    was = consents_to(announced_status(cfg, old), ctx.peer_name)
    if was and not consents_to(announced_status(cfg, ctx.s), ctx.peer_name):
        ctx.set(handshake_not_before=ctx.now + _handshake_window(cfg))


def _reconcile(ctx: _Ctx) -> None:
    _end_hand_over(ctx)
    s = ctx.s
    if s.running is not None:
        return
    if s.phase is Phase.PRIMARY:
        _reconcile_primary(ctx)
    elif s.phase is Phase.SECONDARY:
        _reconcile_secondary(ctx)
    elif s.phase is Phase.ELECTING or (s.phase is Phase.WAITING and s.wait_cause is not WaitCause.RESOURCE):
        _reconcile_candidate(ctx)


def _own(ctx: _Ctx) -> NodeStatus:
    return ctx.s.status(ctx.me)


def _peer_agrees(peer: NodeStatus, me: str) -> bool:
    """Handshake: a competing peer must announce the same winner before the winner starts."""
    return consents_to(peer, me)


def _handshake_pending(ctx: _Ctx) -> float | None:
    """Until when the peer's consent may still predate a consent this node withdrew, or None."""
    at = ctx.s.handshake_not_before
    return at if at is not None and ctx.now < at else None


def _reconcile_primary(ctx: _Ctx) -> None:
    peer = ctx.s.peer
    if peer is None or peer.role is not Role.PRIMARY or not peer.serving:
        return
    v = conflict_winner(_own(ctx), peer, ctx.cfg.defaultprim)
    if v.winner == ctx.me:
        ctx.set(reason=f"both nodes primary ({v.reason}): {ctx.me} stays primary, {ctx.peer_name} steps down")
        return
    _step_down(
        ctx,
        f"both nodes primary with working heartbeats ({v.reason}): {ctx.me} steps down and resynchronises "
        f"from {ctx.peer_name}; what it wrote since the split is saved aside before the resync (rule 4)",
        diverged=True,
    )


def _takeover(ctx: _Ctx, reason: str) -> None:
    _leave_role(ctx, ScriptAction.STOPSTART, Next.PRIMARY, reason)


def _reconcile_secondary(ctx: _Ctx) -> None:
    peer = ctx.s.peer
    if peer is None:
        _secondary_without_peer(ctx)
        return
    if peer.role is Role.PRIMARY:
        return
    v = elect(_own(ctx), peer, ctx.cfg.defaultprim)
    if v.winner == ctx.me and _peer_agrees(peer, ctx.me):
        at = _handshake_pending(ctx)
        if at is None:
            _takeover(ctx, f"{ctx.peer_name} is {peer.state} and not primary; {v.reason}: taking over")
        else:
            ctx.set(reason=_unsettled(ctx, v.reason))
    elif v.winner is None and peer.role is Role.NONE:
        _leave_role(
            ctx,
            ScriptAction.STOPWAIT,
            Next.WAIT,
            f"no primary and {v.reason} (rule 1)",
            cause=WaitCause.STALE,
        )


def _secondary_without_peer(ctx: _Ctx) -> None:
    s, cfg = ctx.s, ctx.cfg
    e = replica_eligibility(ctx.me, s.uptodate, s.rank, s.peer_rank_seen, s.intent)
    if not cfg.failover:
        reason = "peer lost and failover is off: not taking over (run prim to do it)"
        _leave_role(ctx, ScriptAction.STOPWAIT, Next.WAIT, reason, cause=WaitCause.FAILOVER_OFF)
    elif not e.ok:
        reason = f"peer lost; {e.reason}: not taking over (rule 1)"
        _leave_role(ctx, ScriptAction.STOPWAIT, Next.WAIT, reason, cause=WaitCause.STALE)
    elif not cfg.witness_configured:
        _takeover(ctx, f"peer lost; {e.reason}; no witness configured: taking over")
    else:
        _by_witness(ctx, e.reason, _takeover)


def _by_witness(ctx: _Ctx, eligible_reason: str, start: _Starter) -> None:
    """Peer absent, witness configured, replica eligible: start, wait in WAIT, or keep waiting."""
    s, cfg = ctx.s, ctx.cfg
    absent = s.peer_absent_since if s.peer_absent_since is not None else ctx.now
    rules = cfg.witness_rules
    evidence = witness.peer_serving_evidence(rules, s.witness, absent)
    if evidence is not None:
        _peer_serves_without_us(ctx, evidence)
        return
    if witness.may_take_over(rules, s.witness, ctx.now, absent):
        described = witness.describe(rules, s.witness, ctx.now)
        start(ctx, f"peer absent; {eligible_reason}; {described}, {rules.guard:g}s after the loss")
        return
    if s.witness.refused_since(absent):
        what = (
            "the arbitrator does not answer"
            if rules.mode is WitnessMode.ARBITRATOR
            else "the witness is unreachable"
        )
        reason = f"peer absent and {what}: not serving (rule 2)"
        if s.phase is Phase.SECONDARY:
            _leave_role(ctx, ScriptAction.STOPWAIT, Next.WAIT, reason, cause=WaitCause.WITNESS)
        else:
            ctx.set(phase=Phase.WAITING, wait_cause=WaitCause.WITNESS, reason=reason)
        return
    at = witness.takeover_time(rules, s.witness, absent)
    if at is not None:
        when = f"not before {at - absent:.2f} s after the loss"
    elif rules.mode is WitnessMode.ARBITRATOR:
        when = "until the arbitrator grants the lease"
    else:
        when = "after a reachable answer"
    ctx.set(
        reason=f"peer absent: waiting for the witness ({witness.describe(rules, s.witness, ctx.now)}); {when}"
    )


def _peer_serves_without_us(ctx: _Ctx, evidence: str) -> None:
    """The lost peer still serves: it goes on alone, so this copy no longer follows it (rule 1)."""
    s = ctx.s
    # The primary starts a new generation when it loses its secondary and acknowledges writes
    # alone at it: record that ours is older now, so that this node never takes over with it,
    # even once the peer is gone.
    _peer_copy_reaches(ctx, ReplicaRank(s.generation + 1, s.generation + 1))
    # And say so: a primary that could not go on alone yet (its safekitd frozen while its VIP
    # stayed, then woken up) holds its writes until this node announces a copy that is not up to
    # date (`may_acknowledge_alone`); announcing it up to date kept its application's fsyncs, and
    # so its stop, waiting for a stop timeout.
    ctx.set(uptodate=False)
    reason = (
        f"peer absent but {evidence}: {ctx.peer_name} serves without {ctx.me}, whose copy no longer "
        f"follows it; not taking over (rules 1 and 2), waiting for {ctx.peer_name}"
    )
    if s.phase is Phase.SECONDARY:
        _leave_role(ctx, ScriptAction.STOPWAIT, Next.WAIT, reason, cause=WaitCause.STALE)
    elif not (s.phase is Phase.WAITING and s.wait_cause is WaitCause.STALE):
        ctx.set(phase=Phase.WAITING, wait_cause=WaitCause.STALE, reason=reason)


def _reconcile_candidate(ctx: _Ctx) -> None:
    peer = ctx.s.peer
    if peer is None:
        _candidate_without_peer(ctx)
    elif peer.role is Role.PRIMARY:
        if peer.serving:
            _launch_secondary(ctx, f"{ctx.peer_name} is {peer.state}: becoming its secondary")
        else:
            _hold(ctx, f"{ctx.peer_name} is leaving the primary role: waiting")
    else:
        _candidate_with_peer(ctx, peer)


def _hold(ctx: _Ctx, reason: str) -> None:
    ctx.set(phase=Phase.ELECTING, wait_cause=None, reason=reason)


def _candidate_with_peer(ctx: _Ctx, peer: NodeStatus) -> None:
    v = elect(_own(ctx), peer, ctx.cfg.defaultprim)
    if v.winner == ctx.me:
        at = _handshake_pending(ctx)
        if not _peer_agrees(peer, ctx.me):
            _hold(ctx, f"elected ({v.reason}); waiting for {ctx.peer_name} to agree")
        elif at is not None:
            _hold(ctx, _unsettled(ctx, v.reason))
        else:
            _launch_primary(ctx, f"elected primary: {v.reason}")
    elif v.winner == ctx.peer_name:
        _hold(ctx, f"{ctx.peer_name} should be primary ({v.reason}): waiting for it")
    else:
        ctx.set(phase=Phase.WAITING, wait_cause=WaitCause.STALE, reason=f"{v.reason} (rule 1)")


def _unsettled(ctx: _Ctx, why: str) -> str:
    # Durations, not the deadline: the machine's clock is monotonic, meaningless to a reader (and a
    # reason that counted down would change, and be logged, at every step).
    return (
        f"elected ({why}) and {ctx.peer_name} agrees, but its answer may predate {ctx.me} competing "
        f"again: waiting for {ctx.peer_name}'s answer to the current status (at most "
        f"{_handshake_window(ctx.cfg):.2f} s after competing again)"
    )


def _handshake_window(cfg: MirrorSettings) -> float:
    """How long the peer's answer to a new status may take: the heartbeat timeout plus the detection skew."""
    return cfg.peer_timeout + cfg.detection_skew


def _candidate_without_peer(ctx: _Ctx) -> None:
    s, cfg = ctx.s, ctx.cfg
    if s.intent is Intent.SECOND:
        ctx.set(reason="second requested: waiting for a primary peer")
        return
    deadline = s.election_deadline
    if s.phase is Phase.ELECTING and s.intent is Intent.AUTO and deadline is not None and ctx.now < deadline:
        ctx.set(reason=f"looking for {ctx.peer_name} for up to {ctx.cfg.peer_timeout:g} s")
        return
    if s.phase is Phase.WAITING and s.wait_cause is WaitCause.FAILOVER_OFF and s.intent is Intent.AUTO:
        return
    e = replica_eligibility(ctx.me, s.uptodate, s.rank, s.peer_rank_seen, s.intent)
    if not e.ok:
        reason = f"{ctx.peer_name} not seen; {e.reason}: waiting for the peer, or prim/primforce (rule 1)"
        ctx.set(phase=Phase.WAITING, wait_cause=WaitCause.STALE, reason=reason)
    elif not cfg.witness_configured:
        _launch_primary(ctx, f"{ctx.peer_name} not seen; {e.reason}: starting ALONE")
    else:
        _by_witness(ctx, e.reason, _launch_primary)


# --- finishing a step --------------------------------------------------------------------------


def _finish(cfg: MirrorSettings, old: MirrorState, ctx: _Ctx) -> Transition:
    new = ctx.s
    logs: list[Action] = [a for a in ctx.acts if isinstance(a, Log | CommandReply)]
    effects = [a for a in ctx.acts if not isinstance(a, Log | CommandReply)]
    before = (old.phase, old.module_state, old.readiness)
    after = (new.phase, new.module_state, new.readiness)
    if before != after:
        level = LogLevel.WARNING if new.phase is Phase.WAITING else LogLevel.INFO
        text = f"{old.module_state} ({old.readiness}) -> {new.module_state} ({new.readiness}): {new.reason}"
        logs.append(Log(text, level))
    elif new.reason != old.reason:
        logs.append(Log(new.reason))
    out = logs
    record = new.persisted()
    if record != old.persisted():
        out.append(Persist(record))  # before the effects: a crash must not forget a new epoch
    out.extend(effects)
    status = announced_status(cfg, new)
    if status != announced_status(cfg, old):
        out.append(Announce(status))  # last: the VIP is gone before the peer hears "not primary"
    return Transition(new, tuple(out))
