"""What the farm state machine asks the daemon to do (executed in order, one transition at a time).

`RunScript` returns at once and its end comes back as a `ScriptDone`; `Program` loads the farm's
nftables rules with the buckets this node owns; `HoldVip` adds or removes the VIP and its vMAC.
"""

from __future__ import annotations

from dataclasses import dataclass

from safekit.farm.groups import Slot
from safekit.farm.states import FarmState
from safekit.lifecycle import CommandReply, Log, Readiness, Script, ScriptAction


@dataclass(frozen=True)
class Announce:
    state: FarmState
    readiness: Readiness


@dataclass(frozen=True)
class RunScript:
    run_id: int
    script: Script
    current: FarmState
    next: FarmState
    action: ScriptAction
    forced: bool = False

    def argv(self) -> tuple[str, ...]:
        """Arguments in SafeKit's order: [force] current next action."""
        args = (str(self.current), str(self.next), str(self.action))
        return ("force", *args) if self.forced else args


@dataclass(frozen=True)
class Program:
    """Load the farm rules with these (group, bucket)s owned (None: remove the farm rules)."""

    owned: frozenset[Slot] | None


@dataclass(frozen=True)
class HoldVip:
    """Add (True) or remove (False) the VIP on this node; adding also announces the vMAC."""

    held: bool


Action = Log | Announce | RunScript | Program | HoldVip | CommandReply
