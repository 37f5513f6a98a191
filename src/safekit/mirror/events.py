"""What happens to a mirror module: the events the daemon feeds to the state machine.

This module owns the event types. Every event carries `now`, the daemon's monotonic clock in
seconds; the machine has no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from safekit.lifecycle import CheckerVerdict, ResourceUp, ScriptDone, Tick
from safekit.mirror.actions import Action
from safekit.mirror.states import NodeStatus, ReplicaRank, ReplicationRole


class CommandKind(StrEnum):
    """Operator commands with SafeKit's names (`waitstate` is a CLI-side wait: not here)."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    STOPSTART = "stopstart"
    FORCESTOP = "forcestop"
    PRIM = "prim"
    SECOND = "second"
    SWAP = "swap"
    PRIMFORCE = "primforce"


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    now: float


@dataclass(frozen=True)
class PeerHeartbeat:
    """A heartbeat from the peer arrived on at least one LAN (authenticated by membership)."""

    status: NodeStatus
    now: float


@dataclass(frozen=True)
class PeerLost:
    """Every LAN timed out: no heartbeat from the peer for the heartbeat timeout."""

    now: float


@dataclass(frozen=True)
class WitnessResult:
    """One answer of the split-brain checker (only meaningful with a witness configured).

    ping: `reachable` = the witness answered; `other` = a MAC address other than ours answered
    for the virtual IP (the daemon's ARP probe, made while this node does not serve).
    arbitrator: `reachable` = the lease was granted to this node; `other` = the node the
    arbitrator says holds it; neither = no answer; `vip_checked` = the daemon probed who answers
    for the VIP with this answer, `vip_owner` = another owner it saw (else nobody).
    `sent_at` = when the probe or request left (the answer proves something about that moment,
    not about `now`). `known_generation` above this node's generation makes its copy stale.
    """

    reachable: bool
    now: float
    sent_at: float | None = None
    other: str | None = None
    vip_checked: bool = False
    vip_owner: str | None = None
    # arbitrator: the replica generation (and confirmed generation, None: the same) the request
    # carried, and the highest copy rank the arbitrator knows for the module (it grants nothing
    # to an older copy; known_confirmed None: the same as known_generation)
    generation: int | None = None
    known_generation: int | None = None
    confirmed: int | None = None
    known_confirmed: int | None = None

    @property
    def known(self) -> ReplicaRank | None:
        """The highest copy rank the arbitrator knows for the module (None: not said)."""
        if self.known_generation is None:
            return None
        confirmed = self.known_generation if self.known_confirmed is None else self.known_confirmed
        return ReplicaRank(confirmed, self.known_generation)


@dataclass(frozen=True)
class ReplicaStatus:
    """The replication process's view of the local copy (`rfs.uptodate`, generation)."""

    uptodate: bool
    now: float
    generation: int | None = None


@dataclass(frozen=True)
class ReplicationExited:
    """The replication process of `role` died without being asked to stop (killed, crashed). On a
    primary its FUSE mount is dead: the application's open files on it fail."""

    role: ReplicationRole
    now: float
    detail: str = ""


@dataclass(frozen=True)
class ActionFailed:
    """A non-script action failed when the daemon executed it."""

    action: Action
    detail: str
    now: float


Event = (
    Command
    | PeerHeartbeat
    | PeerLost
    | WitnessResult
    | ReplicaStatus
    | ReplicationExited
    | ScriptDone
    | CheckerVerdict
    | ResourceUp
    | ActionFailed
    | Tick
)
