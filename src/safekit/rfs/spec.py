"""What safekitd tells a replication process (a JSON file), how they talk (JSON lines on the
process's stdin/stdout), and the mounts both roles make over the replicated directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from safekit.rfs.tree import Exclusions


@dataclass(frozen=True)
class DirSpec:
    path: str
    notreplicated: tuple[str, ...] = ()
    notreplicated_regex: tuple[str, ...] = ()

    def exclusions(self) -> Exclusions:
        return Exclusions.build(list(self.notreplicated), list(self.notreplicated_regex))


@dataclass(frozen=True)
class RfsSpec:
    module: str
    node: str
    peer: str
    dirs: tuple[DirSpec, ...]
    local_addr: str
    peer_addr: str
    port: int
    key_file: str
    state_dir: str
    async_mode: Literal["second", "none"] = "second"
    sendtimeout: float = 30.0
    connect_interval: float = 1.0
    window_bytes: int = 64 << 20
    """Bytes sent and not yet applied by the secondary before writers wait (memory bound)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RfsSpec:
        obj = json.loads(text)
        obj["dirs"] = tuple(
            DirSpec(d["path"], tuple(d.get("notreplicated", ())), tuple(d.get("notreplicated_regex", ())))
            for d in obj["dirs"]
        )
        return cls(**obj)

    @classmethod
    def load(cls, path: str | Path) -> RfsSpec:
        return cls.from_json(Path(path).read_text())


def emit(event: str, **fields: Any) -> None:
    """One event line to safekitd on stdout (flushed: safekitd acts on it right away)."""
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- mounts
FUSE_TYPE = "fuse.safekit"


@dataclass(frozen=True)
class Mount:
    id: int
    dev: str
    root: str
    point: str
    fstype: str

    @property
    def key(self) -> list[object]:
        return [self.id, self.dev, self.root]


def _unescape(field: str) -> str:
    return field.encode("utf-8", "surrogateescape").decode("unicode_escape")


def mounts_at(path: str) -> list[Mount]:
    """The mounts stacked at `path`, bottom first (the kernel lists them in mount order)."""
    real = os.path.realpath(path)
    found: list[Mount] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 10:
                continue
            sep = fields.index("-")
            mount = Mount(
                int(fields[0]), fields[2], _unescape(fields[3]), _unescape(fields[4]), fields[sep + 1]
            )
            if mount.point == real:
                found.append(mount)
    return found


def unmount_ours(path: str, recorded: list[list[object]] | None = None) -> int:
    """Lazily unmount what safekit stacked at `path` (a dead FUSE, its binds, a recorded read-only
    bind), from the top, stopping at the first mount that is not ours (a user's file system under
    the replicated directory stays). Returns how many were removed."""
    removed = 0
    for _ in range(16):
        stack = mounts_at(path)
        if not stack:
            break
        top = stack[-1]
        if top.fstype != FUSE_TYPE and top.key not in (recorded or []):
            break
        subprocess.run(["umount", "-l", os.path.realpath(path)], check=False, capture_output=True)
        removed += 1
    return removed


def open_dir(path: str) -> int:
    """The directory's fd, taken before anything is mounted over it."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def bind(source: str, target: str, *, read_only: bool) -> Mount:
    """Bind `source` over `target`; returns the new mount (to recognise it later as ours)."""
    _mount(["--bind", source, target])
    if read_only:
        _mount(["-o", "remount,bind,ro", target])
    return mounts_at(target)[-1]


def _mount(args: list[str]) -> None:
    result = subprocess.run(["mount", *args], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {result.stderr.strip() or f'exit code {result.returncode}'}")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
