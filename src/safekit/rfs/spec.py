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

from safekit.host import mounts
from safekit.rfs import channel
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
    writeback: bool = False
    """The kernel's writeback cache on the native primary's FUSE front (`<rfs writeback="on">`)."""
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


def emit(event: channel.Event) -> None:
    """One event line to safekitd on stdout (flushed: safekitd acts on it right away)."""
    sys.stdout.buffer.write(channel.encode_event(event))
    sys.stdout.flush()


# --------------------------------------------------------------------------- mounts
FUSE_TYPE = mounts.FUSE_TYPE


def unmount_ours(path: str, recorded: list[list[object]] | None = None) -> int:
    """Lazily unmount what safekit stacked at `path` (a dead FUSE, its binds, a recorded read-only
    bind), from the top, without ever looking through them (`host.mounts.detach_ours`)."""
    return mounts.detach_ours(path, recorded or [])


def open_dir(path: str) -> int:
    """The directory's fd, taken before anything is mounted over it."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def bind(source: str, target: str, *, read_only: bool) -> mounts.Mount:
    """Bind `source` over `target`; returns the new mount (to recognise it later as ours)."""
    _mount(["--bind", source, target])
    if read_only:
        _mount(["-o", "remount,bind,ro", target])
    return mounts.mounts_at(target)[-1]


def _mount(args: list[str]) -> None:
    result = subprocess.run(["mount", *args], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {result.stderr.strip() or f'exit code {result.returncode}'}")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
