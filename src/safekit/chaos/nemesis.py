"""The nemesis's schedule: which fault each round injects, how long it lasts, on which node (pure).

A run is reproducible from its seed: `schedule(seed, rounds)` deals the fault kinds like cards,
every kind once in a shuffled order before any kind comes again, so that a short run covers as
many kinds as it has rounds and a long run covers each kind about equally. Targets are roles
("primary", "secondary"), resolved when the round starts, since roles move with the faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    """The faults of issue 13, item 5. docs/chaos.md says what each does to the lab."""

    POWER_CUT_PRIMARY = "power_cut_primary"
    POWER_CUT_SECONDARY = "power_cut_secondary"
    PARTITION_WITNESS_BOTH = "partition_witness_both"
    """every path between the nodes cut; both still reach the witness (and the client)"""
    PARTITION_WITNESS_PRIMARY_SIDE = "partition_witness_primary_side"
    """every path between the nodes cut; only the primary reaches the witness"""
    PARTITION_WITNESS_SECONDARY_SIDE = "partition_witness_secondary_side"
    """every path between the nodes cut; only the secondary reaches the witness"""
    PARTITION_WITNESS_NEITHER = "partition_witness_neither"
    """every path between the nodes cut; neither reaches the witness"""
    LAN_CUT = "lan_cut"
    """one node's cable on one LAN of two"""
    CUT_PRIMARY = "cut_primary"
    """every cable of the primary pulled (the peer, the witness and the client lost at once), then
    plugged back after a short hold: what it sent while cut arrives late (ADR 0070)"""
    SAFEKITD_KILL_PRIMARY = "safekitd_kill_primary"
    """kill -9 of safekitd alone on the primary, started again 2 s later (Restart=on-failure)"""
    RFS_KILL_PRIMARY = "rfs_kill_primary"
    RFS_KILL_SECONDARY = "rfs_kill_secondary"
    CLEAN_RESTART_PRIMARY = "clean_restart_primary"
    """`safekit shutdown`, the node goes down and boots again"""
    CLEAN_RESTART_SECONDARY = "clean_restart_secondary"
    DISK_FULL_SECONDARY = "disk_full_secondary"
    """the file system under the secondary's replicated directory filled"""
    STOPSTART_PRIMARY = "stopstart_primary"
    """`safekit stopstart` on the primary, what a checker's stopstart action does: the in-sync
    secondary takes over while the primary stops (ADR 0060)"""
    FREEZE_SAFEKITD_PRIMARY = "freeze_safekitd_primary"
    """safekitd alone stopped (SIGSTOP) on the primary for the hold, then continued: a hung daemon
    whose application, VIP and replication go on (ADR 0010: the VIP it no longer renews expires)"""
    FREEZE_PRIMARY = "freeze_primary"
    """every process of the primary stopped for the hold, then continued: a paused VM, as close as
    a shared kernel allows (the node's kernel still answers for the VIP until its lifetime ends)"""
    FREEZE_RFS_SECONDARY = "freeze_rfs_secondary"
    """the secondary's replication process alone stopped for the hold, then continued: hung (a
    stalled disk, a swapped-out process) while its safekitd and heartbeats go on"""
    FREEZE_SECONDARY = "freeze_secondary"
    """every process of the secondary stopped for the hold, then continued: the primary must go on
    without the acknowledgements and heartbeats it no longer gets, and take the secondary back"""
    ONE_WAY_FROM_PRIMARY = "one_way_from_primary"
    """every frame the primary sends the secondary dropped, on every LAN, while the secondary's
    still reach the primary (a dead transmit pair, a half-broken link): the secondary hears
    nothing, the primary hears a peer that no longer hears it"""
    ONE_WAY_TO_PRIMARY = "one_way_to_primary"
    """every frame the secondary sends the primary dropped, on every LAN; the primary's still
    arrive: the secondary hears a primary that no longer hears it"""
    LOSSY_LINKS = "lossy_links"
    """a random share (LOSS %) of the frames between the nodes dropped, both ways, on every LAN:
    heartbeats and replication go on through a link that loses packets"""


ALL_KINDS: tuple[FaultKind, ...] = tuple(FaultKind)
NEEDS_WITNESS = frozenset(
    {
        FaultKind.PARTITION_WITNESS_PRIMARY_SIDE,
        FaultKind.PARTITION_WITNESS_SECONDARY_SIDE,
        FaultKind.PARTITION_WITNESS_NEITHER,
    }
)
CUT_HOLD = (1.5, 4.0)
"""Seconds a `cut_primary` lasts: around the takeover (1.7-2.5 s in the lab), and short enough that
the heartbeats the cut node queued for its peer are still queued when the cables come back."""
LOSS = (20, 60)
"""Percent of the frames between the nodes a `lossy_links` round drops (drawn per round)."""
SAFEKITD_RESTART_DELAY = 2.0
"""Seconds between the kill of safekitd and its restart, as systemd's Restart=on-failure does."""


@dataclass(frozen=True)
class Fault:
    """One round's fault, as the schedule dealt it."""

    round: int
    kind: FaultKind
    hold: float
    """seconds the fault lasts before the heal (for kills: before the node or process is started)"""
    settle: float
    """seconds of undisturbed workload before the fault"""
    target: str = ""
    """"primary" or "secondary" for LAN_CUT; empty for kinds whose target is in their name"""
    lan: str = ""
    """the LAN of a LAN_CUT"""
    loss: int = 0
    """percent of the frames a LOSSY_LINKS round drops"""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "round": self.round,
            "kind": str(self.kind),
            "hold_s": self.hold,
            "settle_s": self.settle,
        }
        if self.target:
            out["target"] = self.target
        if self.lan:
            out["lan"] = self.lan
        if self.loss:
            out["loss_percent"] = self.loss
        return out


def schedule(
    seed: int,
    rounds: int,
    *,
    kinds: tuple[FaultKind, ...] = ALL_KINDS,
    lans: tuple[str, ...] = ("default", "lan1"),
    hold: tuple[float, float] = (3.0, 8.0),
    settle: tuple[float, float] = (1.0, 3.0),
) -> list[Fault]:
    """The faults of `rounds` rounds from `seed`: the same seed always gives the same list."""
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, not {rounds}")
    if not kinds:
        raise ValueError("no fault kind to choose from")
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    deck: list[FaultKind] = []
    faults = []
    for number in range(1, rounds + 1):
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        kind = deck.pop()
        target = lan = ""
        loss = 0
        if kind is FaultKind.LAN_CUT:
            target = rng.choice(("primary", "secondary"))
            lan = rng.choice(lans)
        elif kind is FaultKind.LOSSY_LINKS:
            loss = rng.randint(*LOSS)
        faults.append(
            Fault(
                round=number,
                kind=kind,
                hold=round(rng.uniform(*(CUT_HOLD if kind is FaultKind.CUT_PRIMARY else hold)), 1),
                settle=round(rng.uniform(*settle), 1),
                target=target,
                lan=lan,
                loss=loss,
            )
        )
    return faults


def parse_kinds(text: str) -> tuple[FaultKind, ...]:
    """A comma-separated list of kind names (for --kinds); a clear error for an unknown one."""
    out = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        try:
            out.append(FaultKind(name))
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {name!r} (known: {known})") from None
    return tuple(out)
