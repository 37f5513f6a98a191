"""The reintegration journal's file (`journal.json`): what changed on the primary that the
secondary may not have.

The native primary (native/primary/journal.c) keeps the journal and saves it when it starts and
on a clean stop; while the secondary is away, everything accumulates. An entry names the zones
written in a file (`ZONE` bytes each; the native primary adds its 4 KiB pages under `"p"`, which
this reader ignores: ADR 0026), or a whole object created, renamed into place or replaced (a
directory then with its whole subtree), plus metadata. A journal loaded from a save that was not a
clean stop is not trusted (operations after the last save are unknown).

Read here for a node that lost a split brain (rule 4, `rfs.splitbrain`): what it wrote since the
split. `since` is when the first change went into the empty journal (the secondary stopped
following then), and `gap` the period whose changes a crash may have left out. Pure data
structure with a JSON form (the clock is passed in); the recording methods build journals in
tests and `forget_journal`'s empty one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ZONE = 64 << 10
"""Bytes per journal zone: a 4 KiB write dirties one 64 KiB zone."""


@dataclass
class Entry:
    zones: set[int] = field(default_factory=set)
    whole: bool = False
    """Send the whole object (its whole subtree for a directory), replacing what the secondary has."""
    meta: bool = False
    """Attributes, existence or type may differ: compare and fix them."""
    trunc: int | None = None
    """Smallest size the file was truncated to: what lies beyond it on the secondary is stale."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.whole:
            out["w"] = 1
        if self.meta:
            out["m"] = 1
        if self.zones:
            out["z"] = _ranges(self.zones)
        if self.trunc is not None:
            out["t"] = self.trunc
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Entry:
        zones: set[int] = set()
        for lo, hi in obj.get("z", []):
            zones.update(range(int(lo), int(hi) + 1))
        trunc = obj.get("t")
        return cls(zones, bool(obj.get("w")), bool(obj.get("m")), None if trunc is None else int(trunc))


def _union(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return (min(a[0], b[0]), max(a[1], b[1]))


def _ranges(zones: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for z in sorted(zones):
        if out and out[-1][1] == z - 1:
            out[-1][1] = z
        else:
            out.append([z, z])
    return out


@dataclass
class Journal:
    """Dirty paths per replicated directory index: `entries[dir][path]`."""

    epoch: str
    """Identifies this primary's continuous history; a secondary that followed another history
    (or a journal that was not saved cleanly) cannot be reintegrated from it."""
    trusted: bool = True
    entries: dict[int, dict[bytes, Entry]] = field(default_factory=dict)
    seq: int = 0
    """The last operation sequence number of this history (saved so that a restart continues it)."""
    changes: int = 0
    """Changes since the last save (0: nothing to save)."""
    since: float | None = None
    """Wall-clock time of the first change recorded while the journal was empty: since then the
    secondary has not had everything (None: nothing recorded)."""
    gap: tuple[float, float] | None = None
    """(from, to) wall-clock times between which changes may be missing: a process that saved at
    `from` ended without a clean stop and the journal was loaded again at `to`."""
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def _entry(self, dir_index: int, path: bytes) -> Entry:
        self.changes += 1
        if self.since is None and not any(self.entries.values()):
            self.since = self.clock()
        per_dir = self.entries.setdefault(dir_index, {})
        entry = per_dir.get(path)
        if entry is None:
            entry = per_dir[path] = Entry()
        return entry

    def wrote(self, dir_index: int, path: bytes, offset: int, length: int) -> None:
        entry = self._entry(dir_index, path)
        if entry.whole or length <= 0:
            return
        entry.zones.update(range(offset // ZONE, (offset + length - 1) // ZONE + 1))

    def changed_meta(self, dir_index: int, path: bytes) -> None:
        self._entry(dir_index, path).meta = True

    def truncated(self, dir_index: int, path: bytes, size: int) -> None:
        entry = self._entry(dir_index, path)
        entry.meta = True
        if not entry.whole:
            entry.trunc = size if entry.trunc is None else min(entry.trunc, size)

    def replaced(self, dir_index: int, path: bytes) -> None:
        """Created, renamed into place or replaced: the secondary's object at `path` is not ours."""
        entry = self._entry(dir_index, path)
        entry.whole = True
        entry.meta = True
        entry.zones.clear()
        entry.trunc = None

    def removed(self, dir_index: int, path: bytes) -> None:
        entry = self._entry(dir_index, path)
        entry.meta = True
        entry.zones.clear()

    def merge(self, other: Journal) -> None:
        if other.since is not None:
            self.since = other.since if self.since is None else min(self.since, other.since)
        if other.gap is not None:
            self.gap = other.gap if self.gap is None else _union(self.gap, other.gap)
        for dir_index, per_dir in other.entries.items():
            for path, entry in per_dir.items():
                mine = self._entry(dir_index, path)
                mine.whole = mine.whole or entry.whole
                mine.meta = mine.meta or entry.meta
                if mine.whole:
                    mine.zones.clear()
                    mine.trunc = None
                else:
                    mine.zones |= entry.zones
                    if entry.trunc is not None:
                        mine.trunc = entry.trunc if mine.trunc is None else min(mine.trunc, entry.trunc)

    def clear(self) -> None:
        self.entries.clear()
        self.since = None
        self.gap = None
        self.changes += 1

    def complete_since(self, start: float) -> bool:
        """True when every change made from `start` on is in the journal (no crash gap since)."""
        return self.gap is None or self.gap[1] < start

    def __len__(self) -> int:
        return sum(len(d) for d in self.entries.values())

    def dirty_bytes_estimate(self) -> int:
        return sum(len(e.zones) * ZONE for d in self.entries.values() for e in d.values())

    # ------------------------------------------------------------------ persistence
    def to_json(self, *, clean: bool) -> dict[str, Any]:
        """`clean`: the process stops cleanly (everything it recorded is in this save)."""
        out: dict[str, Any] = {
            "version": 1,
            "epoch": self.epoch,
            "clean": clean and self.trusted,
            "stopped": clean,
            "saved_at": self.clock(),
            "seq": self.seq,
        }
        if self.since is not None:
            out["since"] = self.since
        if self.gap is not None:
            out["gap"] = list(self.gap)
        return out | {
            "entries": {
                str(d): {p.decode("latin-1"): e.to_json() for p, e in sorted(per_dir.items())}
                for d, per_dir in sorted(self.entries.items())
            },
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], clock: Callable[[], float] = time.time) -> Journal:
        """A saved journal, loaded at `clock()`. A save that was not a clean stop leaves a gap from
        that save until now (what the process did after it is unknown)."""
        if obj.get("version") != 1:
            raise ValueError(f"unknown journal version {obj.get('version')!r}")
        entries = {
            int(d): {p.encode("latin-1"): Entry.from_json(e) for p, e in per_dir.items()}
            for d, per_dir in obj.get("entries", {}).items()
        }
        since = obj.get("since")
        raw_gap = obj.get("gap")
        gap = (float(raw_gap[0]), float(raw_gap[1])) if raw_gap else None
        if not obj.get("stopped", obj.get("clean")):
            lost = (float(obj.get("saved_at", 0.0)), clock())
            gap = lost if gap is None else _union(gap, lost)
        return cls(
            str(obj["epoch"]),
            trusted=bool(obj.get("clean")),
            entries=entries,
            seq=int(obj.get("seq", 0)),
            since=None if since is None else float(since),
            gap=gap,
            clock=clock,
        )

    def dumps(self, *, clean: bool) -> bytes:
        return json.dumps(self.to_json(clean=clean), separators=(",", ":")).encode()


def plan_order(entries: dict[bytes, Entry]) -> list[tuple[bytes, Entry]]:
    """The order reintegration visits journal entries: parents before children, and nothing under
    an ancestor that is sent whole (the whole subtree is sent with it)."""
    out: list[tuple[bytes, Entry]] = []
    whole_prefixes: list[bytes] = []
    for path in sorted(entries, key=lambda p: p.split(b"/")):
        if any(path.startswith(w + b"/") for w in whole_prefixes):
            continue
        entry = entries[path]
        out.append((path, entry))
        if entry.whole:
            whole_prefixes.append(path)
    return out
