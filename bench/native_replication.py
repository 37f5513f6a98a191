"""The native primary (native/primary, `safekit-rfs-primary`) replicating to the native secondary
over 127.0.0.1, beside the local directory and the FUSE front with the null sink, in one run.

Targets, all on the same file system (directories under /tmp):
- local: the directory itself;
- front: native/build/front/safekit-front --sink=null (FUSE only, replication off);
- replicated: safekit-rfs-primary + safekit-rfs-secondary, async="second" (and async="none" for
  the fsync latency).
Measured: sequential write of 256 MiB in 1 MiB writes + one fsync (MiB/s; 1 GiB with --full);
4 KiB pwrite + fsync p50/p99 over 2,000 (ms); the primary's CPU seconds per GiB written. The front
and the replicated pair run with the kernel's writeback cache off and on (`--writeback`, the spec's
`writeback`, ADR 0030), in the same run; the FUSE mount's dirty-page limits (its BDI in
/sys/class/bdi) are recorded beside them.

--compare DIR (another build's native/build, e.g. a copy of it before a change): only the replicated
fsync latencies (one writer, and 4 writers each on its own file as pgbench's clients), of this build
and of DIR in turn, ROUNDS times (--rounds, default 3) in the same invocation so both see the same
load; written under "compare" in the JSON (the other figures are kept from the file).

Writes bench/results/native_replication.json. Usage: bench/native_replication.py [--full]
Needs root, /dev/fuse, fusermount3 and `make -C native all`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "native" / "build"
OUT = REPO / "bench" / "results" / "native_replication.json"


def seq_write(path: Path, total: int) -> float:
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    t0 = time.perf_counter()
    for _ in range(total >> 20):
        os.write(fd, block)
    os.fsync(fd)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    os.unlink(path)
    return (total >> 20) / elapsed


def fsync_latency(path: Path, n: int) -> tuple[float, float]:
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        os.pwrite(fd, block, (i % 256) * 4096)
        os.fsync(fd)
        samples.append((time.perf_counter() - t0) * 1000)
    os.close(fd)
    os.unlink(path)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def fsync_latency_writers(directory: Path, n: int, writers: int) -> tuple[float, float]:
    """`writers` threads, each on its own file, n 4 KiB pwrite + fsync each: p50, p99 (ms) of all."""
    samples: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        block = os.urandom(4096)
        fd = os.open(directory / f"w{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        mine = []
        for k in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, block, (k % 256) * 4096)
            os.fdatasync(fd)
            mine.append((time.perf_counter() - t0) * 1000)
        os.close(fd)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Events:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def wait(self, name: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.lines:
                if e.get("event") == name:
                    return e
            time.sleep(0.01)
        raise RuntimeError(f"no {name} event: {self.lines}")

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd}, separators=(",", ":")).encode() + b"\n")
        self.proc.stdin.flush()


def bdi_limits(mnt: Path) -> dict[str, Any]:
    """The FUSE mount's writeback limits (/sys/class/bdi/MAJ:MIN): FUSE gives every mount
    max_ratio 1 % and strict_limit, which throttle a writer through the writeback cache."""
    dev = os.stat(mnt).st_dev
    base = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}")
    out: dict[str, Any] = {}
    for name in ("max_ratio", "strict_limit", "max_bytes"):
        with contextlib.suppress(OSError, ValueError):
            out[name] = int((base / name).read_text())
    return out


def write_spec(
    root: Path, role: str, path: Path, port: int, async_mode: str, *, writeback: bool = False
) -> Path:
    node, peer = ("node1", "node2") if role == "primary" else ("node2", "node1")
    spec = root / f"{role}.json"
    spec.write_text(
        json.dumps(
            {
                "module": "bench",
                "node": node,
                "peer": peer,
                "dirs": [{"path": str(path), "notreplicated": [], "notreplicated_regex": []}],
                "local_addr": "127.0.0.1",
                "peer_addr": "127.0.0.1",
                "port": port,
                "key_file": str(root / "key"),
                "state_dir": str(root / f"{role}-state"),
                "async_mode": async_mode,
                "sendtimeout": 30.0,
                "connect_interval": 0.2,
                "window_bytes": 64 << 20,
                "writeback": writeback,
                "extra": {},
            }
        )
    )
    return spec


def unmount(mnt: Path) -> None:
    if os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


def run_front(root: Path, total: int, n: int, writeback: bool = False) -> dict[str, Any]:
    tag = "front-wb" if writeback else "front"
    backing, mnt = root / f"{tag}-backing", root / f"{tag}-mnt"
    backing.mkdir()
    mnt.mkdir()
    proc = subprocess.Popen(
        [
            str(BUILD / "front" / "safekit-front"),
            "--sink=null",
            *(["--writeback"] if writeback else []),
            str(backing),
            str(mnt),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        cpu0 = cpu_seconds(proc.pid)
        mib = seq_write(mnt / "seq", total)
        cpu = cpu_seconds(proc.pid) - cpu0
        p50, p99 = fsync_latency(mnt / "lat", n)
        return {
            "seq_mib_s": round(mib, 1),
            "cpu_s_per_gib": round(cpu / (total / (1 << 30)), 3),
            "fsync_p50_ms": round(p50, 3),
            "fsync_p99_ms": round(p99, 3),
            "bdi": bdi_limits(mnt),
        }
    finally:
        unmount(mnt)
        proc.wait(10)


def run_replicated(
    root: Path,
    async_mode: str,
    total: int,
    n: int,
    *,
    seq: bool,
    writeback: bool = False,
    build: Path = BUILD,
    tag: str = "",
) -> dict[str, Any]:
    base = root / f"rep-{async_mode}{'-wb' if writeback else ''}{tag}"
    base.mkdir()
    (base / "key").write_text("safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    (base / "key").chmod(0o600)
    replica, backing, mnt = base / "replica", base / "backing", base / "mnt"
    for d in (replica, backing, mnt):
        d.mkdir()
    sec = subprocess.Popen(
        [str(build / "safekit-rfs-secondary"), str(write_spec(base, "secondary", replica, 0, async_mode))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(base / "sec.log").open("wb"),
    )
    sev = Events(sec)
    prim = None
    try:
        port = int(sev.wait("listening")["port"])
        prim = subprocess.Popen(
            [
                str(build / "safekit-rfs-primary"),
                f"--mountpoint={mnt}",
                str(write_spec(base, "primary", backing, port, async_mode, writeback=writeback)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(base / "prim.log").open("wb"),
        )
        pev = Events(prim)
        pev.wait("mounted")
        pev.send("degrade_ok")
        pev.wait("in_sync")
        out: dict[str, Any] = {"bdi": bdi_limits(mnt)}
        if seq:
            cpu0, scpu0 = cpu_seconds(prim.pid), cpu_seconds(sec.pid)
            mib = seq_write(mnt / "seq", total)
            gib = total / (1 << 30)
            out["seq_mib_s"] = round(mib, 1)
            out["cpu_s_per_gib_primary"] = round((cpu_seconds(prim.pid) - cpu0) / gib, 3)
            out["cpu_s_per_gib_secondary"] = round((cpu_seconds(sec.pid) - scpu0) / gib, 3)
        p50, p99 = fsync_latency(mnt / "lat", n)
        out["fsync_p50_ms"], out["fsync_p99_ms"] = round(p50, 3), round(p99, 3)
        if tag:  # --compare: the same with 4 writers at once
            p50, p99 = fsync_latency_writers(mnt, n // 4, 4)
            out["fsync_4writers_p50_ms"], out["fsync_4writers_p99_ms"] = round(p50, 3), round(p99, 3)
            out["cpu_s_primary"], out["cpu_s_secondary"] = (
                round(cpu_seconds(prim.pid), 2),
                round(cpu_seconds(sec.pid), 2),
            )
        rss = [
            line
            for line in Path(f"/proc/{prim.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM")
        ]
        out["primary_peak_rss_kib"] = int(rss[0].split()[1]) if rss else None
        pev.send("stop")
        prim.wait(10)
        return out
    finally:
        if prim is not None and prim.poll() is None:
            prim.kill()
            prim.wait()
        unmount(mnt)
        if sec.poll() is None:
            sev.send("stop")
            sec.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="1 GiB sequential write (default 256 MiB)")
    ap.add_argument("--compare", type=Path, help="another build directory: fsync latencies of both, in turn")
    ap.add_argument("--rounds", type=int, default=3, help="--compare: rounds (default 3)")
    args = ap.parse_args()
    total = (1 << 30) if args.full else (256 << 20)
    n = 2000
    root = Path(tempfile.mkdtemp(prefix="sknrbench-", dir="/tmp"))
    try:
        if args.compare:
            return compare(root, args.compare, n, args.rounds)
        local_dir = root / "local"
        local_dir.mkdir()
        results: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mode": "full" if args.full else "short",
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "seq_bytes": total,
            "fsync_samples": n,
        }
        p50, p99 = fsync_latency(local_dir / "lat", n)
        results["local"] = {
            "seq_mib_s": round(seq_write(local_dir / "seq", total), 1),
            "fsync_p50_ms": round(p50, 3),
            "fsync_p99_ms": round(p99, 3),
        }
        results["front_null"] = run_front(root, total, n)
        results["front_null_writeback"] = run_front(root, total, n, writeback=True)
        results["replicated_second"] = run_replicated(root, "second", total, n, seq=True)
        results["replicated_second_writeback"] = run_replicated(
            root, "second", total, n, seq=True, writeback=True
        )
        results["replicated_none"] = run_replicated(root, "none", total, n, seq=False)
        results["replicated_none_writeback"] = run_replicated(
            root, "none", total, n, seq=False, writeback=True
        )
        loc = results["local"]
        results["ratios"] = {}
        for suffix in ("", "_writeback"):
            rep = results["replicated_second" + suffix]
            front = results["front_null" + suffix]
            results["ratios"] |= {
                f"seq_replicated{suffix}_vs_local": round(rep["seq_mib_s"] / loc["seq_mib_s"], 3),
                f"seq_front{suffix}_vs_local": round(front["seq_mib_s"] / loc["seq_mib_s"], 3),
                f"fsync_p50{suffix}_over_local_ms": round(rep["fsync_p50_ms"] - loc["fsync_p50_ms"], 3),
                f"fsync_p99{suffix}_over_local_ms": round(rep["fsync_p99_ms"] - loc["fsync_p99_ms"], 3),
            }
        results["loadavg_end"] = os.getloadavg()
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
        return 0
    finally:
        for m in root.glob("*mnt"):
            unmount(m)
        for m in root.glob("*/mnt"):
            unmount(m)
        shutil.rmtree(root, ignore_errors=True)


def compare(root: Path, other: Path, n: int, rounds: int) -> int:
    """This build's replicated fsync latencies against another build's, alternated in one run."""
    builds = {"this": BUILD, "other": other.resolve()}
    per: dict[str, list[dict[str, Any]]] = {name: [] for name in builds}
    load0 = os.getloadavg()
    for r in range(rounds):
        for name, build in builds.items():
            per[name].append(run_replicated(root, "second", 0, n, seq=False, build=build, tag=f"-{name}{r}"))
    keys = ("fsync_p50_ms", "fsync_p99_ms", "fsync_4writers_p50_ms", "fsync_4writers_p99_ms")
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "builds": {name: str(b) for name, b in builds.items()},
        "rounds": per,
        "median": {
            name: {k: statistics.median(x[k] for x in rows) for k in keys} for name, rows in per.items()
        },
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "note": "async=second over 127.0.0.1, 4 KiB pwrite + fsync; builds alternated per round on a shared "
        "machine: compare the two builds within this entry only",
    }
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    old["compare"] = result
    OUT.write_text(json.dumps(old, indent=2) + "\n")
    print(json.dumps(result["median"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
