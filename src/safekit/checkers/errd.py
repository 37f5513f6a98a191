"""Process monitor (errd): which monitored processes are missing or too many.

The matching is pure (`evaluate` over a list of `ProcessInfo`); `scan` reads /proc. Only processes
in safekitd's own network namespace count: on a real host that is every process outside network
containers; in the lab, where hosts share one process table, it is the host's own processes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    """The command name (comm, at most 15 characters as the kernel keeps it)."""
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ProcessRule:
    """One `<proc>` of `<errd>`: which processes, how many, and what to do otherwise."""

    ident: str
    name: str | None = None
    nameregex: str | None = None
    argregex: str | None = None
    atleast: int = 1
    atmax: int = -1
    action: str = "restart"

    def matches(self, proc: ProcessInfo) -> bool:
        if self.name is not None and proc.name != self.name[:15] and _basename(proc) != self.name:
            return False
        if self.nameregex is not None and not re.fullmatch(self.nameregex, proc.name):
            return False
        return not (self.argregex is not None and not re.search(self.argregex, arguments(proc)))


@dataclass(frozen=True)
class ProcessVerdict:
    rule: ProcessRule
    count: int
    ok: bool
    reason: str


def evaluate(rules: Sequence[ProcessRule], processes: Iterable[ProcessInfo]) -> list[ProcessVerdict]:
    procs = list(processes)
    verdicts = []
    for rule in rules:
        count = sum(1 for p in procs if rule.matches(p))
        if count < rule.atleast:
            verdicts.append(
                ProcessVerdict(
                    rule, count, False, f"{rule.ident}: {count} running, at least {rule.atleast} needed"
                )
            )
        elif rule.atmax >= 0 and count > rule.atmax:
            verdicts.append(
                ProcessVerdict(
                    rule, count, False, f"{rule.ident}: {count} running, at most {rule.atmax} allowed"
                )
            )
        else:
            verdicts.append(ProcessVerdict(rule, count, True, f"{rule.ident}: {count} running"))
    return verdicts


def arguments(proc: ProcessInfo) -> str:
    """The arguments `argregex` is matched against, joined by spaces.

    A process that rewrote its command line into one title (nginx: "nginx: master process
    /usr/sbin/nginx -g daemon on;", PostgreSQL's "postgres: checkpointer") has a single argv entry
    holding spaces: its arguments are the title after the first space.
    """
    if len(proc.argv) == 1 and " " in proc.argv[0]:
        return proc.argv[0].split(" ", 1)[1]
    return " ".join(proc.argv[1:])


def _basename(proc: ProcessInfo) -> str:
    return os.path.basename(proc.argv[0]) if proc.argv else ""


def scan(proc_root: Path = Path("/proc")) -> list[ProcessInfo]:
    """Processes sharing this process's network namespace."""
    try:
        own_netns = os.readlink(proc_root / "self" / "ns" / "net")
    except OSError:
        own_netns = None
    found = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if own_netns is not None and os.readlink(entry / "ns" / "net") != own_netns:
                continue
            name = (entry / "comm").read_text(encoding="utf-8", errors="replace").strip()
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked, or is a kernel thread we may not read
            continue
        argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
        found.append(ProcessInfo(int(entry.name), name, argv))
    return found
