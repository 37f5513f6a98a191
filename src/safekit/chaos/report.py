"""A round's verdict and the run's report (pure): the invariants of docs/chaos.md, checked on the
evidence `judge` extracted, and summed up by fault kind for bench/results/chaos.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from safekit.chaos.judge import OwnerEpisode, RfsStop

RECOVERY_BOUND = 60.0
"""Seconds after the heal within which the cluster must be PRIM/SECOND, both Ready, again."""
RFS_STOP_BOUND = 5.0
"""Seconds after a role change within which the node's replication process must have stopped."""


@dataclass
class RoundResult:
    round: int
    kind: str
    fault: dict[str, Any]
    primary_before: str
    secondary_before: str
    acknowledged: int = 0
    not_acknowledged: int = 0
    lost: list[int] = field(default_factory=list)
    """acknowledged records that went missing from the primary in this round"""
    two_owner_s: float = 0.0
    owner_episodes: list[OwnerEpisode] = field(default_factory=list)
    owners: dict[str, int] = field(default_factory=dict)
    gratuitous: dict[str, int] = field(default_factory=dict)
    longest_unavailability_s: float = 0.0
    acknowledging_nodes: dict[str, int] = field(default_factory=dict)
    pg_acknowledged: int = 0
    """PostgreSQL commits the client saw acknowledged in this round"""
    pg_lost: list[int] = field(default_factory=list)
    """acknowledged PostgreSQL commits (ids) that went missing from the primary in this round"""
    pg_longest_unavailability_s: float = 0.0
    """the longest the PostgreSQL workload went without an acknowledged commit in this round"""
    recovered: bool = False
    recovery_s: float | None = None
    """from the heal (or the fault, for faults with nothing to heal) to PRIM/SECOND, both Ready"""
    roles_after: dict[str, list[str]] = field(default_factory=dict)
    rfs_stops: list[RfsStop] = field(default_factory=list)
    rebooted: list[str] = field(default_factory=list)
    """nodes that lost power in this round (their replication process was killed with them)"""
    repairs: list[str] = field(default_factory=list)
    """what the harness had to do, as an operator would, after a round that did not recover"""
    notes: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def late_rfs_stops(self, bound: float = RFS_STOP_BOUND) -> list[RfsStop]:
        late = []
        for stop in self.rfs_stops:
            never = stop.seconds is None and stop.node not in self.rebooted
            if stop.killed or never or (stop.seconds is not None and stop.seconds > bound):
                late.append(stop)
        return late

    def violations(self, bound: float = RFS_STOP_BOUND) -> list[str]:
        """The invariants this round broke, one sentence each (empty: the round passed)."""
        out = []
        if self.two_owner_s > 0:
            spans = ", ".join(f"{e.seconds:.2f} s ({' + '.join(e.macs)})" for e in self.owner_episodes)
            out.append(f"two VIP owners seen by the client for {self.two_owner_s:.2f} s: {spans}")
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged records lost (first: {self.lost[:5]})")
        if self.pg_lost:
            out.append(
                f"{len(self.pg_lost)} acknowledged PostgreSQL commits lost (first: {self.pg_lost[:5]})"
            )
        if not self.recovered:
            out.append(f"not back to PRIM/SECOND in sync within the bound: {self.roles_after}")
        for stop in self.late_rfs_stops(bound):
            when = (
                "killed after the stop timeout"
                if stop.killed
                else ("never" if stop.seconds is None else f"after {stop.seconds:.1f} s")
            )
            out.append(f"{stop.node}: replication process stopped {when} ({stop.change})")
        if self.error:
            out.append(f"harness: {self.error}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "kind": self.kind,
            "fault": self.fault,
            "primary_before": self.primary_before,
            "secondary_before": self.secondary_before,
            "acknowledged": self.acknowledged,
            "not_acknowledged": self.not_acknowledged,
            "lost": len(self.lost),
            "lost_first": self.lost[:20],
            "two_owner_s": self.two_owner_s,
            "owner_episodes": [
                {"at_s": round(e.start, 3), "seconds": round(e.seconds, 3), "macs": list(e.macs)}
                for e in self.owner_episodes
            ],
            "arp_answers_by_mac": self.owners,
            "gratuitous_arp_by_mac": self.gratuitous,
            "longest_unavailability_s": self.longest_unavailability_s,
            "acknowledging_nodes": self.acknowledging_nodes,
            "pg_acknowledged": self.pg_acknowledged,
            "pg_lost": len(self.pg_lost),
            "pg_lost_first": self.pg_lost[:20],
            "pg_longest_unavailability_s": self.pg_longest_unavailability_s,
            "recovered": self.recovered,
            "recovery_s": self.recovery_s,
            "roles_after": self.roles_after,
            "rfs_stops": [
                {"node": s.node, "change": s.change, "role": s.role, "seconds": s.seconds, "killed": s.killed}
                for s in self.rfs_stops
            ],
            "repairs": self.repairs,
            "notes": self.notes,
            "violations": self.violations(),
        }


def _max(values: list[float]) -> float | None:
    return max(values) if values else None


def summarise(rounds: list[RoundResult]) -> dict[str, Any]:
    """Totals and per-kind figures of a run (the "totals" and "by_kind" of chaos.json)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for r in rounds:
        k = by_kind.setdefault(
            r.kind,
            {
                "rounds": 0,
                "acknowledged": 0,
                "lost": 0,
                "two_owner_s": 0.0,
                "longest_unavailability_s": 0.0,
                "pg_acknowledged": 0,
                "pg_lost": 0,
                "pg_longest_unavailability_s": 0.0,
                "not_recovered": 0,
                "recovery_max_s": None,
                "rfs_stop_max_s": None,
                "rfs_stops_late": 0,
                "rounds_failed": 0,
            },
        )
        k["rounds"] += 1
        k["acknowledged"] += r.acknowledged
        k["lost"] += len(r.lost)
        k["two_owner_s"] = round(k["two_owner_s"] + r.two_owner_s, 4)
        k["longest_unavailability_s"] = max(k["longest_unavailability_s"], r.longest_unavailability_s)
        k["pg_acknowledged"] += r.pg_acknowledged
        k["pg_lost"] += len(r.pg_lost)
        k["pg_longest_unavailability_s"] = max(
            k["pg_longest_unavailability_s"], r.pg_longest_unavailability_s
        )
        k["not_recovered"] += 0 if r.recovered else 1
        if r.recovery_s is not None:
            k["recovery_max_s"] = max(k["recovery_max_s"] or 0.0, r.recovery_s)
        stops = [s.seconds for s in r.rfs_stops if s.seconds is not None]
        if stops:
            k["rfs_stop_max_s"] = max(k["rfs_stop_max_s"] or 0.0, *stops)
        k["rfs_stops_late"] += len(r.late_rfs_stops())
        k["rounds_failed"] += 1 if r.violations() else 0
    totals = {
        "rounds": len(rounds),
        "acknowledged": sum(r.acknowledged for r in rounds),
        "lost": sum(len(r.lost) for r in rounds),
        "pg_acknowledged": sum(r.pg_acknowledged for r in rounds),
        "pg_lost": sum(len(r.pg_lost) for r in rounds),
        "longest_unavailability_s": max((r.longest_unavailability_s for r in rounds), default=0.0),
        "pg_longest_unavailability_s": max((r.pg_longest_unavailability_s for r in rounds), default=0.0),
        "two_owner_s": round(sum(r.two_owner_s for r in rounds), 4),
        "rounds_not_recovered": [r.round for r in rounds if not r.recovered],
        "rfs_stops_late": sum(len(r.late_rfs_stops()) for r in rounds),
        "rounds_failed": [r.round for r in rounds if r.violations()],
    }
    return {"totals": totals, "by_kind": dict(sorted(by_kind.items()))}


def passed(rounds: list[RoundResult]) -> bool:
    return bool(rounds) and not any(r.violations() for r in rounds)
