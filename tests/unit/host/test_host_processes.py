"""Recognising the very process safekitd started, and only it (host/processes.py)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading

from safekit.host import processes

STAT = "1234 (odd) name (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0 987654 12345 67 rest"


def test_start_time_is_read_after_the_last_parenthesis_of_the_command_name() -> None:
    assert processes.parse_start_time(STAT) == 987654


def test_a_process_is_the_recorded_one_only_if_pid_start_time_cmdline_and_boot_match() -> None:
    rec = processes.ProcessIdentity(10, 500, ("python", "-m", "safekit.rfs", "primary", "s.json"), "boot-a")
    assert processes.same_process(rec, rec)
    assert not processes.same_process(rec, None)
    for change in ({"start_time": 501}, {"pid": 11}, {"cmdline": ("sleep", "9")}, {"boot_id": "boot-b"}):
        assert not processes.same_process(rec, dataclasses.replace(rec, **change))
    unknown_boot = dataclasses.replace(rec, boot_id="")
    assert not processes.same_process(unknown_boot, unknown_boot)


def test_the_identity_survives_its_json_record_and_a_corrupt_record_is_none() -> None:
    me = processes.identity(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.boot_id
    assert processes.ProcessIdentity.from_json(me.to_json()) == me
    assert processes.ProcessIdentity.from_json({"pid": "x"}) is None
    assert processes.ProcessIdentity.from_json(None) is None


def test_end_process_ends_the_recorded_process_and_leaves_a_reused_pid_alone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        recorded = processes.identity(child.pid)
        assert recorded is not None
        # same pid, another start time: another process; it must not be touched
        other = dataclasses.replace(recorded, start_time=recorded.start_time + 1)
        assert processes.end_process(other, grace=0.5) == "not running"
        assert child.poll() is None
        # reaped as it dies (a zombie has no command line: it counts as gone)
        reaper = threading.Thread(target=child.wait)
        reaper.start()
        assert processes.end_process(recorded, grace=5.0) == "ended"
        reaper.join(5)
        assert child.returncode == -15
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_process_that_ignores_sigterm_is_killed() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        recorded = processes.identity(child.pid)
        assert recorded is not None
        reaper = threading.Thread(target=child.wait)
        reaper.start()
        assert processes.end_process(recorded, grace=0.5) == "killed"
        reaper.join(5)
        assert child.returncode == -9
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
