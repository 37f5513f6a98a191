"""Processes safekitd started and may have to end after its own crash, recognised for sure.

A pid alone is not an identity (pids are reused): a process is recorded with its start time (in
clock ticks since boot, from /proc/PID/stat), its command line and the boot id, and it is only
signalled when all of them still match. Never by name.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_time: int
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    cmdline: tuple[str, ...]
    boot_id: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cmdline"] = list(self.cmdline)
        return data

    @classmethod
    def from_json(cls, data: Any) -> ProcessIdentity | None:
        """The recorded identity, or None for something that is not one (a corrupt record)."""
        try:
            return cls(
                int(data["pid"]),
                int(data["start_time"]),
                tuple(str(a) for a in data["cmdline"]),
                str(data["boot_id"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def parse_start_time(stat_text: str) -> int:
    """Field 22 (starttime) of a /proc/PID/stat line; the command name (field 2) may hold spaces
    and parentheses, so fields are counted after its last `)`."""
    rest = stat_text[stat_text.rindex(")") + 2 :].split()
    return int(rest[19])  # rest[0] is field 3 (state)


def same_process(recorded: ProcessIdentity, current: ProcessIdentity | None) -> bool:
    """Is `current` (what /proc says now) the very process that was recorded?"""
    return (
        current is not None
        and recorded.pid == current.pid
        and recorded.start_time == current.start_time
        and recorded.cmdline == current.cmdline
        and recorded.boot_id == current.boot_id
        and bool(recorded.boot_id)
    )


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def identity(pid: int) -> ProcessIdentity | None:
    """What /proc says about `pid` now; None when there is no such process (or a zombie)."""
    for _ in range(50):
        try:
            stat_text = Path(f"/proc/{pid}/stat").read_text(errors="replace")
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if stat_text[stat_text.rindex(")") + 2 :].startswith("Z"):
            return None  # a zombie: nothing to end
        if raw:
            break
        time.sleep(0.01)  # the command line reads empty for an instant while the process execs
    else:
        return None  # a kernel thread
    cmdline = tuple(a.decode(errors="surrogateescape") for a in raw.rstrip(b"\0").split(b"\0"))
    return ProcessIdentity(pid, parse_start_time(stat_text), cmdline, boot_id())


def end_process(recorded: ProcessIdentity, grace: float = 5.0) -> str:
    """End the recorded process if it still runs: SIGTERM, then SIGKILL after `grace` seconds.
    Returns what was done (for the log): "not running", "ended" or "killed"."""
    if not same_process(recorded, identity(recorded.pid)):
        return "not running"
    try:
        os.kill(recorded.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not same_process(recorded, identity(recorded.pid)):
            return "ended"
        time.sleep(0.05)
    if not same_process(recorded, identity(recorded.pid)):
        return "ended"
    try:
        os.kill(recorded.pid, signal.SIGKILL)
    except ProcessLookupError:
        return "ended"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and same_process(recorded, identity(recorded.pid)):
        time.sleep(0.05)
    return "killed"
