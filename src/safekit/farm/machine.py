"""The farm module's state machine: one node's life in a farm, and the buckets it serves.

Pure: `step(settings, state, event) -> Transition(state, actions)`, time passed in with every
event, no sockets and no subprocesses. The daemon feeds it membership news (peers' announced
states, peers lost), script ends, checker verdicts and commands, and executes what comes back.

States as in SafeKit: STOP, WAIT, UP, each NotReady / Transient / Ready. A node is in the
balancing set while it is UP and Ready; every node computes the bucket map of the balancing set it
sees (`buckets.compute_map`), so a node that leaves (stopped, lost, or taken out by its own checker)
has its buckets taken by the others and nothing else changes.

Handover: buckets are released at once; a bucket gained from a node that is no longer a member is
taken at once (that node serves nothing), but a bucket gained from a live member (a node joined,
or came back) is taken only `handover_delay` later, when that member has seen the same change and
let go. So is a bucket that a peer starting up (UP Transient) would own: two nodes that end their
listening in the same instant each take only their own share before hearing each other. A bucket
may be served by nobody for that moment (a client retransmits its SYN); it is never served by two
nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from safekit.farm.actions import Action, Announce, HoldVip, Program, RunScript
from safekit.farm.buckets import BUCKETS
from safekit.farm.events import Command, CommandKind, Event, PeerLost, PeerStatus, ServingFailed
from safekit.farm.groups import (
    DEFAULT_GROUP,
    BalancingGroup,
    Slot,
    by_group,
    group,
    group_maps,
    owner_of,
    slots_of,
)
from safekit.farm.states import FarmMachine, FarmSettings, FarmState, PeerView, Phase, Then
from safekit.lifecycle import (
    CheckerAction,
    CheckerVerdict,
    CommandReply,
    Log,
    LogLevel,
    ResourceUp,
    Script,
    ScriptAction,
    ScriptDone,
    Tick,
)


@dataclass(frozen=True)
class Transition:
    state: FarmMachine
    actions: list[Action] = field(default_factory=list)


# ----------------------------------------------------------------------------- step
def step(settings: FarmSettings, state: FarmMachine, event: Event) -> Transition:
    before = state
    actions: list[Action] = []
    state = _handle(settings, state, event, actions)
    state = _rebalance(settings, state, _now(event), actions)
    if (before.state, before.readiness) != (state.state, state.readiness):
        actions.insert(
            0,
            Log(
                f"{before.state} ({before.readiness}) -> {state.state} ({state.readiness}): {state.reason}",
                LogLevel.INFO,
            ),
        )
        actions.append(Announce(state.state, state.readiness))
    return Transition(state, actions)


ALL_PROCESS_CLASSES = frozenset({"prim", "both", "pre", "second", "sec"})


def checker_applies(state: FarmMachine, when: str) -> bool:
    """Whether a checker of `when` acts on a "down" now: `pre` always; the others (a farm has no
    roles: prim, both and second all mean "while in the farm") while UP or WAITing for resources."""
    return when == "pre" or state.state is FarmState.UP or state.phase is Phase.WAITING


def errd_classes(state: FarmMachine) -> frozenset[str]:
    """The `<errd>` process classes that must be running now: every class while serving and no
    script runs (a script may stop or start the processes); none otherwise."""
    if state.phase is not Phase.SERVING or state.running is not None:
        return frozenset()
    return ALL_PROCESS_CLASSES


def next_deadline(settings: FarmSettings, state: FarmMachine) -> float | None:
    """When the machine wants a Tick (joining ends, a handover is due)."""
    deadlines = []
    if state.phase is Phase.JOINING:
        deadlines.append(state.listening_since + settings.join_after)
    if state.pending_due is not None:
        deadlines.append(state.pending_due)
    return min(deadlines, default=None)


def _now(event: Event) -> float:
    return event.now


def _handle(  # noqa: PLR0911, PLR0912 - one branch per event kind
    settings: FarmSettings, state: FarmMachine, event: Event, actions: list[Action]
) -> FarmMachine:
    match event:
        case Command():
            return _command(settings, state, event, actions)
        case PeerStatus(node=node, state=peer_state, readiness=readiness):
            if node == settings.local_node or node not in settings.nodes:
                return state
            peers = state.peer_map()
            view = PeerView(peer_state, readiness)
            if peers.get(node) != view:
                was = peers.get(node)
                peers[node] = view
                if (was is not None and was.member) != view.member:
                    verb = "joins" if view.member else "leaves"
                    actions.append(
                        Log(f"{node} {verb} the balancing set ({peer_state} {readiness})", LogLevel.INFO)
                    )
            return replace(state, peers=tuple(sorted(peers.items())))
        case PeerLost(node=node):
            peers = state.peer_map()
            was = peers.pop(node, None)
            if was is None:
                return state
            actions.append(Log(f"{node} lost: no farm heartbeat; its buckets move", LogLevel.WARNING))
            return replace(state, peers=tuple(sorted(peers.items())))
        case ScriptDone():
            return _script_done(settings, state, event, actions)
        case CheckerVerdict():
            return _verdict(settings, state, event, actions)
        case ResourceUp(resource=resource):
            if resource not in state.waiting_for:
                return state
            left = state.waiting_for - {resource}
            if left or state.phase is not Phase.WAITING:
                return replace(state, waiting_for=left)
            return _run(
                replace(state, waiting_for=left),
                Phase.STARTING,
                Script.START_BOTH,
                ScriptAction.START,
                actions,
                f"{resource} is up again: start_both",
            )
        case ServingFailed(detail=detail):
            if state.phase not in (Phase.SERVING, Phase.JOINING):
                return state
            actions.append(Log(f"cannot serve: {detail}", LogLevel.ERROR))
            return _stop_both(state, Then.WAIT, actions, f"cannot serve ({detail}): WAIT",
                              waiting_for=frozenset({"farm.rules"}))  # fmt: skip
        case Tick(now=now):
            if state.phase is Phase.JOINING and now >= state.listening_since + settings.join_after:
                return replace(state, phase=Phase.SERVING, reason="serving its share of the farm")
            return state
    return state


def _command(  # noqa: PLR0911 - one return per outcome
    settings: FarmSettings, state: FarmMachine, event: Command, actions: list[Action]
) -> FarmMachine:
    kind, phase = event.kind, state.phase
    reply = CommandReply(str(kind), True, "")
    if kind is CommandKind.START:
        if phase is not Phase.STOPPED:
            actions.append(replace(reply, accepted=False, reason=f"already started ({state.state})"))
            return state
        state = replace(state, restarts=(), waiting_for=frozenset(), forced=False)
        state = _run(state, Phase.PRESTART, Script.PRESTART, ScriptAction.START, actions, "start: prestart")
        actions.append(replace(reply, reason="starting"))
        return state
    if kind in (CommandKind.STOP, CommandKind.FORCESTOP):
        force = kind is CommandKind.FORCESTOP
        if phase is Phase.STOPPED:
            actions.append(replace(reply, accepted=False, reason="already stopped"))
            return state
        if phase in (Phase.STOPPING, Phase.POSTSTOP) and not force:
            actions.append(replace(reply, reason="already stopping"))
            return replace(state, then=Then.STOP)
        actions.append(replace(reply, reason="stopping"))
        return _stop_both(state, Then.STOP, actions, f"{kind}: stop_both", force=force)
    if kind in (CommandKind.RESTART, CommandKind.STOPSTART):
        if phase not in (Phase.SERVING, Phase.JOINING, Phase.WAITING):
            actions.append(
                replace(reply, accepted=False, reason=f"{kind} needs a started module ({state.state})")
            )
            return state
        then = Then.RESTART if kind is CommandKind.RESTART else Then.STOPSTART
        actions.append(replace(reply, reason=f"{kind}: stop_both, then start again"))
        if phase is Phase.WAITING:
            return _run(
                replace(state, waiting_for=frozenset()),
                Phase.STARTING,
                Script.START_BOTH,
                ScriptAction.START,
                actions,
                f"{kind}: start_both",
            )
        return _stop_both(state, then, actions, f"{kind}: stop_both")
    return state


def _script_done(  # noqa: PLR0911 - one return per outcome
    settings: FarmSettings, state: FarmMachine, event: ScriptDone, actions: list[Action]
) -> FarmMachine:
    if state.running is None or state.running[0] != event.run_id:
        return state  # a script abandoned by forcestop
    state = replace(state, running=None)
    detail = f" ({event.detail})" if event.detail else ""
    if event.script is Script.PRESTART:
        if not event.ok:
            actions.append(Log(f"prestart failed{detail}: going on, as SafeKit does", LogLevel.WARNING))
        return _run(state, Phase.STARTING, Script.START_BOTH, ScriptAction.START, actions, "start_both")
    if event.script is Script.START_BOTH:
        if not event.ok:
            actions.append(Log(f"start_both failed{detail}", LogLevel.ERROR))
            return _stop_both(state, Then.STOP, actions, f"start_both failed{detail}: stop")
        return replace(state, phase=Phase.JOINING, reason="listening to the farm before taking buckets")
    if event.script is Script.STOP_BOTH:
        if not event.ok:
            actions.append(Log(f"stop_both failed{detail}", LogLevel.WARNING))
        then = state.then
        if then is Then.RESTART:
            return _run(
                state, Phase.STARTING, Script.START_BOTH, ScriptAction.START, actions, "restart: start_both"
            )
        if then is Then.WAIT:
            resources = ", ".join(sorted(state.waiting_for)) or "a resource"
            return replace(state, phase=Phase.WAITING, reason=f"waiting for {resources}")
        return _run(state, Phase.POSTSTOP, Script.POSTSTOP, ScriptAction.STOP, actions, "poststop")
    # poststop
    if state.then is Then.STOPSTART:
        return _run(
            replace(state, then=Then.STOP),
            Phase.PRESTART,
            Script.PRESTART,
            ScriptAction.START,
            actions,
            "stopstart: prestart",
        )
    return replace(
        state, phase=Phase.STOPPED, reason=state.reason if state.forced else "stopped", forced=False
    )


def _verdict(  # noqa: PLR0911 - one return per outcome
    settings: FarmSettings, state: FarmMachine, event: CheckerVerdict, actions: list[Action]
) -> FarmMachine:
    if state.phase in (Phase.STOPPED, Phase.POSTSTOP) or (
        state.phase is Phase.STOPPING and state.then is Then.STOP
    ):
        return state
    why = f"{event.resource} down" + (f" ({event.detail})" if event.detail else "")
    action = event.action
    if action is CheckerAction.WAIT:
        waiting = state.waiting_for | {event.resource}
        if state.phase is Phase.WAITING:
            return replace(state, waiting_for=waiting)
        return _stop_both(state, Then.WAIT, actions, f"{why}: leave the farm and WAIT", waiting_for=waiting)
    if action is CheckerAction.STOP:
        return _stop_both(state, Then.STOP, actions, f"{why}: stop")
    now = event.now
    recent = (*(t for t in state.restarts if now - t < settings.loop_interval), now)
    if len(recent) > settings.maxloop:
        actions.append(Log(f"{why}: more than maxloop={settings.maxloop} restarts: stop", LogLevel.ERROR))
        return _stop_both(
            replace(state, restarts=recent), Then.STOP, actions, f"{why}: maxloop reached: stop"
        )
    then = Then.RESTART if action is CheckerAction.RESTART else Then.STOPSTART
    state = replace(state, restarts=recent)
    if state.phase is Phase.WAITING:
        return _run(state, Phase.STARTING, Script.START_BOTH, ScriptAction.START, actions, f"{why}: {action}")
    return _stop_both(state, then, actions, f"{why}: {action}")


def _run(  # noqa: PLR0917 - the script call, spelled out
    state: FarmMachine,
    phase: Phase,
    script: Script,
    action: ScriptAction,
    actions: list[Action],
    reason: str,
    forced: bool = False,
) -> FarmMachine:
    run_id = state.next_run_id
    nxt = replace(state, phase=phase, reason=reason, running=(run_id, script), next_run_id=run_id + 1)
    actions.append(RunScript(run_id, script, state.state, nxt.state, action, forced=forced))
    return nxt


def _stop_both(
    state: FarmMachine,
    then: Then,
    actions: list[Action],
    reason: str,
    *,
    force: bool = False,
    waiting_for: frozenset[str] | None = None,
) -> FarmMachine:
    """Leave the balancing set (the rebalance after this step drops VIP and rules), run stop_both."""
    state = replace(
        state,
        then=then,
        waiting_for=state.waiting_for if waiting_for is None else waiting_for,
        forced=force,
    )
    if state.phase in (Phase.STOPPING, Phase.POSTSTOP) and not force:
        return replace(state, reason=reason)
    if state.phase in (Phase.WAITING, Phase.POSTSTOP):  # stop_both already ran
        return _run(state, Phase.POSTSTOP, Script.POSTSTOP, ScriptAction.STOP, actions, reason, forced=force)
    return _run(state, Phase.STOPPING, Script.STOP_BOTH, ScriptAction.STOP, actions, reason, forced=force)


def _rebalance(settings: FarmSettings, state: FarmMachine, now: float, actions: list[Action]) -> FarmMachine:
    """Bring the programmed buckets (of every group) and the VIP in line with the balancing set."""
    serving = state.phase is Phase.SERVING
    members = state.members(settings.local_node)
    new_views = group_maps(settings.groups, members)
    if not serving:
        if state.vip_held:
            actions.append(HoldVip(False))
        if state.owned is not None:
            actions.append(Program(None))
        return replace(
            state, views=new_views, owned=None, pending=frozenset(), pending_due=None, vip_held=False
        )
    desired = slots_of(new_views, settings.local_node)
    owned = state.owned or frozenset()
    previous = state.views
    gains = desired - owned
    # Peers starting up may end their listening in this same instant and take their buckets before
    # hearing us: their share (in the map that counts them) waits for the handover delay too.
    joining = state.joining()
    expected = group_maps(settings.groups, members | joining) if joining else new_views
    immediate: set[Slot] = set()
    delayed: set[Slot] = set()
    for slot in gains:
        holder = owner_of(previous, slot) if previous is not None else None
        free = holder is None or holder == settings.local_node or holder not in members
        if free and owner_of(expected, slot) not in joining:
            immediate.add(slot)
        else:
            delayed.add(slot)
    pending_due = state.pending_due
    keep_pending = state.pending & delayed
    fresh = delayed - state.pending
    if fresh:
        pending_due = now + settings.handover_delay if not keep_pending else (pending_due or now)
    if pending_due is not None and now >= pending_due:
        immediate |= delayed
        delayed = set()
    new_owned = frozenset((owned & desired) | immediate)
    if not delayed:
        pending_due = None
    if state.owned is None or new_owned != state.owned:
        actions.append(Program(new_owned))
        if state.owned is not None:
            actions.append(
                Log(
                    f"buckets: {_counts(settings, owned, new_owned)}; balancing set "
                    f"{', '.join(sorted(members))}"
                    + (f"; {len(delayed)} more after handover" if delayed else ""),
                    LogLevel.INFO,
                )
            )
    if not state.vip_held:
        actions.append(HoldVip(True))
    return replace(
        state,
        views=new_views,
        owned=new_owned,
        pending=frozenset(delayed),
        pending_due=pending_due if delayed else None,
        vip_held=True,
    )


def _counts(settings: FarmSettings, before: frozenset[Slot], after: frozenset[Slot]) -> str:
    """`85 of 256 (+43 -0)`, per group when there are several: `web 85 of 256 (+43 -0), api ...`."""
    names = settings.group_names
    old, new = by_group(before, names), by_group(after, names)
    parts = [
        f"{len(new[name])} of {BUCKETS} (+{len(new[name] - old[name])} -{len(old[name] - new[name])})"
        for name in names
    ]
    if len(names) == 1:
        return parts[0]
    return ", ".join(f"{name} {part}" for name, part in zip(names, parts, strict=True))


def settings_for(
    local_node: str,
    groups: Sequence[BalancingGroup] | Mapping[str, int],
    *,
    join_after: float,
    handover_delay: float,
    maxloop: int = 3,
    loop_interval: float = 24 * 3600.0,
) -> FarmSettings:
    """`groups`: the balancing groups, or one group's powers (node -> power) for a single group."""
    if not math.isfinite(join_after) or join_after < 0:
        raise ValueError(f"join_after must be a non-negative duration, got {join_after!r}")
    if isinstance(groups, Mapping):
        groups = (group(DEFAULT_GROUP, groups),)
    if not groups:
        raise ValueError("a farm needs at least one balancing group")
    return FarmSettings(
        local_node=local_node,
        groups=tuple(groups),
        join_after=join_after,
        handover_delay=handover_delay,
        maxloop=maxloop,
        loop_interval=loop_interval,
    )
