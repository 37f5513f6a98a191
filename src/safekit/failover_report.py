"""Failover reports (`safekit report -m AM`): what happened, when, which decision, how long each
step took. Pure: the module's journal (one JSON object per line, written by the daemon's
`daemon/module_journal.py`) in, episodes out.

An *episode* begins when the module leaves a settled state (any state shown `Ready`, or `STOP`)
and ends when it is settled again. Its first transition is what was detected (a lost peer, a
failed resource, a command), the transitions after it are the decisions (the machine's reason
names the rule or the witness answer that decided), and between them the executor's timed steps
(virtual IP, replication, persisted state) and the scripts with their outcome.

A failure noticed after a silence (the peer's heartbeats) is journaled just before the transition it
causes, as a *detection* from the last sign of life to the moment it was declared: it is the
episode's first entry, at a negative offset, and the episode's duration still counts from the first
transition.

Journal records (`t` is the wall-clock time, seconds since the epoch):
- `{"t", "kind": "transition", "from": "SECOND (Ready)", "to": "WAIT (Transient)", "reason"}`
- `{"t", "kind": "step", "name": "AcquireVip", "duration", "ok"}` (t: when it began)
- `{"t", "kind": "script", "name": "start_prim", "duration", "outcome"}` (t: when it began)
- `{"t", "kind": "detection", "name": "no heartbeat from node1 on default", "duration"}` (t: the
  last sign of life)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SETTLED_STATE = "STOP"
DETECTION_GAP = 2.0
"""Seconds between a detection's end and an episode's first transition for it to belong to it."""


@dataclass(frozen=True)
class Entry:
    at: float
    kind: str
    name: str
    """A transition's "FROM -> TO", a step's action, a script's name."""
    duration: float | None = None
    outcome: str = ""
    """A transition's reason; a step's "ok"/"failed"; a script's outcome."""

    def to_json(self, began: float) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "offset": round(self.at - began, 3), "kind": self.kind}
        out["name"] = self.name
        if self.duration is not None:
            out["duration"] = round(self.duration, 3)
        if self.outcome:
            out["outcome"] = self.outcome
        return out


@dataclass
class Episode:
    began: float
    from_state: str
    to_state: str = ""
    ended: float | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def trigger(self) -> Entry:
        """The first transition: what was detected."""
        return next(e for e in self.entries if e.kind == "transition")

    @property
    def took(self) -> float | None:
        return None if self.ended is None else self.ended - self.began

    @property
    def failover(self) -> bool:
        """The node took the primary role in it from the secondary's (or a waiting) state: not a
        start from STOP."""
        start, end = _state(self.from_state), _state(self.to_state)
        return end in ("PRIM", "ALONE") and start in ("SECOND", "WAIT")

    def to_json(self) -> dict[str, Any]:
        return {
            "began": self.began,
            "ended": self.ended,
            "took": None if self.took is None else round(self.took, 3),
            "from": self.from_state,
            "to": self.to_state or None,
            "failover": self.failover,
            "trigger": self.trigger.outcome,
            "entries": [e.to_json(self.began) for e in self.entries],
        }


def _state(shown: str) -> str:
    return shown.split(" ", 1)[0]


def settled(shown: str) -> bool:
    return shown.endswith("(Ready)") or _state(shown) == SETTLED_STATE


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The journal's records; a line that is not a JSON object (a torn last line) is skipped."""
    records: list[dict[str, Any]] = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("t"), int | float):
            records.append(record)
    return records


def _entry(record: dict[str, Any]) -> Entry | None:
    kind = record.get("kind")
    duration = record.get("duration")
    duration = float(duration) if isinstance(duration, int | float) else None
    if kind == "transition":
        name = f"{record.get('from', '?')} -> {record.get('to', '?')}"
        return Entry(float(record["t"]), "transition", name, None, str(record.get("reason", "")))
    if kind == "step":
        outcome = "ok" if record.get("ok", True) else "failed"
        return Entry(float(record["t"]), "step", str(record.get("name", "?")), duration, outcome)
    if kind == "script":
        outcome = str(record.get("outcome", ""))
        return Entry(float(record["t"]), "script", str(record.get("name", "?")), duration, outcome)
    if kind == "detection":
        return Entry(float(record["t"]), "detection", str(record.get("name", "?")), duration)
    return None


def episodes(records: Sequence[dict[str, Any]]) -> list[Episode]:
    """The episodes of a journal, oldest first; the last one may still be open (`ended` None)."""
    found: list[Episode] = []
    current: Episode | None = None
    detection: Entry | None = None  # noticed while settled: the next episode's first step
    for record in sorted(records, key=lambda r: float(r["t"])):
        entry = _entry(record)
        if entry is None:
            continue
        if entry.kind == "detection" and current is None:
            detection = entry
            continue
        if entry.kind == "transition":
            before, after = str(record.get("from", "")), str(record.get("to", ""))
            if current is None:
                if not settled(before) or (settled(after) and _state(before) == _state(after)):
                    continue  # a readiness-only change of a settled state, or a journal begun mid-way
                current = Episode(began=entry.at, from_state=before)
                found.append(current)
                if (
                    detection is not None
                    and entry.at - detection.at - (detection.duration or 0) <= DETECTION_GAP
                ):
                    current.entries.append(detection)
                detection = None
            current.entries.append(entry)
            current.to_state = after
            if settled(after):
                current.ended = entry.at
                current = None
        elif current is not None:
            current.entries.append(entry)
    return found


def render(module: str, node: str, episode: Episode) -> list[str]:
    """The text of one episode, one line per entry, times relative to its beginning."""
    took = "still going on" if episode.took is None else f"in {episode.took:.2f} s"
    kind = "failover" if episode.failover else "change"
    lines = [f"{module} on {node}: {kind} {episode.from_state} -> {episode.to_state or '?'} {took}"]
    for entry in episode.entries:
        offset = f"{entry.at - episode.began:+8.3f} s"
        if entry.kind == "transition":
            label = "detected" if entry is episode.trigger else "decided"
            lines.append(f"  {offset}  {label:<9} {entry.name}: {entry.outcome}")
        else:
            length = "" if entry.duration is None else f"{entry.duration:.3f} s"
            lines.append(f"  {offset}  {entry.kind:<9} {entry.name} {length} {entry.outcome}".rstrip())
    return lines
