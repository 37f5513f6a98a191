"""The primary's FUSE loop, one build against another in the same run (ADR 0051).

safekit-rfs-primary replicating to safekit-rfs-secondary over 127.0.0.1 (async="second"), once
per build and round, the builds alternated and their order swapped each round so both see the
same load. Per pair: its threads and descriptors once in sync, then
- sequential write of SIZE MiB (default 256) in 1 MiB writes + one fsync (MiB/s);
- one reader of that file, 1 MiB reads (each open drops the kernel's cached pages: the reads reach
  the primary, answered by splice) (MiB/s);
- 12 readers at once, each on its own file of 16 MiB (MiB/s, all together);
- 4 KiB pwrite + fsync, one writer, 1,000 times (p50, p99 ms), and 4 writers at once;
and its threads and descriptors after each of these. Ratios: this build / the other, per round,
then their median.

Writes bench/results/native_loop.json (with /proc/loadavg at the start and the end).
Usage: bench/native_loop.py --other DIR [--rounds N] [--size-mib N]
  DIR: another build's native/build (e.g. `git archive` of the previous commit, built in /tmp).
Needs root, /dev/fuse, fusermount3 and `make -C native all`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from native_replication import Events, fsync_latency, fsync_latency_writers, unmount, write_spec

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "native" / "build"
OUT = REPO / "bench" / "results" / "native_loop.json"
READERS = 12


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def resources(pid: int) -> dict[str, int]:
    pipes = 0
    fds = os.listdir(f"/proc/{pid}/fd")
    for fd in fds:
        with contextlib.suppress(FileNotFoundError):
            pipes += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(fds), "pipes": pipes}


def write_file(path: Path, mib: int, block: bytes) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    t0 = time.perf_counter()
    for _ in range(mib):
        os.write(fd, block)
    os.fsync(fd)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    return mib / elapsed


def read_file(path: Path) -> int:
    done = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            done += len(chunk)
    return done


def parallel_reads(paths: list[Path]) -> float:
    got: list[int] = []
    start = threading.Barrier(len(paths) + 1)

    def one(p: Path) -> None:
        start.wait()
        got.append(read_file(p))

    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(got) / (1 << 20) / (time.perf_counter() - t0)


def run_pair(root: Path, build: Path, size_mib: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pair-", dir=root))
    (base / "key").write_text("safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    (base / "key").chmod(0o600)
    replica, backing, mnt = base / "replica", base / "backing", base / "mnt"
    for d in (replica, backing, mnt):
        d.mkdir()
    sec = subprocess.Popen(
        [str(build / "safekit-rfs-secondary"), str(write_spec(base, "secondary", replica, 0, "second"))],
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
                str(write_spec(base, "primary", backing, port, "second")),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(base / "prim.log").open("wb"),
        )
        pev = Events(prim)
        pev.wait("mounted")
        pev.send("degrade_ok")
        pev.wait("in_sync", timeout=60)
        out: dict[str, Any] = {"resources": {"in_sync": resources(prim.pid)}}
        block = os.urandom(1 << 20)
        out["seq_write_mib_s"] = round(write_file(mnt / "seq", size_mib, block), 1)
        out["resources"]["after_write"] = resources(prim.pid)
        t0 = time.perf_counter()
        got = read_file(mnt / "seq")
        out["read_mib_s"] = round(got / (1 << 20) / (time.perf_counter() - t0), 1)
        out["resources"]["after_read"] = resources(prim.pid)
        paths = [mnt / f"r{i}" for i in range(READERS)]
        for p in paths:
            write_file(p, 16, block)
        out["parallel_read_mib_s"] = round(parallel_reads(paths), 1)
        out["resources"]["after_parallel_reads"] = resources(prim.pid)
        p50, p99 = fsync_latency(mnt / "lat", 1000)
        out["fsync_p50_ms"], out["fsync_p99_ms"] = round(p50, 3), round(p99, 3)
        p50, p99 = fsync_latency_writers(mnt, 250, 4)
        out["fsync_4writers_p50_ms"], out["fsync_4writers_p99_ms"] = round(p50, 3), round(p99, 3)
        out["resources"]["after_fsyncs"] = resources(prim.pid)
        pev.send("stop")
        prim.wait(20)
        return out
    finally:
        if prim is not None and prim.poll() is None:
            prim.kill()
            prim.wait()
        unmount(mnt)
        if sec.poll() is None:
            sev.send("stop")
            sec.wait(20)
        shutil.rmtree(base, ignore_errors=True)


FIGURES = (
    "seq_write_mib_s",
    "read_mib_s",
    "parallel_read_mib_s",
    "fsync_p50_ms",
    "fsync_p99_ms",
    "fsync_4writers_p50_ms",
    "fsync_4writers_p99_ms",
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", type=Path, required=True, help="the baseline's native/build directory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    builds = {"this": BUILD, "other": args.other.resolve()}
    load_start = loadavg()
    root = Path(tempfile.mkdtemp(prefix="sknloop-", dir="/tmp"))
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = ["this", "other"] if r % 2 == 0 else ["other", "this"]
            rounds.append({name: run_pair(root, builds[name], args.size_mib) for name in order})
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratios = {
        f: round(statistics.median(rd["this"][f] / rd["other"][f] for rd in rounds), 3) for f in FIGURES
    }
    result = {
        "benchmark": "native_loop",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "builds": {k: str(v) for k, v in builds.items()},
        "size_mib": args.size_mib,
        "readers": READERS,
        "rounds": rounds,
        "median_ratio_this_over_other": ratios,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "cpus": os.cpu_count(),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"ratios": ratios, "load": [load_start, result["loadavg_end"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
