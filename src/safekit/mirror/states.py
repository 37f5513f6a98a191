"""States of a mirror module: what SafeKit shows, and what the machine remembers.

This module owns the state types. `MirrorState` is a frozen snapshot; the displayed SafeKit
state (STOP, WAIT, ALONE, PRIM, SECOND), the readiness (NotReady, Transient, Ready) and the role
announced to the peer are derived from the internal phase, so they can never disagree with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from safekit.lifecycle import Readiness, Script, ScriptAction
from safekit.mirror.witness import WitnessView


class ModuleState(StrEnum):
    """SafeKit's states of a mirror module (what `safekit state` prints)."""

    STOP = "STOP"
    WAIT = "WAIT"
    ALONE = "ALONE"
    PRIM = "PRIM"
    SECOND = "SECOND"


class Role(StrEnum):
    """What a node tells its peer about the primary role (carried in heartbeats).

    PRIMARY: this node's application or replication may run as primary (starting, serving,
    or still stopping). CANDIDATE: starting or waiting for a role; takes part in the election.
    SECONDARY: secondary (or becoming one). NONE: not competing (stopped, stopping, waiting for
    a resource).
    """

    PRIMARY = "primary"
    SECONDARY = "secondary"
    CANDIDATE = "candidate"
    NONE = "none"


class Intent(StrEnum):
    """An operator decision that overrides the automatic choice until it is consumed."""

    AUTO = "auto"
    PRIM = "prim"
    PRIMFORCE = "primforce"
    SECOND = "second"


class ReplicationRole(StrEnum):
    NONE = "none"
    PRIMARY = "primary"
    SECONDARY = "secondary"


class Phase(StrEnum):
    """Internal phase: a stable situation, or the script that is running."""

    STOPPED = "stopped"
    STARTING = "starting"  # prestart runs
    ELECTING = "electing"  # looking for the peer / agreeing on the primary
    WAITING = "waiting"  # WAIT: see wait_cause
    STARTING_PRIMARY = "starting_primary"  # start_prim runs
    PRIMARY = "primary"
    STARTING_SECONDARY = "starting_secondary"  # start_second runs
    SECONDARY = "secondary"
    STOPPING_PRIMARY = "stopping_primary"  # stop_prim runs; then see Running.then
    STOPPING_SECONDARY = "stopping_secondary"  # stop_second runs
    POSTSTOP = "poststop"


class WaitCause(StrEnum):
    STALE = "stale replica"
    WITNESS = "witness unreachable"
    FAILOVER_OFF = "failover off"
    RESOURCE = "resource down"


class Next(StrEnum):
    """Where a stop script leads once it has finished."""

    STOP = "stop"  # poststop, then STOP
    STOP_NOW = "stop_now"  # STOP without poststop (forcestop)
    WAIT = "wait"
    PRIMARY = "primary"  # takeover: start the primary role
    SECONDARY = "secondary"  # swap / step down: start the secondary role
    RESTART = "restart"  # same role again (restart command, checker restart)
    STARTUP = "startup"  # prestart and a new election (stopstart)


class Pending(StrEnum):
    """What to do when the running start script ends (it cannot be interrupted)."""

    STOP = "stop"
    FENCE = "fence"
    STOPSTART = "stopstart"


_PHASE_ROLE = {
    Phase.STOPPED: Role.NONE,
    # A starting node competes already, so that a simultaneous start is decided by the election
    # rules and not by whichever prestart ends first.
    Phase.STARTING: Role.CANDIDATE,
    Phase.ELECTING: Role.CANDIDATE,
    Phase.WAITING: Role.CANDIDATE,
    Phase.STARTING_PRIMARY: Role.PRIMARY,
    Phase.PRIMARY: Role.PRIMARY,
    # Still primary until stop_prim and replication are done, whatever comes next.
    Phase.STOPPING_PRIMARY: Role.PRIMARY,
    Phase.STARTING_SECONDARY: Role.SECONDARY,
    Phase.SECONDARY: Role.SECONDARY,
    Phase.STOPPING_SECONDARY: Role.NONE,
    Phase.POSTSTOP: Role.NONE,
}

PENDING_PRIORITY = {Pending.STOP: 3, Pending.FENCE: 2, Pending.STOPSTART: 1}


@dataclass(frozen=True)
class Running:
    """The script in flight, with the arguments it was given (to call it again with force)."""

    run_id: int
    script: Script
    action: ScriptAction
    current: ModuleState
    target: ModuleState
    forced: bool = False
    then: Next | None = None  # only for stop scripts


class ReplicaRank(NamedTuple):
    """How recent a copy is, compared field by field (rule 1).

    `confirmed` first: the newest generation at which the copy holds every acknowledged write. A
    generation is only a number its primary picked; until writes were acknowledged at it (alone,
    or with the peer in sync), the copy holds nothing its base did not hold. Two copies that went
    apart before either heard of the other's epoch can carry numbers in any order, so the number
    alone cannot say which one holds the acknowledged writes; the confirmed generation can (the
    witness lets only one side acknowledge alone). Then `generation`: between copies confirmed at
    the same generation, the higher number is the newer epoch (a takeover, a claim).
    """

    confirmed: int
    generation: int

    def describe(self) -> str:
        if self.confirmed == self.generation:
            return f"generation {self.generation}"
        return f"generation {self.generation} (acknowledged writes up to generation {self.confirmed})"


@dataclass(frozen=True)
class NodeStatus:
    """What a node announces in its heartbeats, and what the peer's machine reads."""

    node: str
    state: ModuleState
    readiness: Readiness
    role: Role
    generation: int
    uptodate: bool
    intent: Intent = Intent.AUTO
    last_primary: str | None = None
    # Who this node thinks should be primary now (election handshake), or None.
    verdict: str | None = None
    # The newest generation at which this node's copy holds every acknowledged write (see
    # MirrorState.generation_confirmed); None when it is the generation itself (also from a node
    # that does not announce it, before ADR 0045).
    confirmed: int | None = None
    # A primary made by primforce: the confirmed generation its copy had before the force (the
    # writes it holds), until its secondary is in sync. A peer whose copy holds writes
    # acknowledged above it saves them aside before resynchronising (ADR 0047). None: not forced.
    forced_base: int | None = None
    # A primary: the newest generation at which its copy and the peer's were the same (ADR 0072);
    # its copy holds every write acknowledged up to it. None: not a primary, or not known (a node
    # that does not announce it, or never in sync with the peer since it was installed).
    shared: int | None = None

    @property
    def rank(self) -> ReplicaRank:
        """How recent this node's copy is (what rule 1 compares)."""
        return ReplicaRank(self.generation if self.confirmed is None else self.confirmed, self.generation)

    @property
    def competing(self) -> bool:
        """Takes part in the election for the primary role."""
        return self.role in (Role.CANDIDATE, Role.SECONDARY) and self.intent is not Intent.SECOND

    @property
    def serving(self) -> bool:
        """Shown as ALONE or PRIM: holds (or is acquiring) the primary role right now."""
        return self.state in (ModuleState.ALONE, ModuleState.PRIM)


@dataclass(frozen=True)
class PersistedRecord:
    """What must survive a crash or reboot of the node."""

    state: ModuleState
    last_primary: str | None
    generation: int
    uptodate: bool
    peer_generation_seen: int
    # Absent from records written before ADR 0045 (None): the generation stands for the confirmed
    # one, as it did then.
    generation_confirmed: int | None = None
    peer_confirmed_seen: int | None = None
    # Absent (None) from records written before ADR 0047, and whenever the copy is not forced.
    forced_base: int | None = None
    # Absent (None) from records written before ADR 0072, and until the copies were once in sync.
    shared_generation: int | None = None


@dataclass(frozen=True)
class MirrorState:
    """Everything the mirror state machine knows and remembers on one node."""

    phase: Phase
    reason: str
    running: Running | None = None
    pending: Pending | None = None
    wait_cause: WaitCause | None = None
    waiting_resource: str | None = None
    intent: Intent = Intent.AUTO
    vip_held: bool = False
    replication: ReplicationRole = ReplicationRole.NONE
    uptodate: bool = False
    generation: int = 0
    # The newest generation at which this copy holds every acknowledged write: a primary's
    # generation once it may acknowledge writes alone at it or sees the peer in sync at it, a
    # secondary's once its copy is up to date at it. A primary's generation above it is a claim
    # (a new epoch, or the count-up when the peer stopped following) with no write acknowledged
    # yet: the copy holds nothing beyond what it held at the confirmed one (ADR 0045).
    generation_confirmed: int = 0
    peer_generation_seen: int = 0
    # The highest confirmed generation the peer announced (or evidence that it acknowledges
    # writes alone at a generation: the witness, the arbitrator).
    peer_confirmed_seen: int = 0
    # primforce made this copy the reference: the confirmed generation it had before (ADR 0047);
    # cleared once its secondary is in sync, or when it becomes a secondary itself.
    forced_base: int | None = None
    # The newest generation at which this copy and the peer's were the same: this node a secondary
    # up to date at it, or the primary of a secondary in sync at it (ADR 0072). A split starts
    # after it: whatever either side acknowledged since is at a higher generation. None: never.
    shared_generation: int | None = None
    last_primary: str | None = None
    peer: NodeStatus | None = None  # None: no heartbeat from the peer (lost or never seen)
    peer_absent_since: float | None = None
    witness: WitnessView = field(default_factory=WitnessView)
    election_deadline: float | None = None
    # Set when this node withdraws the consent its status gave the peer (see
    # election.consents_to): until then, a consent heard from the peer may predate the
    # withdrawal, and the peer may be acting on ours, so it does not start the primary role on it.
    handshake_not_before: float | None = None
    # Left the primary role by a stopstart while the peer was an up-to-date secondary: until this
    # time (or until the peer takes over, or can no longer), this node announces it does not
    # compete, so the peer takes the primary role over, as SafeKit's stopstart does.
    yield_until: float | None = None
    # Left the primary role after a split brain this node lost: its copy holds what it wrote since
    # the split until the secondary role starts (which saves it aside first, rule 4).
    diverged: bool = False
    # The primary's replication was told to fail held fsync calls (FenceReplication) and has not
    # been stopped or started again since.
    fenced: bool = False
    errors: tuple[float, ...] = ()
    next_run_id: int = 1
    now: float = 0.0

    @property
    def rank(self) -> ReplicaRank:
        return ReplicaRank(self.generation_confirmed, self.generation)

    @property
    def peer_rank_seen(self) -> ReplicaRank:
        """The newest the peer's copy was heard to be (or the arbitrator says a copy is)."""
        return ReplicaRank(self.peer_confirmed_seen, self.peer_generation_seen)

    @property
    def generation_unconfirmed(self) -> bool:
        """This node's generation is a claim: no write acknowledged at it yet (a new epoch, or the
        count-up of a primary whose peer stopped following). It counts up again only once
        confirmed (machine._count_up_alone)."""
        return self.generation > self.generation_confirmed

    @property
    def then(self) -> Next | None:
        return self.running.then if self.running is not None else None

    @property
    def _primary_state(self) -> ModuleState:
        peer_is_secondary = self.peer is not None and self.peer.role is Role.SECONDARY
        return ModuleState.PRIM if peer_is_secondary else ModuleState.ALONE

    @property
    def module_state(self) -> ModuleState:
        """The SafeKit state shown to operators; while a stop script runs, its destination."""
        phase = self.phase
        if phase in (Phase.STOPPED, Phase.POSTSTOP):
            return ModuleState.STOP
        if phase in (Phase.STARTING, Phase.ELECTING, Phase.WAITING):
            return ModuleState.WAIT
        if phase is Phase.STARTING_PRIMARY and self.pending is Pending.FENCE:
            # fenced while start_prim runs (it cannot be interrupted): the VIP is released and writes
            # fail already; it leaves for WAIT once the script ends - never shown as a primary
            return ModuleState.WAIT
        if phase in (Phase.STARTING_PRIMARY, Phase.PRIMARY):
            return self._primary_state
        if phase in (Phase.STARTING_SECONDARY, Phase.SECONDARY):
            return ModuleState.SECOND
        return self._stopping_target()

    def _stopping_target(self) -> ModuleState:
        then = self.then
        if then in (Next.STOP, Next.STOP_NOW):
            return ModuleState.STOP
        if then is Next.PRIMARY:
            return self._primary_state
        if then is Next.SECONDARY:
            return ModuleState.SECOND
        if then is Next.RESTART:
            return self._primary_state if self.phase is Phase.STOPPING_PRIMARY else ModuleState.SECOND
        return ModuleState.WAIT

    @property
    def readiness(self) -> Readiness:
        if self.phase in (Phase.STOPPED, Phase.WAITING):
            return Readiness.NOT_READY
        if self.phase is Phase.PRIMARY:
            return Readiness.READY
        if self.phase is Phase.SECONDARY:
            return Readiness.READY if self.uptodate else Readiness.TRANSIENT
        return Readiness.TRANSIENT

    @property
    def role(self) -> Role:
        phase, then = self.phase, self.then
        if phase is Phase.STOPPING_SECONDARY:
            # Taking over: the peer must treat this node as primary already.
            return {Next.PRIMARY: Role.PRIMARY, Next.RESTART: Role.SECONDARY}.get(
                then or Next.STOP, Role.NONE
            )
        if self.yield_until is not None and phase in (Phase.STARTING, Phase.ELECTING):
            return Role.NONE  # handing the primary role over after a stopstart
        if phase is Phase.WAITING:
            return Role.NONE if self.wait_cause is WaitCause.RESOURCE else Role.CANDIDATE
        return _PHASE_ROLE[phase]

    @property
    def claims_primary(self) -> bool:
        """Serves, or is on its way to serve, as primary (what the witness rule guards)."""
        if self.phase is Phase.PRIMARY:
            return True
        if self.phase is Phase.STARTING_PRIMARY:
            return self.pending is not Pending.FENCE
        if self.phase is Phase.STOPPING_PRIMARY:
            return self.then is Next.RESTART
        return self.phase is Phase.STOPPING_SECONDARY and self.then is Next.PRIMARY

    def persisted(self) -> PersistedRecord:
        return PersistedRecord(
            state=self.module_state,
            last_primary=self.last_primary,
            generation=self.generation,
            uptodate=self.uptodate,
            peer_generation_seen=self.peer_generation_seen,
            generation_confirmed=self.generation_confirmed,
            peer_confirmed_seen=self.peer_confirmed_seen,
            forced_base=self.forced_base,
            shared_generation=self.shared_generation,
        )

    def status(self, node: str, verdict: str | None = None) -> NodeStatus:
        return NodeStatus(
            node=node,
            state=self.module_state,
            readiness=self.readiness,
            role=self.role,
            generation=self.generation,
            uptodate=self.uptodate,
            intent=self.intent,
            last_primary=self.last_primary,
            verdict=verdict,
            # Said only when it differs (what the heartbeat's optional extension carries).
            confirmed=None if self.generation_confirmed == self.generation else self.generation_confirmed,
            forced_base=self.forced_base if self.role is Role.PRIMARY else None,
            shared=self.shared_generation if self.role is Role.PRIMARY else None,
        )
