"""The replication processes of a lab host (the native programs, the only data path: ADR 0029)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from safekit.lab import Lab
from safekit.rfs import native


def rfs_role(cmdline: bytes) -> str | None:
    """The role of a replication process from /proc/PID/cmdline, or None for another process."""
    return native.role_of_argv([a.decode(errors="replace") for a in cmdline.rstrip(b"\0").split(b"\0")])


def rfs_programs(lab: Lab, node: str) -> list[str]:
    """argv[0] of the node's replication processes."""
    netns = lab.plan().host(node).netns
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    found = []
    for pid in out.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if rfs_role(cmdline) is not None:
            found.append(cmdline.split(b"\0")[0].decode())
    return found
