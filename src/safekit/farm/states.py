"""A farm node's state: what it is doing (phase), what it sees of the farm, and its settings.

Pure data; `machine.py` holds the transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from safekit.farm.groups import BalancingGroup, GroupMaps, Slot, farm_nodes_of
from safekit.lifecycle import Readiness, Script


class FarmState(StrEnum):
    STOP = "STOP"
    WAIT = "WAIT"
    UP = "UP"


class Phase(StrEnum):
    STOPPED = "stopped"
    PRESTART = "prestart"
    STARTING = "starting"  # start_both runs
    JOINING = "joining"  # listening for the farm before taking buckets
    SERVING = "serving"
    STOPPING = "stopping"  # stop_both runs; then see `then`
    POSTSTOP = "poststop"
    WAITING = "waiting"  # WAIT: a resource is down


class Then(StrEnum):
    """What follows stop_both."""

    STOP = "stop"
    WAIT = "wait"
    RESTART = "restart"  # start_both again (local restart)
    STOPSTART = "stopstart"  # poststop, prestart, start_both


@dataclass(frozen=True)
class FarmSettings:
    local_node: str
    groups: tuple[BalancingGroup, ...]
    """The balancing groups: each one's nodes and their power (weight); each has its own map."""
    join_after: float
    """How long a node listens to the farm before it takes buckets (the membership timeout)."""
    handover_delay: float
    maxloop: int = 3
    loop_interval: float = 24 * 3600.0

    @property
    def nodes(self) -> frozenset[str]:
        """Every node some group balances to."""
        return farm_nodes_of(self.groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)


@dataclass(frozen=True)
class PeerView:
    state: FarmState
    readiness: Readiness

    @property
    def member(self) -> bool:
        return self.state is FarmState.UP and self.readiness is Readiness.READY


@dataclass(frozen=True)
class FarmMachine:
    phase: Phase = Phase.STOPPED
    reason: str = "stopped"
    listening_since: float = 0.0
    peers: tuple[tuple[str, PeerView], ...] = ()
    views: GroupMaps | None = None
    """Each group's map of the balancing set as this node sees it now (None: not computed yet)."""
    owned: frozenset[Slot] | None = None
    """(group, bucket)s programmed in the kernel (None: no farm rules loaded)."""
    pending: frozenset[Slot] = frozenset()
    pending_due: float | None = None
    vip_held: bool = False
    running: tuple[int, Script] | None = None
    next_run_id: int = 1
    then: Then = Then.STOP
    waiting_for: frozenset[str] = frozenset()
    restarts: tuple[float, ...] = ()
    forced: bool = False

    @property
    def state(self) -> FarmState:
        phase = self.phase
        if phase in (Phase.STOPPED, Phase.POSTSTOP):
            return FarmState.STOP
        if phase in (Phase.PRESTART, Phase.WAITING):
            return FarmState.WAIT
        if phase is Phase.STOPPING:
            return {Then.STOP: FarmState.STOP, Then.WAIT: FarmState.WAIT}.get(self.then, FarmState.UP)
        return FarmState.UP

    @property
    def module_state(self) -> FarmState:
        """The state shown to operators (the name the daemon uses for every module kind)."""
        return self.state

    @property
    def readiness(self) -> Readiness:
        if self.phase in (Phase.STOPPED, Phase.WAITING):
            return Readiness.NOT_READY
        if self.phase is Phase.SERVING:
            return Readiness.READY
        return Readiness.TRANSIENT

    @property
    def member(self) -> bool:
        return self.phase is Phase.SERVING

    def peer_map(self) -> dict[str, PeerView]:
        return dict(self.peers)

    def joining(self) -> frozenset[str]:
        """Peers starting up (UP Transient): members soon, maybe in this very instant."""
        return frozenset(
            name
            for name, view in self.peers
            if view.state is FarmState.UP and view.readiness is Readiness.TRANSIENT
        )

    def members(self, local_node: str) -> frozenset[str]:
        names = {name for name, view in self.peers if view.member}
        if self.member:
            names.add(local_node)
        return frozenset(names)


def initial_state(now: float) -> FarmMachine:
    """A module just loaded: stopped, and listening to the farm from `now`."""
    return FarmMachine(listening_since=now)
