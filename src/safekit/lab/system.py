"""Thin wrappers over the system tools the lab drives (ip, nft, nsenter, unshare, mount, sshd).

Only this module runs processes for the lab; failures become one-line `LabError`s that name the
command and what it printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from safekit.lab.topology import LabError

REQUIRED_TOOLS: dict[str, str] = {
    "ip": "iproute2",
    "nft": "nftables",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "sysctl": "procps",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
}
SSHD = "/usr/sbin/sshd"


def preflight() -> None:
    """Refuse early, in one line, what would otherwise fail half-way through `up`."""
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (it creates network namespaces, bridges and mounts)")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if not os.access(SSHD, os.X_OK):
        missing.append("openssh-server")
    if missing:
        raise LabError(
            f"missing system tools: install them with 'apt-get install {' '.join(sorted(set(missing)))}'"
        )


def run(
    argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]}: not found ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)}: no answer after {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{' '.join(argv)}: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc


def ip_batch(netns: str | None, commands: Sequence[str]) -> None:
    """Run many `ip` commands in one process (one fork instead of dozens keeps `up` fast)."""
    if not commands:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    run(argv, input="\n".join(commands) + "\n")


def nft(script: str, netns: str | None = None) -> None:
    """Load an nftables script, in a namespace when given (one transaction: all or nothing)."""
    argv = (["nsenter", f"--net=/run/netns/{netns}"] if netns else []) + ["nft", "-f", "-"]
    run(argv, input=script)


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", netns], check=False)
    if proc.returncode != 0:
        return []
    return [int(p) for p in proc.stdout.split()]


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return run(argv, check=False).returncode == 0


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace, deepest first.

    Mount points are bytes: one that is not UTF-8 (another program's, a test's) is read as
    os.fsdecode reads it, not refused - a lab must come up beside it."""
    prefix = str(path)
    points: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def unmount(point: str) -> None:
    run(["umount", "-l", point], check=False)
