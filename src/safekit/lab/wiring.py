"""What the switch must look like for a given lab state: link states and isolation rules (pure).

`lab cut`, `kill`, `isolate`, `drop` and `heal` only change the lab's recorded state; the switch is then
rendered from that state as a whole, so a repeated or interrupted command converges to the same
wiring instead of accumulating rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from safekit.lab.topology import LabPlan

ISOLATION_TABLE = "sklab_isolation"


@dataclass
class FaultState:
    """Faults injected in a lab, as recorded in its state file."""

    killed: set[str] = field(default_factory=set)
    cuts: set[tuple[str, str]] = field(default_factory=set)
    """(host, LAN name) pairs whose cable is pulled."""
    isolations: set[frozenset[str]] = field(default_factory=set)
    """Pairs of hosts that cannot exchange any frame."""
    drops: dict[tuple[str, str], int] = field(default_factory=dict)
    """(sender, receiver) -> percent of the sender's frames to the receiver that the switch drops,
    on every LAN of both: 100 a one-way cut (a dead transmit pair, a half-broken link), less a
    lossy link (each frame drawn on its own). The other direction is its own entry."""

    def heal(self, host: str | None = None) -> None:
        """Plug every cable back and remove isolations (of one host, or all). Killed hosts stay down."""
        if host is None:
            self.cuts.clear()
            self.isolations.clear()
            self.drops.clear()
            return
        self.cuts = {(h, lan) for h, lan in self.cuts if h != host}
        self.isolations = {pair for pair in self.isolations if host not in pair}
        self.drops = {pair: share for pair, share in self.drops.items() if host not in pair}

    def to_json(self) -> dict[str, Any]:
        return {
            "killed": sorted(self.killed),
            "cuts": sorted([h, lan] for h, lan in self.cuts),
            "isolations": sorted(sorted(pair) for pair in self.isolations),
            "drops": sorted([a, b, share] for (a, b), share in self.drops.items()),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultState:
        return cls(
            killed={str(h) for h in data.get("killed", [])},
            cuts={(str(c[0]), str(c[1])) for c in data.get("cuts", []) if isinstance(c, list)},
            isolations={frozenset(p) for p in data.get("isolations", []) if isinstance(p, list)},
            drops={
                (str(d[0]), str(d[1])): int(d[2])
                for d in data.get("drops", [])
                if isinstance(d, list) and len(d) == 3
            },
        )


def port_states(plan: LabPlan, faults: FaultState) -> dict[str, bool]:
    """Switch port name -> whether it should be up. A killed host has lost power: all its links are down."""
    states: dict[str, bool] = {}
    for host in plan.hosts:
        for lan in plan.host_lans(host):
            states[host.switch_port(lan)] = (
                host.name not in faults.killed and (host.name, lan.name) not in faults.cuts
            )
    return states


def _quoted_set(names: Iterable[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in sorted(names)) + " }"


def isolation_ruleset(plan: LabPlan, faults: FaultState) -> str:
    """An nftables script for the switch namespace that replaces the isolation table atomically.

    Filtering is done by bridge port in the bridge `forward` hook, which also sees each copy of a
    flooded frame: ARP, broadcasts and traffic to virtual IPs are cut too, whichever host holds them.
    Isolations drop both directions; `drops` one direction each, all frames or a random share.
    """
    lines = [
        f"table bridge {ISOLATION_TABLE}",
        f"delete table bridge {ISOLATION_TABLE}",
        f"table bridge {ISOLATION_TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    for pair in sorted(sorted(p) for p in faults.isolations):
        a, b = (plan.host(name) for name in pair)
        ports_a = [a.switch_port(lan) for lan in plan.host_lans(a)]
        ports_b = [b.switch_port(lan) for lan in plan.host_lans(b)]
        lines.append(f"    iifname {_quoted_set(ports_a)} oifname {_quoted_set(ports_b)} drop")
        lines.append(f"    iifname {_quoted_set(ports_b)} oifname {_quoted_set(ports_a)} drop")
    for (sender, receiver), share in sorted(faults.drops.items()):
        a, b = plan.host(sender), plan.host(receiver)
        ports_a = [a.switch_port(lan) for lan in plan.host_lans(a)]
        ports_b = [b.switch_port(lan) for lan in plan.host_lans(b)]
        # each frame drawn on its own: `numgen random mod 100` is 0..99, below `share` in share % of frames
        chance = "" if share >= 100 else f"numgen random mod 100 < {share} "
        lines.append(f"    iifname {_quoted_set(ports_a)} oifname {_quoted_set(ports_b)} {chance}drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"
