"""A split brain this node lost: what it wrote since the split is saved aside before the
resynchronisation from the winner overwrites it (ARCHITECTURE.md rule 4), and reported.

The secondary's replication process calls `save` before it serves the primary, when safekitd
started it after a diverged step-down (`extra["diverged"]`), and `annotate` when the
resynchronisation ended (what the winner has for each saved file).

Which files: the primary's reintegration journal (`journal.json`, saved by this node's primary
process at its clean stop) names every path changed since the secondary stopped following
(`Journal.since`); it is exact and costs no scan. Where a crash left a gap in it (`Journal.gap`),
or it is missing, every file whose ctime is after the gap's start is taken as well.

Layout, under SAFEVAR/modules/AM/splitbrain/:

    <UTC time>/manifest.json                   what was saved, and why
    <UTC time>/<replicated dir>/<relative path>  each saved file (the directory without its "/")

Never fills the disk: a file is copied only if the file system keeps `keep_free` free after it
(default 10 % of its size; `RfsSpec.extra["splitbrain_keep_free"]`, "15%" or "2G"); the others
are listed in the manifest as not saved, and in the log.

Pure here: the selection rules, the space rule, the manifest and the log sentence; the walk and the
copies are the thin I/O layer below them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from safekit.rfs import tree
from safekit.rfs.journal import Entry, Journal, plan_order
from safekit.rfs.syscalls import syncfs

log = logging.getLogger("safekit.rfs.splitbrain")

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_KEEP_FREE = "10%"
CHUNK = 1 << 20
CTIME_SLACK_NS = 2_000_000_000
"""A ctime scan starts this much before the gap: clocks of the file system and of the journal are
not read at the same instant."""
BLOCK_OVERHEAD = 64 << 10
"""Counted on top of a file's size for the space rule (blocks, inode, directory entries)."""
_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")


class Change(StrEnum):
    """What this node did to a path since the split."""

    CREATED = "created"
    """Created, renamed into place or replaced (with its whole content)."""
    MODIFIED = "modified"
    """Written or truncated."""
    ATTRIBUTES = "attributes"
    """Only its attributes (mode, owner, times, extended attributes)."""
    DELETED = "deleted"
    """Removed (or renamed away) on this node: nothing to copy, listed in the manifest."""
    CHANGED = "changed"
    """Found by its ctime (the journal has a gap): content or attributes changed."""


class OnWinner(StrEnum):
    """What the winner has for a saved path, seen on this node after the resynchronisation."""

    SAME = "same"
    """The same bytes: nothing of this node's version was lost."""
    CHANGED_ON_BOTH = "changed on both"
    """Another version, modified on the winner after the split too: a conflict to merge by hand."""
    OLDER = "not changed on the winner"
    """The winner kept its version from before the split; this node's is the saved one."""
    ABSENT = "absent on the winner"
    """Created here, or deleted on the winner."""
    RESTORED = "present on the winner"
    """Deleted here; the resynchronisation brought the winner's version back."""


@dataclass(frozen=True)
class KeepFree:
    """How much of the file system the copies must leave free: a percentage of it or bytes."""

    percent: float | None = 10.0
    size: int | None = None

    @classmethod
    def parse(cls, text: str) -> KeepFree:
        """`"10%"`, `"512M"`, `"2G"`, `"1048576"` (bytes); K/M/G/T are powers of 1024."""
        raw = text.strip().upper().removesuffix("B")
        try:
            if raw.endswith("%"):
                percent = float(raw[:-1])
                if not 0 <= percent < 100:
                    raise ValueError
                return cls(percent=percent)
            units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
            factor = units.get(raw[-1:], 1)
            number = float(raw[:-1] if raw[-1:] in units else raw)
            if number < 0:
                raise ValueError
            return cls(percent=None, size=int(number * factor))
        except (ValueError, IndexError):
            raise ValueError(
                f"splitbrain keep_free {text!r}: expected a percentage (10%) or a size (2G, 512M)"
            ) from None

    def minimum(self, fs_size: int) -> int:
        """Bytes to keep free on a file system of `fs_size` bytes."""
        if self.percent is not None:
            return int(fs_size * self.percent / 100)
        return self.size or 0

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else f"{self.size} bytes"


def admits(size: int, free: int, fs_size: int, keep: KeepFree) -> bool:
    """Whether a copy of `size` bytes leaves at least `keep` free on the file system."""
    return free - (size + BLOCK_OVERHEAD) >= keep.minimum(fs_size)


def classify(entry: Entry, exists: bool) -> Change:
    """What a journal entry says this node did to its path."""
    if not exists:
        return Change.DELETED
    if entry.whole:
        return Change.CREATED
    if entry.zones or entry.trunc is not None:
        return Change.MODIFIED
    return Change.ATTRIBUTES


def ctime_threshold_ns(journal: Journal | None) -> int | None:
    """The ctime from which files must be taken by a scan: the start of the journal's gap (0 for
    no usable journal: every file); None when the journal is complete."""
    if journal is None:
        return 0
    if journal.gap is None:
        return None
    return max(0, int(journal.gap[0] * 1e9) - CTIME_SLACK_NS)


def since_of(journal: Journal | None) -> float | None:
    """When this node's changes since the split began, as far as it can tell."""
    if journal is None:
        return None
    times = [t for t in (journal.since, journal.gap[0] if journal.gap else None) if t is not None]
    return min(times) if times else None


def dir_name(now: datetime, existing: Iterable[str]) -> str:
    """The save's directory name: its UTC time (ISO 8601 basic), made unique."""
    base = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    taken = set(existing)
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def human_date(ts: float | None) -> str:
    if ts is None:
        return "the split"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def saved_as(dir_path: str, rel: str) -> str:
    """Where a file of replicated directory `dir_path` is kept, relative to the save's directory."""
    return f"{dir_path.strip('/')}/{rel}" if dir_path.strip("/") else rel


# --------------------------------------------------------------------------- records


@dataclass
class Record:
    """One path of the manifest."""

    dir: str
    path: str
    change: Change
    kind: str
    """file, symlink, other (fifo, device: listed, not copied), or "" (deleted)."""
    size: int | None = None
    mtime_ns: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    sha256: str | None = None
    saved: bool = False
    note: str = ""
    on_winner: OnWinner | None = None
    dir_index: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dir": self.dir,
            "path": self.path,
            "change": str(self.change),
            "deleted": self.change is Change.DELETED,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "mtime": iso(self.mtime_ns / 1e9) if self.mtime_ns is not None else None,
            "mtime_ns": self.mtime_ns,
            "mode": None if self.mode is None else f"{stat.S_IMODE(self.mode):04o}",
            "uid": self.uid,
            "gid": self.gid,
            "saved": self.saved,
            "saved_as": saved_as(self.dir, self.path) if self.saved else None,
            "on_winner": None if self.on_winner is None else str(self.on_winner),
            "dir_index": self.dir_index,
        }
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        mode = obj.get("mode")
        on_winner = obj.get("on_winner")
        return cls(
            dir=str(obj["dir"]),
            path=str(obj["path"]),
            change=Change(obj["change"]),
            kind=str(obj.get("kind", "")),
            size=obj.get("size"),
            mtime_ns=obj.get("mtime_ns"),
            mode=None if mode is None else int(str(mode), 8),
            uid=obj.get("uid"),
            gid=obj.get("gid"),
            sha256=obj.get("sha256"),
            saved=bool(obj.get("saved")),
            note=str(obj.get("note", "")),
            on_winner=None if on_winner is None else OnWinner(on_winner),
            dir_index=int(obj.get("dir_index", 0)),
        )


@dataclass(frozen=True)
class Context:
    """Who lost to whom, as safekitd saw it at the step-down."""

    module: str
    node: str
    peer: str
    generation: int | None = None
    peer_generation: int | None = None
    split_at: float | None = None
    """Wall-clock time of the peer's last heartbeat before it was lost (None: not known)."""


def build_manifest(
    ctx: Context,
    records: list[Record],
    *,
    saved_at: float,
    since: float | None,
    source: str,
    keep: KeepFree,
) -> dict[str, Any]:
    known = [t for t in (ctx.split_at, since) if t is not None]
    saved = [r for r in records if r.saved]
    unsaved = [r for r in records if not r.saved and r.change is not Change.DELETED and r.kind != "other"]
    return {
        "version": MANIFEST_VERSION,
        "module": ctx.module,
        "node": ctx.node,
        "winner": ctx.peer,
        "saved_at": iso(saved_at),
        "since": iso(min(known)) if known else None,
        "split_at": iso(ctx.split_at),
        "first_change": iso(since),
        "generations": {ctx.node: ctx.generation, ctx.peer: ctx.peer_generation},
        "source": source,
        "keep_free": str(keep),
        "complete": not unsaved,
        "totals": {
            "files": len(saved),
            "bytes": sum(r.size or 0 for r in saved),
            "not_saved": len(unsaved),
            "not_saved_bytes": sum(r.size or 0 for r in unsaved),
            "deleted": sum(1 for r in records if r.change is Change.DELETED),
        },
        "resync": None,
        "files": [r.to_json() for r in records],
    }


def summary_line(manifest: dict[str, Any], path: Path | str) -> str:
    """The module log's sentence (WARNING) for a save."""
    totals = manifest["totals"]
    since = manifest.get("since")
    date = human_date(datetime.fromisoformat(since).timestamp()) if since else "the split"
    return (
        f"split brain: {totals['files']} files ({mib(totals['bytes'])}) that {manifest['node']} changed "
        f"since {date} saved under {path} before resynchronising from {manifest['winner']}"
    )


def detail_lines(manifest: dict[str, Any]) -> list[str]:
    """Further WARNING lines: what was deleted here, what could not be saved."""
    totals = manifest["totals"]
    lines = []
    if totals["deleted"]:
        lines.append(
            f"split brain: {totals['deleted']} paths that {manifest['node']} deleted since the split are "
            "listed in the manifest (deleted: true)"
        )
    if totals["not_saved"]:
        names = [f"{r['dir'].rstrip('/')}/{r['path']}" for r in manifest["files"] if _unsaved(r)]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        lines.append(
            f"split brain: {totals['not_saved']} files ({mib(totals['not_saved_bytes'])}) NOT saved "
            f"(the file system must keep {manifest['keep_free']} free, or they could not be read): "
            f"{shown}; the resynchronisation overwrites them"
        )
    return lines


def _unsaved(r: dict[str, Any]) -> bool:
    return not r.get("saved") and not r.get("deleted") and r.get("kind") != "other"


def verdict(record: Record, now: tuple[str, str | None, int] | None, since_ns: int | None) -> OnWinner:
    """What the winner has, from what the copy holds after the resync: `now` is (kind, sha256 or
    None when not read, mtime_ns), None when the path is gone."""
    if record.change is Change.DELETED:
        return OnWinner.ABSENT if now is None else OnWinner.RESTORED
    if now is None:
        return OnWinner.ABSENT
    kind, digest, mtime_ns = now
    if kind == record.kind and digest is not None and digest == record.sha256:
        return OnWinner.SAME
    if since_ns is not None and mtime_ns >= since_ns:
        return OnWinner.CHANGED_ON_BOTH
    return OnWinner.OLDER


# --------------------------------------------------------------------------- I/O: selection


@dataclass(frozen=True)
class Replicated:
    """One replicated directory as the replication process holds it."""

    path: str
    fd: int
    exclusions: tree.Exclusions


@dataclass
class Selection:
    records: list[Record]
    since: float | None
    source: str


def load_journal(path: Path) -> Journal | None:
    """This node's primary journal, or None when there is none or it cannot be read."""
    try:
        return Journal.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s unreadable (%s): files are selected by their change time", path, exc)
        return None


def select(dirs: list[Replicated], journal: Journal | None) -> Selection:
    """Every path this node changed since the split, with its metadata (nothing is read yet)."""
    found: dict[tuple[int, bytes], Record] = {}
    for index, d in enumerate(dirs):
        entries = journal.entries.get(index, {}) if journal is not None else {}
        for rel, entry in plan_order(entries):
            if not rel or d.exclusions.excluded(rel):
                continue
            _from_journal(found, index, d, rel, entry)
    threshold = ctime_threshold_ns(journal)
    if threshold is not None:
        for index, d in enumerate(dirs):
            for rel, st in tree.walk(d.fd, d.exclusions):
                if st.st_ctime_ns >= threshold and (index, rel) not in found and not stat.S_ISDIR(st.st_mode):
                    found[(index, rel)] = _record(index, d, rel, st, Change.CHANGED)
    if journal is None:
        source = "change-time scan of every file (no readable journal)"
    elif threshold is None:
        source = "journal"
    else:
        start = iso(threshold / 1e9)
        source = f"journal, and a change-time scan from {start} (a crash left a gap in the journal)"
    records = sorted(found.values(), key=lambda r: (r.dir_index, r.path.split("/")))
    return Selection(records, since_of(journal), source)


def _from_journal(
    found: dict[tuple[int, bytes], Record], index: int, d: Replicated, rel: bytes, entry: Entry
) -> None:
    try:
        st = tree.lstat(d.fd, rel)
    except (FileNotFoundError, NotADirectoryError):
        found[(index, rel)] = Record(d.path, os.fsdecode(rel), Change.DELETED, "", dir_index=index)
        return
    if stat.S_ISDIR(st.st_mode):
        if entry.whole:  # created or renamed into place: everything under it is this node's
            for sub, sub_st in tree.walk(d.fd, d.exclusions, top=rel):
                if not stat.S_ISDIR(sub_st.st_mode):
                    found[(index, sub)] = _record(index, d, sub, sub_st, Change.CREATED)
        return
    found[(index, rel)] = _record(index, d, rel, st, classify(entry, exists=True))


def _record(index: int, d: Replicated, rel: bytes, st: os.stat_result, change: Change) -> Record:
    mode = st.st_mode
    kind = "file" if stat.S_ISREG(mode) else "symlink" if stat.S_ISLNK(mode) else "other"
    return Record(
        d.path,
        os.fsdecode(rel),
        change,
        kind,
        size=st.st_size if kind != "other" else 0,
        mtime_ns=st.st_mtime_ns,
        mode=mode,
        uid=st.st_uid,
        gid=st.st_gid,
        dir_index=index,
    )


# --------------------------------------------------------------------------- I/O: the copy


class Interrupted(Exception):
    """The process was asked to stop during the save; it is done again at the next start."""


@dataclass
class SpaceProbe:
    """Free and total bytes of the file system holding the saves (statvfs; replaceable in tests)."""

    path: Path

    def __call__(self) -> tuple[int, int]:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def save(
    ctx: Context,
    dirs: list[Replicated],
    journal: Journal | None,
    target: Path,
    *,
    keep: KeepFree,
    should_stop: Callable[[], bool] = lambda: False,
    space: Callable[[], tuple[int, int]] | None = None,
    clock: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Copy what this node changed since the split into `target` (created; a partial one left by an
    interrupted save is replaced) and write its manifest last. Returns the manifest."""
    now = clock() if clock is not None else datetime.now(UTC).timestamp()
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True, mode=0o700)
    probe = space or SpaceProbe(target)
    selection = select(dirs, journal)
    for record in selection.records:
        if should_stop():
            raise Interrupted
        if record.change is Change.DELETED or record.kind == "other":
            if record.kind == "other":
                record.note = "not a regular file or symlink: listed, not copied"
            continue
        free, fs_size = probe()
        if not admits(record.size or 0, free, fs_size, keep):
            record.note = (
                f"not saved: {mib(record.size or 0)} would leave less than {keep} of the file system free "
                f"({mib(free)} free)"
            )
            continue
        try:
            _copy(dirs[record.dir_index].fd, record, target, should_stop)
        except FileNotFoundError:
            record.change, record.kind, record.size = Change.DELETED, "", None
        except OSError as exc:
            record.note = f"not saved: {exc.strerror or exc}"
    manifest = build_manifest(
        ctx, selection.records, saved_at=now, since=selection.since, source=selection.source, keep=keep
    )
    _sync_tree(target)
    write_manifest(target, manifest)
    return manifest


def _copy(dir_fd: int, record: Record, target: Path, should_stop: Callable[[], bool]) -> None:
    rel = os.fsencode(record.path)
    dest = target / saved_as(record.dir, record.path)
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if record.kind == "symlink":
        link = os.readlink(rel, dir_fd=dir_fd)
        os.symlink(link, dest)
        record.size = len(os.fsencode(link))
        record.sha256 = hashlib.sha256(os.fsencode(link)).hexdigest()
        record.saved = True
        return
    src = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "no longer a regular file")
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        digest = hashlib.sha256()
        size = 0
        try:
            while data := os.read(src, CHUNK):
                if should_stop():
                    raise Interrupted
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view) :]
                digest.update(data)
                size += len(data)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            with contextlib.suppress(OSError):
                os.fchown(out, st.st_uid, st.st_gid)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        except BaseException:
            os.close(out)
            with contextlib.suppress(OSError):
                dest.unlink()
            raise
        os.close(out)
    finally:
        os.close(src)
    record.size, record.mtime_ns, record.sha256, record.saved = size, st.st_mtime_ns, digest.hexdigest(), True


def _sync_tree(target: Path) -> None:
    """The copies on disk before the resync may overwrite the originals."""
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def write_manifest(target: Path, manifest: dict[str, Any]) -> None:
    tmp = target / f".{MANIFEST}.tmp"
    data = json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target / MANIFEST)
    dfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_manifest(target: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads((target / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    return obj if isinstance(obj, dict) else None


def forget_journal(path: Path, write: Callable[[Path, bytes], None]) -> None:
    """After a save: the journal's entries describe what the resync replaces; a later save must
    not report them again, and the journal must not be trusted for a reintegration any more."""
    journal = load_journal(path)
    if journal is None:
        return
    journal.clear()
    journal.trusted = False
    write(path, journal.dumps(clean=True))


# --------------------------------------------------------------------------- after the resync


def annotate(target: Path, dirs: list[Replicated], *, finished_at: float) -> dict[str, Any] | None:
    """Record, for each path of the save, what the winner has (the copy after the resync)."""
    manifest = read_manifest(target)
    if manifest is None:
        return None
    since = manifest.get("since")
    since_ns = int(datetime.fromisoformat(since).timestamp() * 1e9) if since else None
    files = []
    counts: dict[str, int] = {}
    for obj in manifest.get("files", []):
        record = Record.from_json(obj)
        if record.dir_index < len(dirs):
            record.on_winner = verdict(record, _observe(dirs[record.dir_index].fd, record), since_ns)
            counts[str(record.on_winner)] = counts.get(str(record.on_winner), 0) + 1
        files.append(record.to_json())
    manifest["files"] = files
    manifest["resync"] = {"finished_at": iso(finished_at), "on_winner": counts}
    write_manifest(target, manifest)
    return manifest


def _observe(dir_fd: int, record: Record) -> tuple[str, str | None, int] | None:
    rel = os.fsencode(record.path)
    try:
        st = tree.lstat(dir_fd, rel)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(st.st_mode):
        return "symlink", hashlib.sha256(os.readlink(rel, dir_fd=dir_fd)).hexdigest(), st.st_mtime_ns
    if not stat.S_ISREG(st.st_mode):
        return ("other" if not stat.S_ISDIR(st.st_mode) else "dir"), None, st.st_mtime_ns
    if record.sha256 is None:  # not saved: its bytes are not known, do not read a large file
        return "file", None, st.st_mtime_ns
    digest = hashlib.sha256()
    try:
        fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return "file", None, st.st_mtime_ns
    try:
        while data := os.read(fd, CHUNK):
            digest.update(data)
    finally:
        os.close(fd)
    return "file", digest.hexdigest(), st.st_mtime_ns


# --------------------------------------------------------------------------- listing, removal


@dataclass(frozen=True)
class Saved:
    """One save directory of a module, as `safekit splitbrain list` shows it."""

    module: str
    name: str
    path: Path
    manifest: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"module": self.module, "time": self.name, "path": str(self.path)}
        if self.manifest is None:
            out["incomplete"] = "no manifest: a save is running or was interrupted"
        else:
            out |= {k: v for k, v in self.manifest.items() if k != "version"}
        return out


def saves(var: Path, module: str | None = None) -> list[Saved]:
    """Every save under SAFEVAR (`var`), of one module or of all, oldest first."""
    modules_dir = var / "modules"
    names = [module] if module else sorted(p.name for p in _dirs(modules_dir))
    out: list[Saved] = []
    for mod in names:
        base = modules_dir / mod / "splitbrain"
        for entry in sorted(_dirs(base), key=lambda p: p.name):
            if valid_name(entry.name):
                try:
                    manifest = read_manifest(entry)
                except ValueError:
                    manifest = None
                out.append(Saved(mod, entry.name, entry, manifest))
    return out


def _dirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def splitbrain_dir(var: Path, module: str) -> Path:
    return var / "modules" / module / "splitbrain"


def remove(var: Path, module: str, name: str) -> Saved:
    """Delete one save of `module` (its directory name, as listed)."""
    if not valid_name(name):
        raise ValueError(f"{name!r} is not a save's name (a UTC time such as 20250314T101502Z)")
    path = splitbrain_dir(var, module) / name
    if not path.is_dir() or path.is_symlink():
        raise FileNotFoundError(f"module {module} has no split-brain save {name} ({path})")
    try:
        manifest = read_manifest(path)
    except ValueError:
        manifest = None
    shutil.rmtree(path)
    return Saved(module, name, path, manifest)
