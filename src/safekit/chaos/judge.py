"""What a round's evidence means (pure): VIP owners seen by the client's ARP probe, acknowledged
records and PostgreSQL commits missing from the primary, the client's longest wait, the
replication processes' stops.

Inputs are the lines that `arpprobe`, `workload` and `pgworkload` print on the client host, the
records and the committed ids read back through the VIP, and the nodes' module logs; times are
CLOCK_MONOTONIC seconds (module log times are converted by the caller's offset). Definitions are
those of docs/chaos.md.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

RECORD = re.compile(rb"^(\d{10}) ([0-9a-f]{8})$")
MAX_PROBE_INTERVAL = 0.2
"""A request's share of the timeline is at most this long (a stalled probe is not evidence)."""


# ---------------------------------------------------------------------- the ARP probe
@dataclass(frozen=True)
class ProbeEvidence:
    sends: dict[int, float] = field(default_factory=dict)
    """request number -> time sent"""
    answers: dict[int, set[str]] = field(default_factory=dict)
    """request number -> MAC addresses that answered it"""
    gratuitous: list[tuple[float, str]] = field(default_factory=list)


def parse_probe(lines: Iterable[str]) -> ProbeEvidence:
    evidence = ProbeEvidence()
    for line in lines:
        parts = line.split()
        try:
            if parts[0] == "S" and len(parts) == 3:
                evidence.sends[int(parts[1])] = float(parts[2])
            elif parts[0] == "R" and len(parts) == 4:
                evidence.answers.setdefault(int(parts[1]), set()).add(parts[3])
            elif parts[0] == "G" and len(parts) >= 3:
                evidence.gratuitous.append((float(parts[1]), parts[2]))
        except (IndexError, ValueError):
            continue
    return evidence


@dataclass(frozen=True)
class OwnerEpisode:
    start: float
    end: float
    macs: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class OwnerVerdict:
    two_owner_seconds: float
    episodes: list[OwnerEpisode]
    requests: int
    unanswered_seconds: float
    owners: dict[str, int]
    """MAC -> requests it answered"""
    gratuitous: dict[str, int]
    """MAC -> gratuitous ARPs it sent"""


def vip_owners(
    evidence: ProbeEvidence, start: float, end: float, max_interval: float = MAX_PROBE_INTERVAL
) -> OwnerVerdict:
    """Seconds with two VIP owners in [start, end): the summed share of the timeline of every ARP
    request that two or more different MAC addresses answered. A request's share runs from its
    sending to the next request's (at most `max_interval`; the window's last request: as long as
    the one before it)."""
    seqs = sorted(s for s, t in evidence.sends.items() if start <= t < end)
    two = unanswered = 0.0
    doubled: list[tuple[float, float, set[str]]] = []
    owners: dict[str, int] = {}
    for i, seq in enumerate(seqs):
        t = evidence.sends[seq]
        if i + 1 < len(seqs):
            share = min(max_interval, evidence.sends[seqs[i + 1]] - t)
        elif i > 0:  # the last request of the window: as long as the one before it
            share = min(max_interval, t - evidence.sends[seqs[i - 1]])
        else:
            share = max_interval
        macs = evidence.answers.get(seq, set())
        for mac in macs:
            owners[mac] = owners.get(mac, 0) + 1
        if not macs:
            unanswered += share
        if len(macs) >= 2:
            two += share
            doubled.append((t, t + share, macs))
    gratuitous: dict[str, int] = {}
    for t, mac in evidence.gratuitous:
        if start <= t < end:
            gratuitous[mac] = gratuitous.get(mac, 0) + 1
    return OwnerVerdict(
        round(two, 4), _episodes(doubled), len(seqs), round(unanswered, 4), owners, gratuitous
    )


def _episodes(doubled: list[tuple[float, float, set[str]]]) -> list[OwnerEpisode]:
    """Doubly answered requests that follow each other (no gap between their shares), merged."""
    episodes: list[OwnerEpisode] = []
    for t, until, macs in doubled:
        last = episodes[-1] if episodes else None
        if last is not None and t <= last.end + 1e-9:
            episodes[-1] = OwnerEpisode(last.start, until, tuple(sorted(set(last.macs) | macs)))
        else:
            episodes.append(OwnerEpisode(t, until, tuple(sorted(macs))))
    return episodes


# ---------------------------------------------------------------------- the workload
@dataclass(frozen=True)
class Ack:
    number: int
    sent: float
    acked: float
    node: str


def parse_workload(lines: Iterable[str]) -> tuple[list[Ack], int]:
    """(acknowledged records in order, count of requests not acknowledged); `workload`'s lines
    and `pgworkload`'s alike (its NODE is "pg")."""
    acks: list[Ack] = []
    failed = 0
    for line in lines:
        parts = line.split()
        if len(parts) != 5:
            continue
        try:
            if parts[0] == "A":
                acks.append(Ack(int(parts[1]), float(parts[2]), float(parts[3]), parts[4]))
            elif parts[0] == "F":
                failed += 1
        except ValueError:
            continue
    return acks, failed


def record_line(number: int) -> bytes:
    """The journal line of record `number` (what examples/modules/chaosapp/bin/appendsvc.py writes)."""
    text = f"{number:010d}"
    return f"{text} {zlib.crc32(text.encode()):08x}\n".encode()


def parse_records(data: bytes) -> set[int]:
    """Record numbers of every whole, intact journal line (a torn or corrupt line counts for none)."""
    present = set()
    for line in data.split(b"\n"):
        match = RECORD.match(line)
        if match and int(match.group(2), 16) == zlib.crc32(match.group(1)):
            present.add(int(match.group(1)))
    return present


def parse_ids(text: str) -> set[int]:
    """The ids psql printed, one a line (`COPY chaos_commits (id) TO STDOUT`); other lines count
    for none."""
    present = set()
    for line in text.splitlines():
        word = line.strip()
        if word.isdigit():
            present.add(int(word))
    return present


def lost_records(acks: Iterable[Ack], present: set[int]) -> list[int]:
    """Acknowledged record numbers (or commit ids) that the primary does not hold."""
    return sorted({a.number for a in acks} - present)


def longest_wait(ack_times: Sequence[float], start: float, end: float) -> float:
    """The longest time the client went without an acknowledgement during [start, end]: gaps
    between consecutive acknowledgements (the one before `start` included), and from the last one
    to `end`. `ack_times` must be sorted."""
    before = [t for t in ack_times if t <= start]
    points = [before[-1] if before else start]
    points += [t for t in ack_times if start < t <= end]
    points.append(end)
    return round(max(b - a for a, b in itertools.pairwise(points)), 4)


def acknowledging_nodes(acks: Iterable[Ack], start: float, end: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in acks:
        if start <= a.acked < end:
            out[a.node] = out.get(a.node, 0) + 1
    return out


# ---------------------------------------------------------------------- module logs
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_lines(text: str, wall_to_monotonic: float) -> list[tuple[float, str]]:
    """(monotonic time, message) of each timestamped line of a module log; the log's local wall
    time is converted with `wall_to_monotonic` (monotonic - wall clock, measured by the caller)."""
    out = []
    for line in text.splitlines():
        match = LOG_TIME.match(line)
        if not match:
            continue
        wall = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        out.append((wall + wall_to_monotonic, line[match.end() :]))
    return out


TRANSITION = re.compile(r"\b(PRIM|ALONE|SECOND|WAIT|STOP)\b \(\w+\) -> (PRIM|ALONE|SECOND|WAIT|STOP)\b")
RFS_STOPPED = re.compile(r"replication (primary|secondary) stopped")
RFS_KILLED = "the replication process did not stop within"


@dataclass(frozen=True)
class RfsStop:
    """One stop of a replication process after a role change, as the module log tells it."""

    node: str
    role: str
    change_at: float
    change: str
    seconds: float | None
    """from the role change to "replication ... stopped"; None when it never said so"""
    killed: bool


def rfs_stops(node: str, lines: Sequence[tuple[float, str]], start: float, end: float) -> list[RfsStop]:
    """Each role change in [start, end) away from a role that runs replication (PRIM, ALONE,
    SECOND), and how long until the log next says a replication process stopped (before `end`;
    None if it did not). A process left running into the next role (stopped only when that role
    starts its own) counts until then."""
    out = []
    for i, (t, text) in enumerate(lines):
        if not start <= t < end:
            continue
        match = TRANSITION.search(text)
        if not match or match.group(1) == match.group(2):
            continue
        before, after = match.group(1), match.group(2)
        if before not in ("PRIM", "ALONE", "SECOND") or {before, after} == {"PRIM", "ALONE"}:
            continue
        stopped_at: float | None = None
        role = ""
        killed = False
        for t2, text2 in lines[i + 1 :]:
            if t2 >= end:
                break
            if RFS_KILLED in text2:
                killed = True
            stop = RFS_STOPPED.search(text2)
            if stop:
                stopped_at, role = t2, stop.group(1)
                break
        out.append(
            RfsStop(
                node=node,
                role=role,
                change_at=t,
                change=f"{before} -> {after}",
                seconds=round(stopped_at - t, 3) if stopped_at is not None else None,
                killed=killed,
            )
        )
    return out
