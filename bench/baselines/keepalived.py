"""Same-run baseline for bench/failover.py: client-visible failover time of keepalived (VRRP).

What is measured: on a lab of its own (`bkeep`: 2 nodes and a client), keepalived 2.2.7 (Debian 12)
runs on node1 and node2 with one VRRP instance on eth0 holding the lab's first VIP (/24), and the TCP
responder of bench/failover.py (answers with the host name) listens on port 7000 on both nodes. The
client runs failover.py's PROBE (a new TCP connection to the VIP every 50 ms, 200 ms connect
timeout). After a random 0.5-1.5 s the VRRP master is killed with `lab kill` (every process
SIGKILLed, cables pulled); the outage is from the kill to the first answer from the other node
through the VIP, exactly as failover.py measures safekit. The killed node is then booted again
(`lab start`), its responder and keepalived are restarted, and once it is a settled BACKUP the next
run kills the current master, so the runs alternate between the nodes as ours do.

keepalived configuration: `state BACKUP` and `nopreempt` on both nodes, priority 150 on node1 and
100 on node2 (keepalived ignores `nopreempt` with `state MASTER`, so node1 is made the first master by
starting it alone and waiting until it holds the VIP, then starting node2). With `nopreempt` a
restarted node1 does not take the VIP back from node2, like safekit's mirror (no automatic failback).
Multicast adverts (224.0.0.18; the lab's bridges flood multicast), no authentication, VRRPv2 with
`advert_int 1` (keepalived's default), VRRPv3 (`vrrp_version 3`) for sub-second adverts such as 0.1.
keepalived detects a dead master after Master_Down_Interval = 3 x advert_int + skew, where
skew = (256 - priority) / 256 x advert_int (v3; v2 uses (256 - priority) / 256 s), then sends
gratuitous ARPs, which the client accepts (arp_accept=1). `lab kill` pulls the cables before the
SIGKILL, so the dying master may log carrier loss and a FAULT state, but its priority-0 advert cannot
leave: the backup detects the loss by the advert timeout, as after a real power cut. keepalived runs
with its defaults otherwise (no `max_auto_priority`: no real-time scheduling), VRRP subsystem only.

How it compares to ours: the same lab kind, responder, probe and definition of the outage as the
`default` and `fast` profiles of bench/failover.py; run on the same machine in the same session it
gives a same-run anchor for the keepalived figures failover.py quotes (ANCHORS). Unlike the safekit
runs there is no witness and no CPU hog.

Usage: bench/baselines/keepalived.py [--runs N] [--quick]   (prints JSON for advert_int 1 and 0.1)
Needs root and the Debian package `keepalived` (apt-get install keepalived).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import summary
from powercut import PROBE, RESPONDER, RESPONDER_PORT, power_cut_outage
from safekit.lab import Lab

KEEPALIVED = Path("/usr/sbin/keepalived")
LAB_NAME = "bkeep"
NODES = ("node1", "node2")
PRIORITY = {"node1": 150, "node2": 100}
VRID = 51
CONF = "/srv/keepalived.conf"  # /srv is private to each lab host and survives `lab kill`
PIDFILE = "/run/keepalived.pid"  # /run is a fresh tmpfs per host and per boot
VRRP_PIDFILE = "/run/keepalived_vrrp.pid"
SETTLE_TIMEOUT = 60.0
# In the foreground (its stdout is the run's log), VRRP subsystem only, pidfiles in the host's /run.
KEEPALIVED_ARGV = [
    str(KEEPALIVED), "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
    "-f", CONF, "-p", PIDFILE, "-r", VRRP_PIDFILE,
]  # fmt: skip

# Runs on the client: is a TCP port open? (exit 0 when it is)
PORT_OPEN = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()
except OSError:
    sys.exit(1)
"""


def vrrp_version(advert_int: float) -> int:
    """VRRPv2 (keepalived's default) carries whole seconds only; sub-second adverts need VRRPv3."""
    return 2 if advert_int >= 1 and float(advert_int).is_integer() else 3


def keepalived_conf(node: str, vip: str, advert_int: float) -> str:
    """The keepalived.conf of one node: one VRRP instance on eth0, BACKUP + nopreempt on both nodes."""
    version = "" if vrrp_version(advert_int) == 2 else "    vrrp_version 3\n"
    return (
        "# Written by bench/baselines/keepalived.py\n"
        "global_defs {\n"
        f"    router_id {node}\n"
        f"{version}"
        "}\n"
        "vrrp_instance VI_BENCH {\n"
        "    state BACKUP\n"
        "    nopreempt\n"
        "    interface eth0\n"
        f"    virtual_router_id {VRID}\n"
        f"    priority {PRIORITY[node]}\n"
        f"    advert_int {advert_int:g}\n"
        "    virtual_ipaddress {\n"
        f"        {vip}/24 dev eth0\n"
        "    }\n"
        "}\n"
    )


def keepalived_version() -> str:
    out = subprocess.run(
        [str(KEEPALIVED), "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    match = re.search(r"Keepalived v(\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


class KeepalivedBench:
    """keepalived and a responder on each node of a lab, and the failover runs."""

    def __init__(self, lab: Lab, advert_int: float, logdir: Path) -> None:
        self.lab = lab
        self.advert_int = advert_int
        self.logdir = logdir
        self.vip = str(lab.plan().vips[0])
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {node: [] for node in NODES}
        self.logs: list[IO[bytes]] = []
        self.boots = 0

    # ------------------------------------------------------------- node software
    def start_node(self, node: str) -> None:
        """Write the config to the host's /srv, start the responder and keepalived (foreground)."""
        self.lab.exec(
            node,
            ["sh", "-c", f"cat > {CONF}"],
            input=keepalived_conf(node, self.vip, self.advert_int),
            check=True,
        )
        self.boots += 1
        log = open(self.logdir / f"{node}.{self.boots}.log", "wb")  # noqa: SIM115 - closed in close()
        self.logs.append(log)
        self.procs[node].append(
            subprocess.Popen(
                self.lab.exec_argv(node, ["python3", "-c", RESPONDER.format(port=RESPONDER_PORT)]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.procs[node].append(
            subprocess.Popen(
                self.lab.exec_argv(node, KEEPALIVED_ARGV),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def reap(self, node: str) -> None:
        """Collect the processes of a node that `lab kill` or `lab down` ended."""
        for proc in self.procs[node]:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # nsenter exec'd the program: this is keepalived's parent or the responder
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs[node] = []

    def close(self) -> None:
        for node in NODES:
            self.reap(node)
        for log in self.logs:
            log.close()

    def log_tail(self, node: str) -> str:
        logs = sorted(self.logdir.glob(f"{node}.*.log"), key=lambda p: int(p.name.split(".")[1]))
        return logs[-1].read_text(errors="replace")[-2000:] if logs else ""

    # ------------------------------------------------------------- observation
    def holds_vip(self, node: str) -> bool:
        out = self.lab.exec(node, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=True).stdout
        return f" {self.vip}/" in out

    def in_backup(self, node: str) -> bool:
        return "Entering BACKUP STATE" in self.log_tail(node)

    def wait_for(
        self, what: str, node: str, test: Callable[[], bool], timeout: float = SETTLE_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{node}: {what} not reached in {timeout:.0f} s; log:\n{self.log_tail(node)}"
                )
            time.sleep(0.05)

    def settled(self, master: str, backup: str) -> None:
        """Wait until `master` holds the VIP and `backup` is a BACKUP that stays so past a
        Master_Down_Interval (it hears the master's adverts), then check the VIP answers."""
        self.wait_for("MASTER (VIP held)", master, lambda: self.holds_vip(master))
        self.wait_for("BACKUP state", backup, lambda: self.in_backup(backup))
        time.sleep(3 * self.advert_int + 1.0)
        if self.holds_vip(backup) or not self.holds_vip(master):
            raise RuntimeError(
                f"VRRP did not settle with {master} master and {backup} backup "
                f"(adverts not received?); {backup} log:\n{self.log_tail(backup)}"
            )
        self.wait_for(
            f"responder on port {RESPONDER_PORT}",
            backup,
            lambda: (
                self.lab.exec(
                    "client",
                    [
                        "python3",
                        "-c",
                        PORT_OPEN,
                        str(self.lab.plan().host(backup).address),
                        str(RESPONDER_PORT),
                    ],
                ).returncode
                == 0
            ),
        )
        answer = self.lab.exec(
            "client", ["python3", "-c", PROBE, self.vip, str(RESPONDER_PORT), master, "10"], timeout=30
        )
        if not any(line.startswith("answered") for line in answer.stdout.splitlines()):
            raise RuntimeError(f"the VIP {self.vip} does not answer from {master}")

    def master(self) -> tuple[str, str]:
        for node in NODES:
            if self.holds_vip(node):
                return node, next(n for n in NODES if n != node)
        raise RuntimeError("no node holds the VIP")

    # ------------------------------------------------------------- runs
    def setup(self) -> None:
        """node1 first, alone, so that it becomes master; then node2 as backup."""
        self.start_node("node1")
        self.wait_for("MASTER (VIP held)", "node1", lambda: self.holds_vip("node1"))
        self.start_node("node2")
        self.settled("node1", "node2")

    def one_run(self) -> float:
        master, backup = self.master()
        outage = power_cut_outage(self.lab, master, backup, self.vip, RESPONDER_PORT)
        # Boot the killed node again; with nopreempt it rejoins as BACKUP and leaves the VIP where it is.
        self.reap(master)
        self.lab.start(master)
        self.start_node(master)
        self.settled(backup, master)
        return outage


def measure_keepalived(runs: int, advert_int: float) -> dict[str, Any]:
    """Failover time of keepalived on a lab of its own (see the module docstring).

    Returns {"p50_s", "max_s", "min_s", "runs", "samples_s", "keepalived_version", "advert_int",
    "vrrp_version", "transport"}.
    """
    if not KEEPALIVED.exists():
        raise RuntimeError("install keepalived: apt-get install keepalived")
    if runs < 1:
        raise ValueError("runs must be at least 1")
    version = keepalived_version()
    lab = Lab(LAB_NAME)
    lab.down()  # a lab left by a crashed run
    bench: KeepalivedBench | None = None
    with tempfile.TemporaryDirectory(prefix="safekit-bench-keepalived-") as logdir:
        try:
            lab.up(nodes=2, client=True)
            bench = KeepalivedBench(lab, advert_int, Path(logdir))
            bench.setup()
            samples = [bench.one_run() for _ in range(runs)]
        finally:
            lab.down()  # ends every process of the lab's hosts, keepalived included
            if bench is not None:
                bench.close()  # reaps the Popen objects of the processes `down` ended
    return {
        **summary(samples),
        "runs": runs,
        "samples_s": [round(s, 3) for s in samples],
        "keepalived_version": version,
        "advert_int": advert_int,
        "vrrp_version": vrrp_version(advert_int),
        "transport": "multicast",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 runs per advert_int")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    result = {f"advert_{advert:g}": measure_keepalived(runs, advert) for advert in (1.0, 0.1)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
