"""Process monitor (errd): which monitored processes are missing or too many.

The matching is pure (`evaluate` over a list of `ProcessInfo`); `scan` reads /proc. Only processes
in safekitd's own network namespace count: on a real host that is every process outside network
containers; in the lab, where hosts share one process table, it is the host's own processes.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    too_many: bool = False
    """More matching processes than `atmax` (a verdict worth a second look: see `evaluate`)."""


MAX_PIDS_NAMED = 5
"""How many of the matching processes' PIDs a verdict names."""


def evaluate(rules: Sequence[ProcessRule], processes: Iterable[ProcessInfo]) -> list[ProcessVerdict]:
    """Each rule's verdict over `processes`. Every matching process counts, a child the watched
    process has just forked too: until it renames itself or runs another program it carries its
    parent's command line (nginx's workers for a moment, PostgreSQL's backends until the client's
    startup packet arrives, which can take up to authentication_timeout). So `atmax` suits a
    program that does not fork copies of itself, and a count above it deserves a second look
    before anything is done (the caller's job: the verdict says `too_many`)."""
    procs = list(processes)
    verdicts = []
    for rule in rules:
        matching = [p.pid for p in procs if rule.matches(p)]
        count = len(matching)
        named = ", ".join(str(pid) for pid in sorted(matching)[:MAX_PIDS_NAMED])
        running = f"{count} running" + (
            f" (pid {named}{', ...' if count > MAX_PIDS_NAMED else ''})" if count else ""
        )
        if count < rule.atleast:
            verdicts.append(
                ProcessVerdict(rule, count, False, f"{rule.ident}: {running}, at least {rule.atleast} needed")
            )
        elif rule.atmax >= 0 and count > rule.atmax:
            verdicts.append(
                ProcessVerdict(
                    rule,
                    count,
                    False,
                    f"{rule.ident}: {running}, at most {rule.atmax} allowed",
                    too_many=True,
                )
            )
        else:
            verdicts.append(ProcessVerdict(rule, count, True, f"{rule.ident}: {running}"))
    return verdicts


async def look(
    rules: Sequence[ProcessRule],
    scan_processes: Callable[[], Awaitable[list[ProcessInfo]]],
    *,
    recheck: float,
    on_recheck: Callable[[str], None] = lambda reasons: None,
) -> list[ProcessVerdict]:
    """One errd poll: the rules' verdicts. A count above `atmax` is looked at again `recheck`
    seconds later and only that second look counts (a child just forked by the watched process
    carries its command line for a moment); too few is final at once (failover speed)."""
    verdicts = evaluate(rules, await scan_processes())
    too_many = [v.reason for v in verdicts if v.too_many]
    if too_many:
        on_recheck("; ".join(too_many))
        await asyncio.sleep(recheck)
        verdicts = evaluate(rules, await scan_processes())
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
