"""Process monitor: counting the right processes against atleast/atmax."""

from __future__ import annotations

import os

from safekit.checkers.errd import ProcessInfo, ProcessRule, evaluate, scan

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


def test_atmax_flags_too_many() -> None:
    [verdict] = evaluate([ProcessRule("pg", name="postgres", atleast=1, atmax=1)], PROCS)
    assert not verdict.ok and "at most 1 allowed" in verdict.reason


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
