"""Replication stops on time and a module recovers by itself, on real lab hosts (issue 13, item 3).

One lab (2 nodes, a client) and one mirror module with a VIP, one replicated directory and an
application behind the VIP that appends one record per request with fsync before it answers. A
client posts numbered records through the VIP and keeps every acknowledged one. The tests run in
order; each leaves a primary and an in-sync secondary behind.

Figures (stop times, outages) are printed (`pytest -s`) and asserted against the issue's bounds.
The replication processes are the native programs of this checkout (native/build).
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rfs_lab import install_module, lab_up
from rfs_processes import rfs_role

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

MODULE = "fix"
DATA = "/srv/data"
PORT = 8090
STOP_BOUND = 5.0  # the replication process exits within 5 s of a role change
RECOVERY_BOUND = 5.0  # a killed primary replication process: service back within 5 s
SHUTDOWN_BOUND = 10.0
"""A clean shutdown: stop_prim, then the peer's takeover (start_prim); before the stop fix it cost
31.6 s (the replication process killed after 30 s). The scripts' own time counts here, and on a
loaded 2-core lab machine start_prim alone can take 3 s: the bound leaves room for that."""

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="10" loop_interval="24h">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <vip>
    <interface_list>
      <interface check="on">
        <real_interface>
          <virtual_addr addr="{vip}" where="one_side_alias"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <rfs async="second" sendtimeout="5s">
    <replicated dir="/srv/data"/>
  </rfs>
  <user nicestoptimeout="3s" forcestoptimeout="5s" logging="userlog">
    <var name="APP_PORT" value="{port}"/>
  </user>
</service>
</safe>
"""

# The application: POST /N appends record N (16 bytes) to /srv/data/records.bin (opened once, kept
# open), fsyncs, then answers "ok N". A failing write answers 503: nothing acknowledged.
APP = r"""
import http.server, os, socketserver, sys
fd = os.open("/srv/data/records.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.path.strip("/"))
        try:
            os.write(fd, b"%015d\n" % n)
            os.fsync(fd)
        except OSError as e:
            self.send_response(503); self.end_headers(); self.wfile.write(str(e).encode()); return
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok %d" % n)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""

START_PRIM = """#!/bin/sh
set -eu
mkdir -p /srv/data
nohup python3 "$SAFEUSERBIN/app.py" "$APP_PORT" >/dev/null 2>&1 &
echo $! > /run/fixapp.pid
# a straggler that keeps a file open on the mount through the role change (not stopped by stop_prim)
hold='import os, time; fd = os.open("/srv/data/held", os.O_RDWR | os.O_CREAT, 0o644); time.sleep(3600)'
nohup python3 -c "$hold" >/dev/null 2>&1 &
echo $! >> /run/fixholders.pid
i=0
while [ $i -lt 50 ]; do
    probe="import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)"
    if python3 -c "$probe" "$APP_PORT" 2>/dev/null; then
        exit 0
    fi
    sleep 0.1; i=$((i + 1))
done
exit 1
"""

STOP_PRIM = """#!/bin/sh
set -u
[ -f /run/fixapp.pid ] || exit 0
pid=$(cat /run/fixapp.pid)
if [ "${1:-}" = force ]; then kill -9 "$pid" 2>/dev/null; else kill "$pid" 2>/dev/null; fi
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -9 "$pid" 2>/dev/null
rm -f /run/fixapp.pid
exit 0
"""

# The client: posts 1, 2, 3, ... through the VIP (one at a time, 0.5 s timeout) and prints
# "ack N T" for every acknowledged record, "fail T" otherwise (T: its monotonic clock).
CLIENT = r"""
import sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
while True:
    t = time.monotonic()
    try:
        request = urllib.request.Request(f"{url}/{n}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=0.5) as r:
            if r.status == 200 and r.read() == b"ok %d" % n:
                print("ack", n, time.monotonic(), flush=True)
                n += 1
                continue
    except Exception:
        pass
    print("fail", t, flush=True)
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from lab_up("rfsfix", nodes=2, lans=1, client=True)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    userconfig = USERCONFIG.format(vip=lab.plan().vips[0], port=PORT)
    cluster = install_module(
        lab, MODULE, userconfig, {"start_prim": START_PRIM, "stop_prim": STOP_PRIM, "app.py": APP}
    )
    for node in cluster.nodes:
        cluster.start_daemon(node)
    try:
        yield cluster
    finally:
        for node in cluster.keep_logs(MODULE):
            cluster.stop_daemon(node)
            sh(lab, node, "for p in $(cat /run/fixholders.pid 2>/dev/null); do kill $p; done; true")


def sh(lab: Lab, node: str, script: str, check: bool = True, timeout: float = 60) -> str:
    result = lab.exec(node, ["sh", "-c", script], timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{node}: {script}: {result.stderr or result.stdout}")
    return result.stdout


def roles(cluster: LabCluster) -> tuple[str, str]:
    states = {node: cluster.state(node, MODULE)["state"] for node in cluster.nodes}
    prim = [n for n, s in states.items() if s in ("PRIM", "ALONE")]
    assert len(prim) == 1, states
    return prim[0], next(n for n in cluster.nodes if n != prim[0])


def wait_pair(cluster: LabCluster, primary: str, timeout: float = 90) -> None:
    secondary = next(n for n in cluster.nodes if n != primary)
    cluster.wait_state(primary, MODULE, "PRIM", timeout=timeout)
    cluster.wait_state(secondary, MODULE, "SECOND", timeout=timeout)


def holds_vip(lab: Lab, node: str) -> bool:
    out = lab.exec(node, ["ip", "-4", "-o", "addr", "show"]).stdout
    return f" {lab.plan().vips[0]}/" in out


def stop_times(log: str) -> list[float]:
    return [float(t) for t in re.findall(r"replication primary stopped \(the process took ([\d.]+) s", log)]


def rfs_pid(lab: Lab, node: str, role: str) -> int:
    netns = lab.plan().host(node).netns
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True)
    for pid in pids.stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if rfs_role(cmdline) == role:
            return int(pid)
    raise AssertionError(f"no {role} replication process on {node}")


class Client:
    """The client host's writer through the VIP; what it was told is durable."""

    def __init__(self, lab: Lab, first: int) -> None:
        url = f"http://{lab.plan().vips[0]}:{PORT}"
        argv = lab.exec_argv("client", ["python3", "-c", CLIENT, url, str(first)])
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.acked: list[tuple[int, float]] = []
        self.failed: list[float] = []

    def stop(self) -> None:
        self.proc.kill()  # the lab's client process, started by this test
        out, _ = self.proc.communicate(timeout=10)
        for line in out.splitlines():
            fields = line.split()
            if fields[:1] == ["ack"] and len(fields) == 3:
                self.acked.append((int(fields[1]), float(fields[2])))
            elif fields[:1] == ["fail"] and len(fields) == 2:
                self.failed.append(float(fields[1]))

    def longest_gap(self) -> float:
        """The longest time between two acknowledged records: the outage seen by the client."""
        times = [t for _, t in self.acked]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def records(lab: Lab, node: str) -> set[int]:
    out = sh(lab, node, f"cat {DATA}/records.bin 2>/dev/null || true")
    return {int(line) for line in out.split()}


def wait_same_records(lab: Lab, primary: str, secondary: str, timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        mine, theirs = records(lab, primary), records(lab, secondary)
        if mine == theirs or time.monotonic() > deadline:
            assert mine == theirs, f"{len(mine ^ theirs)} records differ between {primary} and {secondary}"
            return mine


NEXT_RECORD = [1]


def run_client(lab: Lab) -> Client:
    client = Client(lab, NEXT_RECORD[0])
    return client


def finish_client(client: Client) -> None:
    client.stop()
    if client.acked:
        NEXT_RECORD[0] = client.acked[-1][0] + 1


def test_first_start(lab: Lab, cluster: LabCluster) -> None:
    cluster.safekit("node1", "prim", "-m", MODULE)
    cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
    cluster.safekit("node2", "second", "-m", MODULE)
    wait_pair(cluster, "node1")
    for node, role in (("node1", "primary"), ("node2", "secondary")):
        replication = cluster.state(node, MODULE)["replication"]
        assert (replication["role"], replication["engine"]) == (role, "native"), replication
    client = run_client(lab)
    time.sleep(5)  # a loaded machine: the client's own start can take seconds
    finish_client(client)
    assert client.acked, "the application does not answer through the VIP"


@pytest.mark.parametrize("command", ["swap", "stop", "stopstart"])
def test_the_replication_process_exits_within_5s_of_a_role_change(
    lab: Lab, cluster: LabCluster, command: str
) -> None:
    primary, secondary = roles(cluster)
    before = len(stop_times(cluster.log(primary, MODULE)))
    client = run_client(lab)
    time.sleep(1.0)
    cluster.safekit(primary, command, "-m", MODULE, timeout=120)
    deadline = time.monotonic() + 60
    while len(stop_times(cluster.log(primary, MODULE))) == before:
        assert time.monotonic() < deadline, f"{command}: the primary's replication process never stopped"
        time.sleep(0.2)
    took = stop_times(cluster.log(primary, MODULE))[before]
    print(f"\n{command}: the primary's replication process exited in {took:.2f} s")
    assert took < STOP_BOUND, f"{command}: the replication process took {took:.2f} s to stop"
    assert "did not stop within" not in cluster.log(primary, MODULE)
    if command == "stop":
        cluster.safekit(primary, "start", "-m", MODULE)
    new_primary = secondary if command == "swap" else None
    deadline = time.monotonic() + 90
    while new_primary is None:
        try:
            new_primary = roles(cluster)[0]
        except AssertionError:
            assert time.monotonic() < deadline, "no primary after the role change"
            time.sleep(0.5)
    wait_pair(cluster, new_primary)
    time.sleep(1.0)
    finish_client(client)
    acked = {n for n, _ in client.acked}
    held = wait_same_records(lab, new_primary, next(n for n in cluster.nodes if n != new_primary))
    assert acked <= held, f"{command}: acknowledged records lost: {sorted(acked - held)[:10]}"


def test_a_killed_primary_replication_process_recovers_by_itself_within_5s(
    lab: Lab, cluster: LabCluster
) -> None:
    primary, secondary = roles(cluster)
    client = run_client(lab)
    time.sleep(1.5)
    pid = rfs_pid(lab, primary, "primary")
    killed = time.monotonic()
    subprocess.run(["kill", "-KILL", str(pid)], check=True)  # the replication process of this lab
    deadline = killed + 60
    while True:
        time.sleep(0.5)
        try:
            state = cluster.state(primary, MODULE)
        except Exception:
            continue
        if time.monotonic() - killed > 3 and state["state"] == "PRIM" and state["readiness"] == "Ready":
            break
        assert time.monotonic() < deadline, f"{primary} did not recover: {state}"
    time.sleep(2.0)
    finish_client(client)
    after = [t for _, t in client.acked if t > killed]
    assert after, "no write acknowledged after the replication process was killed"
    before = [t for _, t in client.acked if t <= killed]
    # the longest time without an acknowledgement from the last one before the kill on (a request
    # answered just after `killed` was taken, before the signal landed, is not the service back)
    since = [before[-1] if before else killed, *after]
    outage = max(b - a for a, b in itertools.pairwise(since)) if len(since) > 1 else 0.0
    print(f"\nreplication process killed: service back after {outage:.2f} s")
    assert outage < RECOVERY_BOUND, f"service back only after {outage:.2f} s"
    wait_pair(cluster, primary)
    acked = {n for n, _ in client.acked}
    held = wait_same_records(lab, primary, secondary)
    assert acked <= held, f"acknowledged records lost: {sorted(acked - held)[:10]}"
    log = cluster.log(primary, MODULE)
    assert "stop_prim (forced), new replication process, start_prim" in log


def test_a_restarted_safekitd_cleans_up_after_the_dead_one_and_comes_back_as_secondary(
    lab: Lab, cluster: LabCluster
) -> None:
    primary, secondary = roles(cluster)
    client = run_client(lab)
    time.sleep(1.0)
    pid = cluster.daemon_pid(primary)
    assert pid is not None
    sh(lab, primary, f"kill -KILL {pid}")  # as a crash would: the children stay
    time.sleep(2.0)
    assert holds_vip(lab, primary), "the dead daemon's VIP should still be there before the restart"
    restarted = time.monotonic()
    cluster.start_daemon(primary)
    deadline = restarted + 30
    while cluster.state(secondary, MODULE)["state"] not in ("ALONE", "PRIM"):  # the other node took over
        assert time.monotonic() < deadline, f"{secondary} did not take over"
        time.sleep(0.1)
    deadline = restarted + 10
    while holds_vip(lab, primary):
        assert time.monotonic() < deadline, f"{primary} still holds the VIP 10 s after its restart"
        time.sleep(0.1)
    cluster.wait_state(primary, MODULE, "SECOND", timeout=max(1.0, restarted + 30 - time.monotonic()))
    back = time.monotonic() - restarted
    print(f"\nsafekitd killed and restarted: SECOND (Ready) {back:.1f} s after the restart")
    assert not holds_vip(lab, primary)
    finish_client(client)
    log = cluster.log(primary, MODULE)
    assert "stop_prim force done" in log  # the dead daemon's application was stopped
    assert "left by the dead safekitd" in log  # its replication process was ended (or had gone)
    wait_pair(cluster, secondary)
    acked = {n for n, _ in client.acked}
    held = wait_same_records(lab, secondary, primary)
    assert acked <= held, f"acknowledged records lost: {sorted(acked - held)[:10]}"


def test_a_clean_shutdown_of_the_primary_costs_no_more_than_a_power_cut(
    lab: Lab, cluster: LabCluster
) -> None:
    primary, secondary = roles(cluster)
    client = run_client(lab)
    time.sleep(1.5)
    began = time.monotonic()
    cluster.safekit(primary, "shutdown")
    cluster.wait_state(secondary, MODULE, "ALONE", timeout=60)
    deadline = time.monotonic() + 60
    while cluster.daemon_pid(primary) is not None:
        assert time.monotonic() < deadline, "safekitd did not exit after `safekit shutdown`"
        time.sleep(0.1)
    shutdown_took = time.monotonic() - began
    time.sleep(2.0)
    finish_client(client)
    outage = client.longest_gap()
    print(
        f"\nclean shutdown of the primary: client outage {outage:.2f} s "
        f"(daemon gone in {shutdown_took:.1f} s)"
    )
    assert outage < SHUTDOWN_BOUND, f"a clean shutdown cost {outage:.2f} s of outage"
    cluster.start_daemon(primary)
    wait_pair(cluster, secondary)
    acked = {n for n, _ in client.acked}
    held = wait_same_records(lab, secondary, primary)
    assert acked <= held, f"acknowledged records lost: {sorted(acked - held)[:10]}"
