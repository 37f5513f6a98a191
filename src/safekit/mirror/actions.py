"""What the mirror state machine asks the daemon to do.

This module owns the action types. The daemon executes the actions of one transition in order.
Contract with the daemon:

- `RunScript` starts a restart script and returns at once; its end comes back as a `ScriptDone`
  event carrying the same `run_id`. A script that cannot even be launched comes back as
  `ScriptDone(outcome=FAILED)`.
- Every other action is executed before the next one; when one fails, the daemon carries on
  with the rest of the batch and then feeds `ActionFailed(action, detail)`. `ReleaseVip` is
  retried by the daemon within `split_brain_bound` before it reports a failure.
- `QueryWitness` asks for one split-brain checker run; its answer is a `WitnessResult`. While
  the peer is lost the daemon also polls the witness on its own, more often than
  `split_brain_bound`.
- `Announce` gives the status to put in every heartbeat from now on.
"""

from __future__ import annotations

from dataclasses import dataclass

from safekit.lifecycle import CommandReply, Log, Script, ScriptAction
from safekit.mirror.states import ModuleState, NodeStatus, PersistedRecord, ReplicationRole


@dataclass(frozen=True)
class RunScript:
    run_id: int
    script: Script
    current: ModuleState
    next: ModuleState
    action: ScriptAction
    # A forced stop script gets "force" as first argument (SafeKit does this after a stop
    # script timed out); the application must then be stopped by any means.
    forced: bool = False

    def argv(self) -> tuple[str, ...]:
        """Arguments in SafeKit's order: [force] current next action."""
        args = (str(self.current), str(self.next), str(self.action))
        return ("force", *args) if self.forced else args


@dataclass(frozen=True)
class KillScript:
    """Abandon a running script (forcestop); its late `ScriptDone` is ignored."""

    run_id: int
    script: Script


@dataclass(frozen=True)
class AcquireVip:
    """Put the virtual IP on this node (ARP, cloud route, load-balancer probe 200)."""


@dataclass(frozen=True)
class ReleaseVip:
    """Remove the virtual IP from this node (and answer 404 to load-balancer probes)."""


@dataclass(frozen=True)
class StartReplication:
    role: ReplicationRole
    diverged: bool = False
    """The secondary role after a split brain this node lost: what it wrote since the split is
    saved aside before the resynchronisation overwrites it (rule 4)."""


@dataclass(frozen=True)
class StopReplication:
    pass


@dataclass(frozen=True)
class FenceReplication:
    """This primary stops serving without its peer (the witness rule): the replication process
    fails the `fsync` calls it holds, and any new one, with EIO - nothing is acknowledged alone -
    so that the application is not stuck in them while stop_prim stops it."""


@dataclass(frozen=True)
class QueryWitness:
    """Run the split-brain checker now; the answer comes back as `WitnessResult`."""


@dataclass(frozen=True)
class Persist:
    """Write the record under SAFEVAR (temp + fsync + rename) before what follows."""

    record: PersistedRecord


@dataclass(frozen=True)
class Announce:
    """Status to send in heartbeats from now on (the peer's state machine reads it)."""

    status: NodeStatus


Action = (
    Log
    | RunScript
    | KillScript
    | AcquireVip
    | ReleaseVip
    | StartReplication
    | StopReplication
    | FenceReplication
    | QueryWitness
    | Persist
    | Announce
    | CommandReply
)
