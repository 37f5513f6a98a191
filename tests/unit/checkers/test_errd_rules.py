"""Process monitor: counting the right processes against atleast/atmax."""

from __future__ import annotations

import asyncio
import os

from safekit.checkers.errd import ProcessInfo, ProcessRule, ProcessVerdict, evaluate, look, scan

PROCS = [
    ProcessInfo(10, "postgres", ("/usr/lib/postgresql/15/bin/postgres", "-D", "/srv/pg")),
    ProcessInfo(11, "postgres", ("postgres: checkpointer",)),
    ProcessInfo(12, "nginx", ("nginx: master process /usr/sbin/nginx",)),
    ProcessInfo(13, "python3", ("/usr/bin/python3", "-m", "http.server", "8080")),
]


def test_counts_by_name_and_flags_too_few() -> None:
    [ok, missing] = evaluate(
        [ProcessRule("pg", name="postgres", atleast=1), ProcessRule("redis", name="redis-server")], PROCS
    )
    assert ok.ok and ok.count == 2
    assert not missing.ok and missing.count == 0
    assert missing.reason == "redis: 0 running, at least 1 needed"


def test_atmax_flags_too_many_and_names_the_processes() -> None:
    [verdict] = evaluate([ProcessRule("pg", name="postgres", atleast=1, atmax=1)], PROCS)
    assert not verdict.ok and verdict.too_many
    assert verdict.reason == "pg: 2 running (pid 10, 11), at most 1 allowed"
    [ok] = evaluate([ProcessRule("pg", name="postgres", atleast=1, atmax=2)], PROCS)
    assert ok.ok and not ok.too_many and ok.reason == "pg: 2 running (pid 10, 11)"


def test_a_verdict_names_at_most_five_processes() -> None:
    many = [ProcessInfo(100 - i, "worker", ("worker",)) for i in range(7)]
    [verdict] = evaluate([ProcessRule("w", name="worker", atmax=3)], many)
    assert verdict.reason == "w: 7 running (pid 94, 95, 96, 97, 98, ...), at most 3 allowed"


def test_regexes_on_name_and_arguments() -> None:
    rule = ProcessRule("web", nameregex="python3?", argregex=r"http\.server 8080")
    [verdict] = evaluate([rule], PROCS)
    assert verdict.ok and verdict.count == 1
    [none] = evaluate([ProcessRule("web", nameregex="python3", argregex="9090")], PROCS)
    assert not none.ok


def test_argregex_matches_a_rewritten_process_title() -> None:
    """nginx rewrites its command line into one title: its master is told from its workers by it."""
    workers = [ProcessInfo(14 + i, "nginx", ("nginx: worker process",)) for i in range(2)]
    procs = PROCS + workers
    [master] = evaluate([ProcessRule("nginx", name="nginx", argregex="^master process", atmax=1)], procs)
    assert master.ok and master.count == 1
    [worker] = evaluate([ProcessRule("w", name="nginx", argregex="worker process", atleast=2)], procs)
    assert worker.ok and worker.count == 2
    # a path with a space in argv[0] and real arguments: the arguments are argv[1:] as before
    spaced = ProcessInfo(20, "app", ("/opt/my app/bin/app", "--port", "8080"))
    [app] = evaluate([ProcessRule("app", name="app", argregex="^--port 8080$")], [spaced])
    assert app.ok


def test_scan_sees_this_process() -> None:
    mine = [p for p in scan() if p.pid == os.getpid()]
    assert len(mine) == 1 and mine[0].argv


POSTMASTER = ProcessInfo(10, "postgres", ("/usr/lib/postgresql/15/bin/postgres", "-D", "/srv/pg"))
FORKED = ProcessInfo(30, "postgres", POSTMASTER.argv)  # a child before it renamed itself
ONE_POSTMASTER = ProcessRule("pg", name="postgres", argregex="-D /srv/pg( |$)", atmax=1)


def looked(*scans: list[ProcessInfo]) -> tuple[list[ProcessVerdict], int, list[str]]:
    """`look` over successive scans: its verdicts, how many scans it made, what it said."""
    seen = iter(scans)
    made = 0
    said: list[str] = []

    async def scan_processes() -> list[ProcessInfo]:
        nonlocal made
        made += 1
        return next(seen)

    verdicts = asyncio.run(look([ONE_POSTMASTER], scan_processes, recheck=0.0, on_recheck=said.append))
    return verdicts, made, said


def test_too_many_that_is_gone_a_moment_later_is_not_acted_on() -> None:
    [verdict], made, said = looked([POSTMASTER, FORKED], [POSTMASTER])
    assert verdict.ok and made == 2
    assert said == ["pg: 2 running (pid 10, 30), at most 1 allowed"]


def test_too_many_that_holds_is_the_verdict() -> None:
    [verdict], made, _ = looked([POSTMASTER, FORKED], [POSTMASTER, FORKED])
    assert not verdict.ok and verdict.too_many and made == 2


def test_too_few_is_final_at_once() -> None:
    [verdict], made, said = looked([], [POSTMASTER])
    assert not verdict.ok and not verdict.too_many and made == 1 and said == []
