"""What the template playbook tests share (test_template_playbook.py): the engine's CLI on a node the
playbook deployed, waiting, and the applications' own load tools run from the lab's client through
the VIP while the serving node loses power (`lab kill`), with what the client counted:

- pgbench (PostgreSQL): each client numbers its own rows (n = 1, 2, ... per pgbench client, one
  transaction each); pgbench's per-transaction log says how many of each client's transactions were
  acknowledged, so rows 1..acknowledged of every client must be on the new primary;
- wrk (the farms): back-to-back two-second runs, a new connection per request, each answer counted
  in its tenth of a second by a wrk script; the client's outage is a hole (no answer for more than
  a second, or a status not 200), which may only lie between the power cut and the client being
  served again. (wrk's own totals cannot tell: a connection stuck on the dead node counts no error
  within a short run, while the other connections answer.)

MariaDB's commit loop is safekit.lab.writers.mariadb_writer (each id it prints is committed).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ansible_lab_runs import ROOT, run_playbook

from safekit.lab import Lab

sys.path.insert(0, str(ROOT / "tests" / "integration" / "modules"))
from tpl_lab import wait_for  # the template lab tests' own

__all__ = ["wait_for"]  # re-exported for test_template_playbook

SAFEKIT = "/opt/safekit/venv/bin/safekit"
"""The engine the roles installed on the nodes."""


def safekit(lab: Lab, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return lab.exec(node, [SAFEKIT, *args], check=check, timeout=60)


def state(lab: Lab, node: str, module: str) -> tuple[str, str]:
    """(state, readiness) of a module on a node."""
    out = safekit(lab, node, "state", "-m", module, "--json").stdout
    found = json.loads(out)["modules"][0]
    return found["state"], found["readiness"]


def farm_members(lab: Lab, node: str, module: str) -> list[str]:
    """The balancing set a farm member applies (empty while its own change is pending)."""
    done = safekit(lab, node, "farm", "map", "-m", module, "--json", check=False)
    if done.returncode != 0:
        return []
    data = json.loads(done.stdout)
    return [] if data.get("pending_here") else sorted(data.get("members", []))


def changed_tasks(output: str) -> list[str]:
    """The tasks of a run that reported a change, with the hosts: what to look at when a second
    run is not idempotent (a wheelhouse rebuilt because the tree changed in between is one)."""
    found: list[str] = []
    task = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line.split("]", 1)[0] + "]"
        elif line.startswith("changed:"):
            found.append(f"{task} {line.split(']', 1)[0]}]")
    return found


def deploy(lab: Lab, playbook: str, *extra: str) -> float:
    """Run playbooks/PLAYBOOK on the lab; it must succeed on every node. Its duration in seconds."""
    started = time.monotonic()
    done, recap = run_playbook(lab, playbook, *extra)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert recap and all(host["failed"] == 0 for host in recap.values()), recap
    return took


def power_cut(lab: Lab, node: str) -> float:
    """`lab kill` of a node; the wall-clock time its power was gone (the end of the kill)."""
    lab.kill(node)
    return time.time()


def http_get(lab: Lab, url: str) -> str | None:
    """The body of one GET from the client (None when it fails)."""
    code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"
    done = lab.exec("client", ["python3", "-c", code, url], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


# ---------------------------------------------------------------------------- databases


def missing_commits(
    acknowledged: Mapping[int, int], rows: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """(client, n) of the acknowledged transactions - rows 1..acknowledged[client] of each client -
    not among `rows`."""
    present = set(rows)
    return sorted(
        (client, n)
        for client, count in acknowledged.items()
        for n in range(1, count + 1)
        if (client, n) not in present
    )


def missing_ids(acknowledged: Iterable[int], rows: Iterable[int]) -> list[int]:
    return sorted(set(acknowledged) - set(rows))


PGBENCH_TABLE = "CREATE TABLE acked (client int NOT NULL, n int NOT NULL, PRIMARY KEY (client, n))"
# One transaction: the client's next row number (its rows are written by it alone, one at a time).
PGBENCH_SCRIPT = (
    "INSERT INTO acked (client, n) "
    "SELECT :client_id, coalesce(max(n), 0) + 1 FROM acked WHERE client = :client_id;\n"
)


def pg_conninfo(address: str, *, port: int = 5432) -> str:
    # tcp_user_timeout: a statement sent to a powered-off primary fails in 3 s instead of minutes.
    return (
        f"host={address} port={port} user=postgres dbname=postgres connect_timeout=2 "
        "tcp_user_timeout=3000 keepalives_idle=1 keepalives_interval=1 keepalives_count=2"
    )


def psql(lab: Lab, address: str, password: str, query: str) -> str | None:
    """The rows of a query through `address`, from the client (None when it fails)."""
    argv = ["env", f"PGPASSWORD={password}", "psql", "-X", "-q", "-At", "-F", " ", "-v", "ON_ERROR_STOP=1"]
    done = lab.exec("client", [*argv, pg_conninfo(address), "-c", query], timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


@dataclass(frozen=True)
class PgbenchRun:
    acknowledged: dict[int, int]
    """Per pgbench client: its transactions pgbench logged as done (acknowledged by the server)."""
    output: str


def pgbench_log_counts(lines: Iterable[str]) -> dict[int, int]:
    """Per client, the transactions of pgbench's per-transaction log (-l) that completed: lines
    `client_id transaction_no time script_no epoch us`, `time` not a word (failed, skipped)."""
    counts: dict[int, int] = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[0].isdigit() and fields[2].isdigit():
            counts[int(fields[0])] = counts.get(int(fields[0]), 0) + 1
    return counts


class Pgbench:
    """pgbench with PGBENCH_SCRIPT from the client through `address` (the VIP), running until its
    clients lose their connections (a power cut) or `seconds` pass."""

    def __init__(
        self, lab: Lab, address: str, password: str, *, clients: int = 4, seconds: int = 120
    ) -> None:
        self._dir = Path(
            tempfile.mkdtemp(prefix="safekit-pgbench-", dir="/var/tmp")
        )  # lab hosts see /var/tmp
        script = self._dir / "acked.sql"
        script.write_text(PGBENCH_SCRIPT)
        argv = [
            "env",
            f"PGPASSWORD={password}",
            "pgbench",
            "-n",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
        ]
        argv += ["-f", str(script), "-l", f"--log-prefix={self._dir / 'tx'}", pg_conninfo(address)]
        self.seconds = seconds
        self._proc = subprocess.Popen(
            lab.exec_argv("client", argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait(self, timeout: float) -> PgbenchRun:
        try:
            output, _ = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            output, _ = self._proc.communicate()
            raise AssertionError(f"pgbench still running after {timeout:g} s: {output[-2000:]}") from None
        lines: list[str] = []
        for log in sorted(self._dir.glob("tx.*")):
            lines += log.read_text().splitlines()
        shutil.rmtree(self._dir, ignore_errors=True)
        return PgbenchRun(pgbench_log_counts(lines), output)


# ---------------------------------------------------------------------------- farms

# wrk's script: a new connection per request, and each answer counted in its tenth of a second of
# wall-clock time (LuaJIT's FFI reads the clock), by status (200: ok); printed at the end with
# wrk's socket errors. Runs on the client (lab hosts share /var/tmp).
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } safekit_timespec;
int clock_gettime(int clock, safekit_timespec *now);
]]
local clock = ffi.new("safekit_timespec")
local function tenth()
  ffi.C.clock_gettime(0, clock)
  return tonumber(clock.tv_sec) * 10 + math.floor(tonumber(clock.tv_nsec) / 1e8)
end
wrk.headers["Connection"] = "close"
ok, bad = {}, {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  local bins = (status == 200) and ok or bad
  local t = tenth()
  bins[t] = (bins[t] or 0) + 1
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for _, kind in ipairs({"ok", "bad"}) do
      for t, n in pairs(thread:get(kind)) do io.write(string.format("%s %d %d\\n", kind, t, n)) end
    end
  end
  local e = summary.errors
  io.write(string.format("errors %d %d %d %d\\n", e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class Timeline:
    """What wrk saw: answers per tenth of a second (epoch seconds * 10), its socket errors, and the
    wall-clock span of each wrk run (the client is watched only inside them)."""

    ok: dict[int, int] = field(default_factory=dict)
    bad: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0
    runs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(self.ok.values())

    def add(self, output: str, start: float, end: float) -> None:
        """One wrk run's output (WRK_SCRIPT's lines), run from `start` to `end`."""
        for line in output.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0] in ("ok", "bad"):
                bins = self.ok if fields[0] == "ok" else self.bad
                bins[int(fields[1])] = bins.get(int(fields[1]), 0) + int(fields[2])
            elif fields[:1] == ["errors"]:
                self.socket_errors += sum(int(n) for n in fields[1:])
        self.runs.append((start, end))


@dataclass(frozen=True)
class Outage:
    """Where the client went unanswered (no 200 for longer than the gap inside a wrk run, or
    another status) against a power cut between `cut_from` (`lab kill` called) and `cut_to` (it
    returned)."""

    cut_from: float
    cut_to: float
    failed_before: list[float]
    """Times of failures before the cut (must be none)."""
    unanswered_from: float | None
    """Start of the outage (None: no outage seen)."""
    served_again: float | None
    """First answer after the outage (None: never again)."""
    failed_after: list[float]
    """Times of failures after the client was served again (must be none)."""

    def describe(self) -> str:
        if self.unanswered_from is None:
            return f"no outage longer than the gap (lab kill took {self.cut_to - self.cut_from:.1f} s)"
        back = (
            "never" if self.served_again is None else f"{self.served_again - self.cut_to:.1f} s after the cut"
        )
        return (
            f"unanswered from {self.unanswered_from - self.cut_from:+.1f} s of the cut "
            f"(lab kill took {self.cut_to - self.cut_from:.1f} s), served again {back}"
        )


def holes_of(timeline: Timeline, gap: float) -> list[tuple[float, float]]:
    """The spans in which the client was not served: inside each wrk run, more than `gap` seconds
    without an answer (from its start, between answers, up to its end), and the tenths with an
    answer other than 200; spans with no answer between them are one."""
    answers = sorted(t / 10 for t, n in timeline.ok.items() if n > 0)
    holes = [(t / 10, t / 10 + 0.1) for t, n in timeline.bad.items() if n > 0]
    for start, end in timeline.runs:
        points = [start, *(t for t in answers if start <= t <= end), end]
        holes += [(a, b) for a, b in itertools.pairwise(points) if b - a > gap]
    merged: list[tuple[float, float]] = []
    for a, b in sorted(holes):
        if merged and not any(merged[-1][1] < t < a for t in answers):
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def outage_of(timeline: Timeline, cut_from: float, cut_to: float, *, gap: float = 1.0) -> Outage:
    """The client's outage: the first span not served (holes_of) that ends after the cut began;
    failures before it, and after the client was served again, are listed apart."""
    holes = holes_of(timeline, gap)
    outage = next(((a, b) for a, b in holes if b >= cut_from), None)
    if outage is None:  # shorter than the gap: answered on
        back = next((t / 10 for t in sorted(timeline.ok) if t / 10 >= cut_from), None)
        return Outage(cut_from, cut_to, [a for a, _ in holes], None, back, [])
    back = next((t / 10 for t in sorted(timeline.ok) if t / 10 >= outage[1]), None)
    return Outage(
        cut_from,
        cut_to,
        failed_before=[a for a, b in holes if b < cut_from],
        unanswered_from=outage[0],
        served_again=back,
        failed_after=[a for a, _ in holes if back is not None and a > back],
    )


class WrkRuns:
    """Back-to-back wrk runs of `seconds` from the client to `url`, a new connection per request
    (WRK_SCRIPT), in a thread until stopped. Each run starts with new connections: the farm drops,
    never resets, a dead node's connections (docs/farm.md), and wrk's --timeout only counts a
    stuck connection, so one long run would stay stuck where a client would retry."""

    def __init__(self, lab: Lab, url: str, *, seconds: int = 2) -> None:
        self.timeline = Timeline()
        self._dir = Path(tempfile.mkdtemp(prefix="safekit-wrk-", dir="/var/tmp"))  # lab hosts see /var/tmp
        script = self._dir / "timeline.lua"
        script.write_text(WRK_SCRIPT)
        self._argv = ["wrk", "-t1", "-c2", f"-d{seconds}s", "--timeout", "1s", "-s", str(script), url]
        self._lab = lab
        self._stop = threading.Event()
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, name="wrk-runs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.time()
            done = self._lab.exec("client", self._argv, timeout=60)
            if done.returncode != 0:
                self.failures.append(done.stdout[-500:] + done.stderr[-500:])
            self.timeline.add(done.stdout, start, time.time())

    def stop(self) -> Timeline:
        self._stop.set()
        self._thread.join(timeout=90)
        shutil.rmtree(self._dir, ignore_errors=True)
        assert self.failures == [], self.failures
        return self.timeline
