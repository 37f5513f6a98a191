"""The engine's memory and open files on a lab host, read from /proc of the host's processes.

A lab host is a network namespace on this machine; `ip netns pids` lists its processes (pids of
this machine's pid namespace), and /proc/PID gives their resident memory and open descriptors.
The engine's processes are `safekitd` and the replication processes (the native `safekit-rfs-ROLE`:
`safekit.rfs.native.role_of_argv`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import asdict, dataclass, field

from safekit.rfs.native import role_of_argv


@dataclass(frozen=True)
class ProcessFigures:
    pid: int
    role: str
    """"safekitd", or "rfs primary" / "rfs secondary\""""
    rss_kb: int
    fds: int


@dataclass(frozen=True)
class EngineFigures:
    processes: list[ProcessFigures] = field(default_factory=list)

    def total(self, role_prefix: str) -> tuple[int, int]:
        """(RSS in KiB, open files) summed over the processes whose role starts with the prefix."""
        chosen = [p for p in self.processes if p.role.startswith(role_prefix)]
        return sum(p.rss_kb for p in chosen), sum(p.fds for p in chosen)

    def to_json(self) -> dict[str, object]:
        return {"processes": [asdict(p) for p in self.processes]}


def netns_processes(netns: str) -> list[tuple[int, str]]:
    """(pid, command line with spaces) of every process in a network namespace."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout
    result = []
    for word in out.split():
        pid = int(word)
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            result.append((pid, cmdline))
    return result


def role_of(cmdline: str) -> str | None:
    """The engine role of a command line ("safekitd", "rfs primary", ...), or None for another
    process. safekitd runs as a script (`python .../bin/safekitd ...`): its path is one of the
    first two words."""
    words = cmdline.split()
    rfs_role = role_of_argv(words)
    if rfs_role is not None:
        return f"rfs {rfs_role}"
    if any(w == "safekitd" or w.endswith("/safekitd") for w in words[:2]):
        return "safekitd"
    return None


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def engine_figures(netns: str) -> EngineFigures:
    processes = []
    for pid, cmdline in netns_processes(netns):
        role = role_of(cmdline)
        if role is None:
            continue
        with contextlib.suppress(OSError):
            processes.append(
                ProcessFigures(pid=pid, role=role, rss_kb=rss_kb(pid), fds=len(os.listdir(f"/proc/{pid}/fd")))
            )
    return EngineFigures(sorted(processes, key=lambda p: (p.role, p.pid)))
