"""Power cuts of the primary with the kernel's writeback cache on the native front (issue 15,
ADR 0030): a writer's fsync'd records all survive `lab kill` of the primary, round after round.

The writer runs on the primary node and writes to the replicated directory (through its FUSE
front, as an application does) four kinds of durable records - `write`+`fsync`, `pwrite`+
`fdatasync`, an `O_DSYNC` open, and a rename into place (`write` tmp, `fsync` tmp, `rename`,
`fsync` of the directory) - while it also dirties pages of two other files it never syncs (what
the writeback cache keeps in the kernel, and what an fsync barrier must not be confused by). It
prints every record whose durability call returned; the test reads that over the pipe. Then the
primary's host is killed at a random moment; once the secondary took over, every acknowledged
record must be there and intact, read through the new primary's directory. The old primary then
returns as secondary and resyncs, and the roles have swapped for the next round.

`make test` runs 2 rounds (about a minute); `make test-powercut` runs 20
(`SAFEKIT_POWERCUT_ROUNDS`). `SAFEKIT_POWERCUT_WRITEBACK=off` runs the same without the cache.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from rfs_lab import install_module, lab_up, running

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

MODULE = "pcut"
DATA = "/srv/data"
ROUNDS = int(os.environ.get("SAFEKIT_POWERCUT_ROUNDS", "2"))
WRITEBACK = os.environ.get("SAFEKIT_POWERCUT_WRITEBACK", "on")
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="100" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <rfs async="second" sendtimeout="3s" engine="native" writeback="{writeback}">
    <replicated dir="/srv/data"/>
  </rfs>
</service>
</safe>
"""

KINDS = ("fsync", "fdatasync", "dsync", "rename")

# A record: its number (8 bytes) and its kind's letter (8 bytes), 256 times: 4 KiB, one page.
# The writer prints "KIND N" once record N of that kind is durable by the application's own call.
WRITER = r"""
import os, sys
d, tag = sys.argv[1], sys.argv[2]
R = 4096
def rec(n, k):
    return (n.to_bytes(8, "big") + k * 8) * 256
os.makedirs(d, exist_ok=True)
p = lambda name: os.path.join(d, f"{tag}-{name}")
fs = os.open(p("fsync"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
fd = os.open(p("fdatasync"), os.O_WRONLY | os.O_CREAT, 0o644)
ds = os.open(p("dsync"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_DSYNC, 0o644)
noise = os.open(p("noise"), os.O_RDWR | os.O_CREAT, 0o644)
log = os.open(p("log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
chunk = os.urandom(65536)
n = 0
while True:
    # never synced: dirty pages of other files, written back whenever the kernel likes
    os.pwrite(noise, chunk, (n * 7919 % 512) * 65536)
    os.write(log, chunk[: 1000 + n % 3000])
    os.write(fs, rec(n, b"S"))
    os.fsync(fs)
    print("fsync", n, flush=True)
    os.pwrite(fd, rec(n, b"D"), n * R)
    os.fdatasync(fd)
    print("fdatasync", n, flush=True)
    os.write(ds, rec(n, b"O"))
    print("dsync", n, flush=True)
    tmp = os.open(p("state.tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(tmp, rec(n, b"R"))
    os.fsync(tmp)
    os.close(tmp)
    os.rename(p("state.tmp"), p("state"))
    os.fsync(dirfd)
    print("rename", n, flush=True)
    n += 1
"""

# Per kind: how many whole records the file holds and the first of them that is not what the writer
# wrote (-1: none); for the renamed file, the record it holds (-1: absent or torn).
CHECK = r"""
import json, os, sys
d, tag = sys.argv[1], sys.argv[2]
R = 4096
def rec(n, k):
    return (n.to_bytes(8, "big") + k * 8) * 256
out = {}
for kind, letter in (("fsync", b"S"), ("fdatasync", b"D"), ("dsync", b"O")):
    try:
        raw = open(os.path.join(d, f"{tag}-{kind}"), "rb").read()
    except FileNotFoundError:
        raw = b""
    count, bad = len(raw) // R, -1
    for n in range(count):
        if raw[n * R : (n + 1) * R] != rec(n, letter):
            bad = n
            break
    out[kind] = [count, bad]
try:
    raw = open(os.path.join(d, f"{tag}-state"), "rb").read()
except FileNotFoundError:
    raw = b""
n = int.from_bytes(raw[:8], "big") if len(raw) == R else -1
out["rename"] = [n, -1 if n < 0 or raw == rec(n, b"R") else n]
print(json.dumps(out))
"""


@dataclass
class Round:
    number: int
    killed_after: float
    acknowledged: dict[str, int]  # kind -> highest acknowledged record number (-1: none)
    found: dict[str, list[int]]
    lost: int


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from lab_up("pcut", nodes=2, lans=1)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    cluster = install_module(lab, MODULE, USERCONFIG.replace("{writeback}", WRITEBACK))
    yield from running(lab, cluster, MODULE)


def wait_in_sync(cluster: LabCluster, primary: str, secondary: str) -> None:
    cluster.wait_state(primary, MODULE, "PRIM", timeout=120)
    cluster.wait_state(secondary, MODULE, "SECOND", timeout=120)


def one_round(lab: Lab, cluster: LabCluster, number: int, primary: str, secondary: str) -> Round:
    tag = f"r{number:02d}"
    writer = subprocess.Popen(
        lab.exec_argv(primary, ["python3", "-c", WRITER, DATA, tag]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged = dict.fromkeys(KINDS, -1)
    first = writer.stdout.readline()
    assert first, f"the writer on {primary} printed nothing: {writer.stderr.read() if writer.stderr else ''}"
    kind, n = first.split()
    acknowledged[kind] = int(n)
    killed_after = random.uniform(0.3, 3.0)
    started = time.monotonic()
    while time.monotonic() - started < killed_after:
        line = writer.stdout.readline()
        if not line:
            break
        kind, n = line.split()
        acknowledged[kind] = int(n)
    lab.kill(primary)  # power off: every process of the host dies, cables pulled
    for line in writer.stdout:  # acknowledged before the cut, still in the pipe
        kind, n = line.split()
        acknowledged[kind] = max(acknowledged[kind], int(n))
    writer.wait(timeout=10)
    cluster.wait_state(secondary, MODULE, "ALONE", timeout=60)
    out = lab.exec(secondary, ["python3", "-c", CHECK, DATA, tag], check=True).stdout
    found: dict[str, list[int]] = json.loads(out)
    lost = 0
    for kind in ("fsync", "fdatasync", "dsync"):
        count, bad = found[kind]
        intact = count if bad == -1 else bad
        lost += max(0, acknowledged[kind] + 1 - intact)
    held, torn = found["rename"]
    if torn != -1 or held < acknowledged["rename"]:
        lost += 1
    return Round(number, killed_after, acknowledged, found, lost)


@pytest.mark.timeout(120 + 60 * ROUNDS)
def test_fsynced_records_survive_power_cuts_with_the_writeback_cache(lab: Lab, cluster: LabCluster) -> None:
    primary, secondary = "node1", "node2"
    cluster.safekit(primary, "prim", "-m", MODULE)
    cluster.wait_state(primary, MODULE, "ALONE", timeout=30)
    cluster.safekit(secondary, "second", "-m", MODULE)
    wait_in_sync(cluster, primary, secondary)
    shown = f"writeback cache {WRITEBACK}"
    assert shown in cluster.log(primary, MODULE), f"the native primary's log does not say {shown!r}"
    rounds: list[Round] = []
    for number in range(ROUNDS):
        result = one_round(lab, cluster, number, primary, secondary)
        rounds.append(result)
        print(
            f"powercut round {number + 1}/{ROUNDS} (writeback {WRITEBACK}): killed after "
            f"{result.killed_after:.2f} s, acknowledged {result.acknowledged}, found {result.found}, "
            f"lost {result.lost}",
            flush=True,
        )
        assert min(result.acknowledged.values()) >= 0, f"round {number}: a kind was never acknowledged"
        assert result.lost == 0, (
            f"round {number}: acknowledged {result.acknowledged}, on the new primary {result.found} "
            "([whole records, first bad] per file; rename: [record held, torn])"
        )
        # the old primary comes back as secondary and resyncs; the roles swap for the next round
        lab.start(primary)
        cluster.start_daemon(primary)
        cluster.safekit(primary, "start", "-m", MODULE, check=False)  # it may start at boot by itself
        primary, secondary = secondary, primary
        wait_in_sync(cluster, primary, secondary)
    total = sum(sum(r.acknowledged[k] + 1 for k in KINDS) for r in rounds)
    print(f"powercut: {len(rounds)} rounds, {total} records acknowledged, 0 lost (writeback {WRITEBACK})")
