"""Farm modules: all nodes active, the load spread over the healthy ones by the kernel.

- `buckets`: the bucket map (pure): 256 buckets dealt by power, sticky, the same on every node.
- `states`, `events`, `actions`, `machine`: one node's farm state machine (pure), in the mirror's
  file shape: STOP / WAIT / UP, the buckets it serves; the vocabulary both machines share (scripts,
  checker verdicts, ticks, log lines, command replies) is `safekit.lifecycle`'s.
- `nft`: the nftables rules that make each node answer only its buckets (vmac_invisible), as
  JSON; `daemon/farm_kernel.py` loads them.
- `status_codec`: what a farm node announces in its heartbeats (state, readiness), and back.

Everything here is pure: no sockets, no subprocesses, no clock. The names below are the machine's
interface, as `safekit.mirror` gives the mirror's.
"""

from safekit.farm.actions import Action, Announce, HoldVip, Program, RunScript
from safekit.farm.events import Command, CommandKind, Event, PeerLost, PeerStatus, ServingFailed
from safekit.farm.groups import BalancingGroup, Slot
from safekit.farm.machine import (
    Transition,
    checker_applies,
    errd_classes,
    next_deadline,
    settings_for,
    step,
)
from safekit.farm.states import FarmMachine, FarmSettings, FarmState, PeerView, Phase, Then, initial_state
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

__all__ = [
    "Action",
    "Announce",
    "BalancingGroup",
    "CheckerAction",
    "CheckerVerdict",
    "Command",
    "CommandKind",
    "CommandReply",
    "Event",
    "FarmMachine",
    "FarmSettings",
    "FarmState",
    "HoldVip",
    "Log",
    "LogLevel",
    "PeerLost",
    "PeerStatus",
    "PeerView",
    "Phase",
    "Program",
    "Readiness",
    "ResourceUp",
    "RunScript",
    "Script",
    "ScriptAction",
    "ScriptDone",
    "ScriptOutcome",
    "ServingFailed",
    "Slot",
    "Then",
    "Tick",
    "Transition",
    "checker_applies",
    "errd_classes",
    "initial_state",
    "next_deadline",
    "settings_for",
    "step",
]
