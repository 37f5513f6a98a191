"""Replication (rfs) on the native data path, every figure of issue 15's "Must show" table beside
the same operation on the local disk and on the FUSE front alone, in one run.

On a 2-node lab (`bnrfs`, or --lab NAME) two mirror modules run this checkout's native programs (native/build,
through SAFEKIT_RFS_NATIVE_DIR): `bench` replicates /srv/bench with async="second", `bnone`
/srv/bnone with async="none". On the primary (node1), beside them:
- local: /srv/local, the same disk without FUSE or replication;
- FUSE only (replication off): native/build/front/safekit-front --sink=null serving
  /srv/fuseonly-backing at /srv/fuseonly: the FUSE front that safekit-rfs-primary is built on
  (libskfront), the same options (no writeback cache, the module's default), with the sink that
  discards the operations instead of the network sink. The primary alone (secondary stopped) would
  still keep the dirty-zone journal, a replication cost, so it is not the baseline.
Measured, each on the three (four for the fsync latency) in turn:
- sequential write, 1 MiB writes, one fsync at the end (MiB/s; target >= 0.45x local);
- 4 KiB pwrite + fsync p50/p99 (target p50 <= local + 0.15 ms, p99 <= local + 0.5 ms with
  async="second"; async="none" reported beside it);
- small files of 2 KiB with an fsync each (files/s; target >= 0.7x local);
- a tree of 20,000 files (5,000 with --quick), 512 B each in directories of 1,000, no fsync, one
  sync at the end (target >= 0.15x local), then `safekit rfs verify` of the module; the small
  files and the trees of every round stay until the last round is measured (CLEAN_INODES);
- reads of a file written through each target: cold (`sync` and `drop_caches` before each read,
  the same for every target) and warm, 1 MiB reads (target >= 0.9x local, cold);
- CPU seconds per GiB written of each replication process during the sequential write (target
  <= 0.5 s each side) and of the FUSE-only front;
- each process's peak RSS (VmHWM, target <= 40 MiB), its RSS and open files before and after the
  workloads (flat); the primary's peak during `safekit rfs verify` apart (it holds both sides'
  manifests: it grows with the number of files);
- reintegration of a data set after 1 % changed while the secondary was stopped (bytes sent,
  target <= 3 % of the data set);
- full sync of that data set against a plain TCP copy of the same files (read from /srv/local on
  node1, written and fsync'd on node2; caches dropped before both; target >= 0.9x).

Writes bench/results/replication.json (with the load average at the start and at the end).
Usage: bench/replication.py [--quick]   (--quick: smaller sizes, a few minutes; not in make test)
Builds what is missing of native/build (`make -C native all`, `make -C native/front`: the FUSE-only baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import settle_deleted_inodes, write_result
from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.membership import clusterkey
from safekit.rfs import native

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "native" / "build"
FRONT = BUILD / "front" / "safekit-front"
MODULE = "bench"
MODULE_NONE = "bnone"
USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" maxloop="10" loop_interval="24h">
  <heart port="{port}"><heartbeat name="default"/></heart>
  <rfs async="{mode}" sendtimeout="30s"><replicated dir="{dir}"/></rfs>
</service>
</safe>
"""
# issue 15, "Must show"
TARGETS = {
    "seq_write_ratio": 0.45,
    "fsync_p50_over_local_ms": 0.15,
    "fsync_p99_over_local_ms": 0.5,
    "small_files_fsync_ratio": 0.7,
    "tree_ratio": 0.15,
    "read_ratio": 0.9,
    "cpu_seconds_per_gib_each_side": 0.5,
    "rss_mib_each_process": 40.0,
    "fullsync_ratio_to_tcp_copy": 0.9,
    "reintegration_bytes_fraction": 0.03,
}
PREVIOUS_PYTHON = {
    "note": "the Python data path (removed, ADR 0029): this file's figures of 2026-11-25, --quick, load 4.6",
    "seq_write_ratio": 0.077,
    "fsync_p50_ms_local_replicated": [0.184, 1.217],
    "fsync_p99_ms_local_replicated": [0.808, 12.377],
    "small_files_fsync_ratio": 0.208,
    "tree_ratio": 0.075,
    "cpu_seconds_per_gib": {"primary": 3.6, "secondary": 3.16},
    "peak_rss_mib": {"primary": 99.6, "secondary": 32.7},
    "fullsync_ratio_to_tcp_copy": 0.742,
    "reintegration_bytes_fraction": 0.0098,
}

CLEAN_INODES = """Files are created only where no mass deletion happened in the last minutes: each round's
small files and tree go to a directory of their own (`<target>/r<round>`), all removed after the last
round. An ext4 file system without a journal (this machine's /) checks every free inode it could
hand out for a deletion in the last 60 s (360 s while the inode table block is dirty) and skips
those; after 20,000 files were removed, each new file costs hundreds of microseconds, 5-15 times a
tree's creation on a clean file system (measured: 20,000 files in 0.8-1.5 s, 7-17 s after an rm
-rf). The earlier version removed each round's files before the next round, so every target
after the first paid that, by how much depending on the order: the tree ratio measured ext4's
inode allocator, not replication."""

WORKLOAD = r"""
import json, os, sys, time
kind, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
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
    for i in range(256):  # the file exists: the loop rewrites blocks in place, as a database does
        os.pwrite(fd, data, i * 4096)
    os.fsync(fd)
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
elif kind == "files":  # kept until "rmtree" at the end of the run (see CLEAN_INODES)
    d = os.path.join(root, "many")
    os.makedirs(d, exist_ok=True)
    data = b"x" * 2048
    t = time.perf_counter()
    for i in range(n):
        fd = os.open(os.path.join(d, f"f{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
    out["files_per_s"] = n / (time.perf_counter() - t)
elif kind == "tree":  # n small files in directories of 1000, no fsync (a source tree, a mail spool)
    data = b"y" * 512
    t = time.perf_counter()
    for i in range(n):
        d = os.path.join(root, "tree", f"d{i // 1000}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        fd = os.open(os.path.join(d, f"f{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    out["create_seconds"] = time.perf_counter() - t
    os.sync()
    out["seconds"] = time.perf_counter() - t
elif kind == "rmtree":  # the whole of root
    import shutil
    shutil.rmtree(root)
elif kind == "mkread":
    block = os.urandom(1 << 20)
    with open(os.path.join(root, "read.bin"), "wb") as f:
        for _ in range(n):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
elif kind == "read":  # cold: every layer's pages dropped first (the same for every target); warm
    path = os.path.join(root, "read.bin")
    drop_caches()
    for label in ("cold", "warm"):
        fd = os.open(path, os.O_RDONLY)
        t = time.perf_counter()
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
        out[label + "_mib_s"] = total / (1 << 20) / (time.perf_counter() - t)
        os.close(fd)
elif kind == "rmread":
    os.unlink(os.path.join(root, "read.bin"))
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
elif kind == "drop":
    drop_caches()
elif kind == "sync":
    os.sync()
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


def netns_pids(lab: Lab, node: str) -> list[int]:
    netns = lab.plan().host(node).netns
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def argv_of(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def rfs_pid(lab: Lab, node: str, module: str) -> int:
    """The native replication process (safekit-rfs-primary / -secondary) of `module` on `node`."""
    for pid in netns_pids(lab, node):
        argv = argv_of(pid)
        if native.role_of_argv(argv) is not None and any(f"/{module}/" in a for a in argv[1:]):
            return pid
    raise RuntimeError(f"no native replication process of {module} on {node}")


def daemon_pid(lab: Lab, node: str) -> int:
    for pid in netns_pids(lab, node):
        if any("safekitd" in a for a in argv_of(pid)):
            return pid
    raise RuntimeError(f"no safekitd on {node}")


def cpu_user_sys(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def reset_peak_rss(pid: int) -> None:
    """VmHWM starts again from the current RSS (clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def proc_status(pid: int) -> dict[str, float]:
    """RSS, peak RSS (MiB) and open descriptors of a process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "peak_rss_mib": round(int(fields["VmHWM"].split()[0]) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


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


def start_front(lab: Lab, node: str) -> subprocess.Popen[bytes]:
    """The FUSE-only baseline on `node`: safekit-front --sink=null over /srv/fuseonly-backing."""
    proc = subprocess.Popen(
        lab.exec_argv(node, [str(FRONT), "--sink=null", "/srv/fuseonly-backing", "/srv/fuseonly"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else b""
    if not line.startswith(b"mounted"):
        proc.kill()
        raise RuntimeError(f"safekit-front did not mount /srv/fuseonly: {line!r}")
    return proc


def front_pid(lab: Lab, node: str) -> int:
    for pid in netns_pids(lab, node):
        argv = argv_of(pid)
        if argv and os.path.basename(argv[0]) == "safekit-front":
            return pid
    raise RuntimeError(f"no safekit-front on {node}")


def stop_front(lab: Lab, node: str, proc: subprocess.Popen[bytes]) -> None:
    lab.exec(node, ["fusermount3", "-u", "/srv/fuseonly"], check=False)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        lab.exec(node, ["fusermount3", "-u", "-z", "/srv/fuseonly"], check=False)


def ratio(num: float, den: float) -> float:
    return round(num / den, 3) if den else 0.0


def main() -> int:  # noqa: PLR0912, PLR0915
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--lab", default="bnrfs", help="the lab's name (default bnrfs)")
    parser.add_argument(
        "--native-dir", type=Path, help="the programs' directory (default native/build; e.g. a frozen copy)"
    )
    args = parser.parse_args()
    q = args.quick
    global BUILD, FRONT  # noqa: PLW0603 - the programs of this run
    if args.native_dir:
        BUILD = args.native_dir.resolve()
        FRONT = BUILD / "front" / "safekit-front"
    sizes = {
        "seq_mib": 256 if q else 1024,
        "fsync_ops": 500 if q else 3000,
        "files": 1000 if q else 5000,
        # issue 15's 20,000 (was 19,000 while every front held an O_PATH descriptor per cached
        # inode under this machine's hard RLIMIT_NOFILE of 20,000; now one per directory: ADR 0037)
        "tree_files": 5000 if q else 20000,
        "read_mib": 128 if q else 512,
        "dataset_files": 8 if q else 64,  # 32 MiB each: 256 MiB or 2 GiB
        "rounds": 2 if q else 3,  # of the workloads on every target (medians reported)
    }
    # lab hosts inherit this environment (nsenter): safekitd runs this checkout's native programs
    os.environ[native.NATIVE_DIR_ENV] = str(BUILD)
    # this checkout's programs, built when missing (`make -C native all` leaves out the front alone)
    if not args.native_dir and not all((BUILD / p).is_file() for p in native.PROGRAMS.values()):
        subprocess.run(["make", "-C", str(REPO / "native"), "all"], check=True)
    if not args.native_dir and not FRONT.is_file():
        subprocess.run(["make", "-C", str(REPO / "native" / "front")], check=True)
    lab = Lab(args.lab)
    lab.down()
    load_start = [round(x, 2) for x in os.getloadavg()]
    lab.up(nodes=2, lans=1)
    root = Path(tempfile.mkdtemp(prefix="safekit-bnrfs-", dir="/var/tmp"))
    result: dict[str, Any] = {
        "sizes": sizes,
        "targets": TARGETS,
        "native_dir": str(BUILD),
        "loadavg_start": load_start,
        "fuse_only_baseline": "native/build/front/safekit-front --sink=null on node1 (the FUSE front "
        "safekit-rfs-primary is built on, no writeback cache, the operations discarded instead of sent)",
        "previous_python_data_path": PREVIOUS_PYTHON,
    }
    front: subprocess.Popen[bytes] | None = None
    try:
        key = clusterkey.generate_key()
        cluster = LabCluster(lab)
        for name, mode, port, where in (
            (MODULE, "second", 4800, "/srv/bench"),
            (MODULE_NONE, "none", 4810, "/srv/bnone"),
        ):
            module = root / name
            (module / "conf").mkdir(parents=True)
            (module / "bin").mkdir()
            (module / "conf" / "userconfig.xml").write_text(
                USERCONFIG.format(port=port, mode=mode, dir=where)
            )
            root.chmod(0o755)
            cluster.install(module, key=key)
        for node in cluster.nodes:
            lab.exec(
                node,
                [
                    "mkdir",
                    "-p",
                    "/srv/bench",
                    "/srv/bnone",
                    "/srv/local",
                    "/srv/fuseonly",
                    "/srv/fuseonly-backing",
                ],
                check=True,
            )
            cluster.start_daemon(node)
        for name in (MODULE, MODULE_NONE):
            cluster.safekit("node1", "prim", "-m", name)
            cluster.wait_state("node1", name, "ALONE", timeout=30)
            cluster.safekit("node2", "second", "-m", name)
            cluster.wait_state("node2", name, "SECOND", timeout=60)
        front = start_front(lab, "node1")
        fpid = front_pid(lab, "node1")
        ppid, spid = rfs_pid(lab, "node1", MODULE), rfs_pid(lab, "node2", MODULE)
        result["programs"] = {
            "primary": os.readlink(f"/proc/{ppid}/exe"),
            "secondary": os.readlink(f"/proc/{spid}/exe"),
            "fuse_only": os.readlink(f"/proc/{fpid}/exe"),
        }
        procs = {"primary": ppid, "secondary": spid, "fuse_only": fpid}
        before = {role: proc_status(pid) for role, pid in procs.items()}
        if not q:  # whatever was removed before the run (an earlier lab's files): CLEAN_INODES
            settle_deleted_inodes()
        result["clean_inodes"] = CLEAN_INODES
        targets = {"local": "/srv/local", "fuse_only": "/srv/fuseonly", "replicated": "/srv/bench"}
        samples: dict[str, list[float]] = {}  # "section.figure" -> one value per round
        status_rounds: list[dict[str, dict[str, float]]] = []
        gib = sizes["seq_mib"] / 1024
        verdict: dict[str, Any] = {}
        verify_seconds = verify_peak = peak_before_verify = 0.0

        def add(name: str, value: float) -> None:
            samples.setdefault(name, []).append(value)

        def measure(kind: str, where: str, n: int) -> dict[str, float]:
            run_workload(lab, "node1", "sync", "/", 0)  # nothing of the previous target left to write
            time.sleep(1)
            return run_workload(lab, "node1", kind, where, n)

        for rnd in range(sizes["rounds"]):
            # each round takes the targets in another order (none always first after the last one)
            order = list(targets.items())
            order = order[rnd % len(order) :] + order[: rnd % len(order)]
            # 1. sequential write, CPU per GiB of each process
            for label, where in order:
                cpu0 = {role: cpu_user_sys(pid) for role, pid in procs.items()}
                out = measure("seq", where, sizes["seq_mib"])
                cpu1 = {role: cpu_user_sys(pid) for role, pid in procs.items()}
                add(f"seq_write.{label}_mib_s", sizes["seq_mib"] / out["seconds"])
                roles = {"fuse_only": ("fuse_only",), "replicated": ("primary", "secondary")}.get(label, ())
                for role in roles:
                    user, system = (cpu1[role][i] - cpu0[role][i] for i in (0, 1))
                    add(f"cpu_seconds_per_gib.{role}", (user + system) / gib)
                    # user (AEAD, the copies the program makes) against system (the kernel's copies)
                    add(f"cpu_seconds_per_gib.{role}_user", user / gib)
                    add(f"cpu_seconds_per_gib.{role}_sys", system / gib)
            # 2. 4 KiB write + fsync latency (async="second", and async="none" beside it)
            for label, where in (*order, ("replicated_none", "/srv/bnone")):
                out = measure("fsync", where, sizes["fsync_ops"])
                add(f"fsync_4k.{label}_p50_ms", out["p50_ms"])
                add(f"fsync_4k.{label}_p99_ms", out["p99_ms"])
            # 3. small files, an fsync each (in the round's own directory: CLEAN_INODES)
            for label, where in order:
                add(
                    f"small_files_fsync.{label}_files_s",
                    measure("files", f"{where}/r{rnd}", sizes["files"])["files_per_s"],
                )
            # 4. a tree of small files, no fsync (one sync at the end); after the last round, a verify
            # of the module (every round's files)
            for label, where in order:
                out = measure("tree", f"{where}/r{rnd}", sizes["tree_files"])
                add(f"small_file_tree.{label}_files_s", sizes["tree_files"] / out["seconds"])
                add(
                    f"small_file_tree.{label}_create_only_files_s",
                    sizes["tree_files"] / out["create_seconds"],
                )
            if rnd == sizes["rounds"] - 1:
                # the verify's memory apart from the workloads': it holds both sides' manifests of
                # every file of the module (every round's small files and trees: CLEAN_INODES)
                peak_before_verify = proc_status(ppid)["peak_rss_mib"]
                reset_peak_rss(ppid)
                started = time.monotonic()
                out_v = cluster.safekit(
                    "node1", "rfs", "verify", "-m", MODULE, "--json", timeout=1800, check=False
                )
                verify_seconds = round(time.monotonic() - started, 2)
                verify_peak = proc_status(ppid)["peak_rss_mib"]
                reset_peak_rss(ppid)
                verdict = (
                    json.loads(out_v.stdout)
                    if out_v.stdout.strip().startswith("{")
                    else {"error": out_v.stderr}
                )
            # 5. reads of a file written through each target (cold: every cache dropped; warm)
            for label, where in order:
                run_workload(lab, "node1", "mkread", where, sizes["read_mib"])
                out = measure("read", where, 0)
                add(f"reads.{label}_cold_mib_s", out["cold_mib_s"])
                add(f"reads.{label}_warm_mib_s", out["warm_mib_s"])
                run_workload(lab, "node1", "rmread", where, 0)
            status_rounds.append({role: proc_status(pid) for role, pid in procs.items()})
        for where in targets.values():  # every round's files, once nothing more is measured
            for rnd in range(sizes["rounds"]):
                run_workload(lab, "node1", "rmtree", f"{where}/r{rnd}", 0)

        result["rounds"] = sizes["rounds"]
        result["samples"] = {k: [round(v, 3) for v in vs] for k, vs in samples.items()}
        med: dict[str, dict[str, Any]] = {}
        for name, values in samples.items():
            section, figure = name.split(".")
            value = statistics.median(values)
            med.setdefault(section, {})[figure] = round(value, 3 if "ms" in figure or "cpu" in section else 1)

        def per_round(section: str, label: str, metric: str, *, diff: bool = False) -> float:
            """The median over the rounds of a target's figure against local's in the same round
            (its ratio, or with diff its difference): the targets of a round ran back to back."""
            local = samples[f"{section}.local_{metric}"]
            values = samples[f"{section}.{label}_{metric}"]
            if diff:
                return round(statistics.median(v - lo for v, lo in zip(values, local, strict=True)), 3)
            return round(statistics.median(v / lo for v, lo in zip(values, local, strict=True)), 3)

        seq, cpu, fsync = med["seq_write"], med["cpu_seconds_per_gib"], med["fsync_4k"]
        files, tree, reads = med["small_files_fsync"], med["small_file_tree"], med["reads"]
        cpu = {k: round(v, 2) for k, v in cpu.items()}
        seq["fuse_only_ratio"] = per_round("seq_write", "fuse_only", "mib_s")
        seq["ratio"] = per_round("seq_write", "replicated", "mib_s")
        for label in ("fuse_only", "replicated", "replicated_none"):
            for p in ("p50", "p99"):
                fsync[f"{label}_{p}_over_local_ms"] = per_round("fsync_4k", label, f"{p}_ms", diff=True)
        files["fuse_only_ratio"] = per_round("small_files_fsync", "fuse_only", "files_s")
        files["ratio"] = per_round("small_files_fsync", "replicated", "files_s")
        tree["files"] = sizes["tree_files"]
        tree["fuse_only_ratio"] = per_round("small_file_tree", "fuse_only", "files_s")
        tree["ratio"] = per_round("small_file_tree", "replicated", "files_s")
        tree["verify_seconds"] = verify_seconds
        tree["verify_primary_peak_rss_mib"] = verify_peak
        tree["verify_identical"] = verdict.get("identical")
        tree["verify_entries"] = verdict.get("checked")
        for label in ("fuse_only", "replicated"):
            reads[f"{label}_cold_ratio"] = per_round("reads", label, "cold_mib_s")
            reads[f"{label}_warm_ratio"] = per_round("reads", label, "warm_mib_s")
        result.update(
            seq_write=seq,
            cpu_seconds_per_gib=cpu,
            fsync_4k=fsync,
            small_files_fsync=files,
            small_file_tree=tree,
        )
        result["reads"] = reads
        # processes: peak RSS; RSS and open files at the start and after each round (flat: the last
        # round ends where the first one did, the kernel's inode cache warmed by the first round)
        result["processes"] = {
            role: {
                # the primary's: the workloads' peak, the verify's apart (small_file_tree)
                "peak_rss_mib": max(
                    status_rounds[-1][role]["peak_rss_mib"],
                    peak_before_verify if role == "primary" else 0.0,
                ),
                "rss_mib_start_then_after_each_round": [before[role]["rss_mib"]]
                + [s[role]["rss_mib"] for s in status_rounds],
                "fds_start_then_after_each_round": [before[role]["fds"]]
                + [s[role]["fds"] for s in status_rounds],
            }
            for role in procs
        }
        result["processes"]["bnone_primary_peak_rss_mib"] = proc_status(rfs_pid(lab, "node1", MODULE_NONE))[
            "peak_rss_mib"
        ]
        result["processes"]["safekitd_rss_mib"] = proc_status(daemon_pid(lab, "node1"))["rss_mib"]
        flat = all(
            status_rounds[-1][r]["fds"] <= status_rounds[0][r]["fds"] + 2
            and status_rounds[-1][r]["rss_mib"] <= status_rounds[0][r]["rss_mib"] * 1.1 + 2
            for r in ("primary", "secondary")
        )
        stop_front(lab, "node1", front)
        front = None

        # 6. reintegration after 1 % changed while the secondary was away
        run_workload(lab, "node1", "dataset", "/srv/bench", sizes["dataset_files"])
        run_workload(lab, "node1", "dataset", "/srv/local", sizes["dataset_files"])  # the TCP copy's source
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
        # 7. full sync against a plain TCP copy of the same files (caches dropped before each)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=120)
        for node in cluster.nodes:
            run_workload(lab, node, "drop", "/", 0)
        mark = len(cluster.log("node1", MODULE).splitlines())
        cluster.safekit("node2", "second", "fullsync", "-m", MODULE)
        mode, seconds, sent = wait_resync(cluster, "node1", mark, 1200)
        cluster.wait_state("node2", MODULE, "SECOND", timeout=120)
        for node in cluster.nodes:
            run_workload(lab, node, "drop", "/", 0)
        receiver = subprocess.Popen(
            lab.exec_argv("node2", ["python3", "-c", TCP_RECV, "5999", "/srv/local/copy.bin"]),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        receiver.stdout.readline()
        peer = str(lab.plan().host("node2").address)
        lab.exec("node1", ["python3", "-c", TCP_SEND, "/srv/local", peer, "5999"], check=True, timeout=1200)
        copied, copy_seconds = receiver.stdout.readline().split()
        receiver.wait(timeout=60)
        full: dict[str, Any] = {
            "mode": mode,
            "bytes": sent,
            "seconds": seconds,
            "mib_s": round(sent / (1 << 20) / seconds, 1),
            "tcp_copy_bytes": int(copied),
            "tcp_copy_mib_s": round(int(copied) / (1 << 20) / float(copy_seconds), 1),
        }
        full["ratio_to_tcp_copy"] = ratio(full["mib_s"], full["tcp_copy_mib_s"])
        result["full_sync"] = full
        result["processes"]["primary_peak_rss_mib_at_end"] = proc_status(ppid)["peak_rss_mib"]
        result["processes"]["primary_fds_at_end"] = proc_status(ppid)["fds"]
        procs_out = result["processes"]
        peak = max(procs_out[r]["peak_rss_mib"] for r in ("primary", "secondary"))
        peak = max(peak, procs_out["primary_peak_rss_mib_at_end"], procs_out["bnone_primary_peak_rss_mib"])
        result["meets_targets"] = {
            "seq_write_ratio": seq["ratio"] >= TARGETS["seq_write_ratio"],
            "fsync_p50_over_local_ms": fsync["replicated_p50_over_local_ms"]
            <= TARGETS["fsync_p50_over_local_ms"],
            "fsync_p99_over_local_ms": fsync["replicated_p99_over_local_ms"]
            <= TARGETS["fsync_p99_over_local_ms"],
            "small_files_fsync_ratio": files["ratio"] >= TARGETS["small_files_fsync_ratio"],
            "tree_ratio": tree["ratio"] >= TARGETS["tree_ratio"],
            "read_ratio": reads["replicated_cold_ratio"] >= TARGETS["read_ratio"],
            "cpu_seconds_per_gib_each_side": max(cpu["primary"], cpu["secondary"])
            <= TARGETS["cpu_seconds_per_gib_each_side"],
            "rss_mib_each_process": peak <= TARGETS["rss_mib_each_process"],
            "open_files_and_memory_flat": flat,
            "fullsync_ratio_to_tcp_copy": full["ratio_to_tcp_copy"] >= TARGETS["fullsync_ratio_to_tcp_copy"],
            "reintegration_bytes_fraction": result["reintegration"]["fraction_of_dataset"]
            <= TARGETS["reintegration_bytes_fraction"],
        }
        for node in cluster.nodes:
            cluster.stop_daemon(node)
    finally:
        if front is not None:
            stop_front(lab, "node1", front)
        lab.down()
        shutil.rmtree(root, ignore_errors=True)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["quick"] = q
    path = write_result("replication", result)
    print(json.dumps(result, indent=2))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
