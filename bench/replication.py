"""Replication (rfs) throughput, latency, reintegration and full sync, each beside the same operation
on the local disk (or a plain TCP copy) in the same run.

On a 2-node lab a mirror module replicates /srv/bench (async="second"); /srv/local on the primary
is the same disk without replication. Measured on the primary:
- sequential write of 1 GiB in 1 MiB blocks + a final fsync (MiB/s, ratio to local; target >= 0.5);
- a 4 KiB write + fsync loop (p50/p99 latency; target p99 <= local p99 + 1 ms);
- creating 10k small files with fsync each (ops/s ratio);
- reintegration of a 2 GiB data set after 1% changed while the secondary was away (bytes sent,
  target <= 3% of the data set; time);
- full sync throughput against a plain TCP copy between the same hosts (target >= 0.7);
- CPU seconds of the replication processes per GiB written, their peak resident memory (budget
  150 MiB) and open files before/after (flat), safekitd's resident memory.

Writes bench/results/replication.json. Usage: bench/replication.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.membership import clusterkey
from safekit.rfs.native import role_of_argv

MODULE = "bench"
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="10" loop_interval="24h">
  <heart><heartbeat name="default"/></heart>
  <rfs async="second" sendtimeout="30s"><replicated dir="/srv/bench"/></rfs>
</service>
</safe>
"""
TARGETS = {
    "seq_write_ratio": 0.5,
    "fsync_p99_over_local_ms": 1.0,
    "reintegration_bytes_fraction": 0.03,
    "fullsync_ratio_to_tcp_copy": 0.7,
}
BUDGETS = {"rfs_rss_mib": 150.0, "safekitd_rss_mib": 80.0}

WORKLOAD = r"""
import json, os, sys, time
kind, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
if kind == "seq":
    block = os.urandom(1 << 20)
    path = os.path.join(root, "seq.bin")
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(n):
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    out["seconds"] = time.perf_counter() - t
    os.unlink(path)
elif kind == "fsync":
    path = os.path.join(root, "fsync.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    data = os.urandom(4096)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        os.pwrite(fd, data, (i % 256) * 4096)
        os.fsync(fd)
        lat.append(time.perf_counter() - t)
    os.close(fd)
    os.unlink(path)
    lat.sort()
    out["p50_ms"] = 1000 * lat[len(lat) // 2]
    out["p99_ms"] = 1000 * lat[int(len(lat) * 0.99)]
elif kind == "files":
    d = os.path.join(root, "many")
    os.makedirs(d, exist_ok=True)
    data = b"x" * 512
    t = time.perf_counter()
    for i in range(n):
        fd = os.open(os.path.join(d, f"f{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
    out["ops_per_s"] = n / (time.perf_counter() - t)
    for i in range(n):
        os.unlink(os.path.join(d, f"f{i}"))
    os.rmdir(d)
elif kind == "tree":  # n small files in directories of 1000, no fsync (a source tree, a mail spool)
    data = b"y" * 512
    t = time.perf_counter()
    for i in range(n):
        d = os.path.join(root, "tree", f"d{i // 1000}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(data)
    os.sync()
    out["seconds"] = time.perf_counter() - t
elif kind == "rmtree":
    import shutil
    shutil.rmtree(os.path.join(root, "tree"))
elif kind == "dataset":
    d = os.path.join(root, "set")
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            for _ in range(32):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
elif kind == "change":  # rewrite `n` random 64 KiB zones across the data set
    import random
    d = os.path.join(root, "set")
    names = sorted(os.listdir(d))
    rnd = random.Random(7)
    for _ in range(n):
        p = os.path.join(d, rnd.choice(names))
        fd = os.open(p, os.O_WRONLY)
        os.pwrite(fd, os.urandom(65536), rnd.randrange(32 * 16) * 65536)
        os.fsync(fd)
        os.close(fd)
print(json.dumps(out))
"""

# plain TCP copy baseline: the sender reads the data set's files and streams them; the receiver
# writes them to disk and fsyncs (what a full sync does, without FUSE, framing or checksums)
TCP_SEND = r"""
import os, socket, sys
root, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((host, port))
d = os.path.join(root, "set")
for name in sorted(os.listdir(d)):
    with open(os.path.join(d, name), "rb") as f:
        while chunk := f.read(1 << 20):
            s.sendall(chunk)
s.close()
"""
TCP_RECV = r"""
import os, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port)); ls.listen(1)
print("ready", flush=True)
c, _ = ls.accept()
t = time.perf_counter()
n = 0
with open(out, "wb") as f:
    while data := c.recv(1 << 20):
        f.write(data); n += len(data)
    f.flush(); os.fsync(f.fileno())
print(n, time.perf_counter() - t, flush=True)
os.unlink(out)
"""


def run_workload(lab: Lab, node: str, kind: str, root: str, n: int) -> dict[str, float]:
    result = lab.exec(node, ["python3", "-c", WORKLOAD, kind, root, str(n)], timeout=3600, check=True)
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1] or "{}")
    return data


def rfs_pids(lab: Lab, node: str) -> list[int]:
    netns = lab.plan().host(node).netns
    pids = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
    ).stdout.split()
    found = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if role_of_argv([a.decode(errors="replace") for a in cmd if a]) is not None:
            found.append(int(pid))  # the native safekit-rfs-primary / -secondary
    return found


def daemon_pid(lab: Lab, node: str) -> int:
    netns = lab.plan().host(node).netns
    for pid in subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
    ).stdout.split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"safekitd" in cmd:
            return int(pid)
    raise RuntimeError(f"no safekitd on {node}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class PeakRss:
    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    self.peak[pid] = max(self.peak[pid], rss_mib(pid))
            time.sleep(0.1)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def last_resync(cluster: LabCluster, node: str, after: int) -> tuple[str, float, int]:
    lines = cluster.log(node, MODULE).splitlines()[after:]
    for line in reversed(lines):
        m = re.search(r"in sync \((\w+) resync, ([\d.]+) s, (\d+) bytes\)", line)
        if m:
            return m.group(1), float(m.group(2)), int(m.group(3))
    raise RuntimeError("no resync in the log")


def wait_resync(cluster: LabCluster, node: str, after: int, timeout: float) -> tuple[str, float, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return last_resync(cluster, node, after)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:  # noqa: PLR0915
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a minute or two)")
    args = parser.parse_args()
    q = args.quick
    sizes = {
        "seq_mib": 256 if q else 1024,
        "fsync_ops": 500 if q else 3000,
        "files": 2000 if q else 10000,
        "dataset_files": 8 if q else 64,  # 32 MiB each: 256 MiB or 2 GiB
        "tree_files": 20000 if q else 100000,
    }
    lab = Lab("bnrfs")
    lab.down()
    lab.up(nodes=2, lans=1)
    root = Path(tempfile.mkdtemp(prefix="safekit-bnrfs-", dir="/var/tmp"))
    result: dict[str, Any] = {"sizes": sizes, "targets": TARGETS, "budgets_limits": BUDGETS}
    try:
        module = root / MODULE
        (module / "conf").mkdir(parents=True)
        (module / "bin").mkdir()
        (module / "conf" / "userconfig.xml").write_text(USERCONFIG)
        root.chmod(0o755)
        cluster = LabCluster(lab)
        cluster.install(module, key=clusterkey.generate_key())
        for node in cluster.nodes:
            lab.exec(node, ["mkdir", "-p", "/srv/bench", "/srv/local"], check=True)
            cluster.start_daemon(node)
        cluster.safekit("node1", "prim", "-m", MODULE)
        cluster.wait_state("node1", MODULE, "ALONE", timeout=30)
        cluster.safekit("node2", "second", "-m", MODULE)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=60)
        primary_rfs = rfs_pids(lab, "node1")
        secondary_rfs = rfs_pids(lab, "node2")
        fds_before = {pid: open_files(pid) for pid in primary_rfs + secondary_rfs}

        # 1. sequential write
        local = run_workload(lab, "node1", "seq", "/srv/local", sizes["seq_mib"])
        cpu0 = {pid: cpu_seconds(pid) for pid in primary_rfs + secondary_rfs}
        with PeakRss(primary_rfs + secondary_rfs) as peak:
            repl = run_workload(lab, "node1", "seq", "/srv/bench", sizes["seq_mib"])
        cpu1 = {pid: cpu_seconds(pid) for pid in primary_rfs + secondary_rfs}
        gib = sizes["seq_mib"] / 1024
        result["seq_write"] = {
            "local_mib_s": round(sizes["seq_mib"] / local["seconds"], 1),
            "replicated_mib_s": round(sizes["seq_mib"] / repl["seconds"], 1),
            "ratio": round(local["seconds"] / repl["seconds"], 3),
        }
        result["cpu_seconds_per_gib"] = {
            "primary_rfs": round(sum(cpu1[p] - cpu0[p] for p in primary_rfs) / gib, 2),
            "secondary_rfs": round(sum(cpu1[p] - cpu0[p] for p in secondary_rfs) / gib, 2),
        }
        result["rfs_peak_rss_mib"] = {
            "primary": round(max(peak.peak[p] for p in primary_rfs), 1),
            "secondary": round(max(peak.peak[p] for p in secondary_rfs), 1),
        }
        # 2. 4 KiB write + fsync latency
        local = run_workload(lab, "node1", "fsync", "/srv/local", sizes["fsync_ops"])
        repl = run_workload(lab, "node1", "fsync", "/srv/bench", sizes["fsync_ops"])
        result["fsync_4k"] = {
            "local_p50_ms": round(local["p50_ms"], 3),
            "local_p99_ms": round(local["p99_ms"], 3),
            "replicated_p50_ms": round(repl["p50_ms"], 3),
            "replicated_p99_ms": round(repl["p99_ms"], 3),
            "p99_over_local_ms": round(repl["p99_ms"] - local["p99_ms"], 3),
        }
        # 3. small files
        local = run_workload(lab, "node1", "files", "/srv/local", sizes["files"])
        repl = run_workload(lab, "node1", "files", "/srv/bench", sizes["files"])
        result["small_files_fsync"] = {
            "local_ops_s": round(local["ops_per_s"]),
            "replicated_ops_s": round(repl["ops_per_s"]),
            "ratio": round(repl["ops_per_s"] / local["ops_per_s"], 3),
        }
        # 3b. a tree of many small files: created, verified identical, resynchronised whole
        local = run_workload(lab, "node1", "tree", "/srv/local", sizes["tree_files"])
        repl = run_workload(lab, "node1", "tree", "/srv/bench", sizes["tree_files"])
        started = time.monotonic()
        out = cluster.safekit("node1", "rfs", "verify", "-m", MODULE, "--json", timeout=1800, check=False)
        verify_seconds = time.monotonic() - started
        verdict = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {"error": out.stderr}
        mark = len(cluster.log("node1", MODULE).splitlines())
        cluster.safekit("node2", "second", "fullsync", "-m", MODULE)
        mode, seconds, _sent = wait_resync(cluster, "node1", mark, 1800)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=120)
        result["small_file_tree"] = {
            "files": sizes["tree_files"],
            "local_files_s": round(sizes["tree_files"] / local["seconds"]),
            "replicated_files_s": round(sizes["tree_files"] / repl["seconds"]),
            "ratio": round(local["seconds"] / repl["seconds"], 3),
            "verify_identical": verdict.get("identical"),
            "verify_entries": verdict.get("checked"),
            "verify_seconds": round(verify_seconds, 2),
            "fullsync_seconds": seconds,
            "fullsync_mode": mode,
        }
        run_workload(lab, "node1", "rmtree", "/srv/local", 0)
        run_workload(lab, "node1", "rmtree", "/srv/bench", 0)
        # the primary's process lives through all of it (the secondary's was restarted by fullsync)
        fds_after = {pid: open_files(pid) for pid in primary_rfs}
        result["rfs_open_files"] = {
            "primary_before": sum(fds_before[p] for p in primary_rfs),
            "primary_after": sum(fds_after.values()),
        }

        # 4. reintegration after 1% changed while the secondary was away
        run_workload(lab, "node1", "dataset", "/srv/bench", sizes["dataset_files"])
        dataset = sizes["dataset_files"] * 32 << 20
        time.sleep(2)
        cluster.safekit("node2", "stop", "-m", MODULE)
        cluster.wait_state("node1", MODULE, "ALONE", timeout=60)
        zones = max(1, dataset // 100 // 65536)
        run_workload(lab, "node1", "change", "/srv/bench", zones)
        mark = len(cluster.log("node1", MODULE).splitlines())
        cluster.safekit("node2", "second", "-m", MODULE)
        mode, seconds, sent = wait_resync(cluster, "node1", mark, 600)
        result["reintegration"] = {
            "dataset_bytes": dataset,
            "changed_bytes": zones * 65536,
            "mode": mode,
            "seconds": seconds,
            "bytes_sent": sent,
            "fraction_of_dataset": round(sent / dataset, 4),
        }
        # 5. full sync against a plain TCP copy
        cluster.wait_state("node2", MODULE, "SECOND", timeout=120)
        mark = len(cluster.log("node1", MODULE).splitlines())
        cluster.safekit("node2", "second", "fullsync", "-m", MODULE)
        mode, seconds, sent = wait_resync(cluster, "node1", mark, 1200)
        receiver = subprocess.Popen(
            lab.exec_argv("node2", ["python3", "-c", TCP_RECV, "5999", "/srv/local/copy.bin"]),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        receiver.stdout.readline()
        peer = str(lab.plan().host("node2").address)
        lab.exec("node1", ["python3", "-c", TCP_SEND, "/srv/bench", peer, "5999"], check=True, timeout=1200)
        copied, copy_seconds = receiver.stdout.readline().split()
        receiver.wait(timeout=60)
        result["full_sync"] = {
            "mode": mode,
            "bytes": sent,
            "seconds": seconds,
            "mib_s": round(sent / (1 << 20) / seconds, 1),
            "tcp_copy_mib_s": round(int(copied) / (1 << 20) / float(copy_seconds), 1),
        }
        result["full_sync"]["ratio_to_tcp_copy"] = round(
            result["full_sync"]["mib_s"] / result["full_sync"]["tcp_copy_mib_s"], 3
        )
        result["budgets"] = {
            "rfs_rss_mib": max(result["rfs_peak_rss_mib"].values()),
            "safekitd_rss_mib": round(rss_mib(daemon_pid(lab, "node1")), 1),
            "rfs_open_files_flat": result["rfs_open_files"]["primary_after"]
            <= result["rfs_open_files"]["primary_before"] + 2,
        }
        result["meets_targets"] = {
            "seq_write_ratio": result["seq_write"]["ratio"] >= TARGETS["seq_write_ratio"],
            "fsync_p99_over_local_ms": result["fsync_4k"]["p99_over_local_ms"]
            <= TARGETS["fsync_p99_over_local_ms"],
            "reintegration_bytes_fraction": result["reintegration"]["fraction_of_dataset"]
            <= TARGETS["reintegration_bytes_fraction"],
            "fullsync_ratio_to_tcp_copy": result["full_sync"]["ratio_to_tcp_copy"]
            >= TARGETS["fullsync_ratio_to_tcp_copy"],
        }
        for node in cluster.nodes:
            cluster.stop_daemon(node)
    finally:
        lab.down()
        shutil.rmtree(root, ignore_errors=True)
    result["quick"] = q
    path = write_result("replication", result)
    print(json.dumps(result, indent=2))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
