"""Resident memory of the native pair over repeated `verify` rounds (ADR 0044).

A primary (safekit-rfs-primary) and a secondary (safekit-rfs-secondary) over 127.0.0.1, in sync on
a tree of large files and many small ones (written into the primary's directory before it starts:
the first sync is `full`); then `verify` ROUNDS times (`safekit rfs verify`'s command: both copies
read whole and compared by 64 KiB block checksums). Each process's RSS (VmRSS, RssAnon) is sampled
every 20 ms during each round and read after it.

--compare DIR (another build's native/build, e.g. a copy of it before a change): that build first,
then this one, on the same tree in the same invocation (the figures of both under "runs").

Writes bench/results/native_verify_memory.json (or --out). Usage:
  bench/native_verify_memory.py [--big-mib 2048] [--files 20000] [--small-max 512] [--rounds 5]
                                [--compare DIR]
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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from native_replication import Events, unmount, write_spec

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "native_verify_memory.json"


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def make_tree(root: Path, big_mib: int, files: int, small_max: int = 64 << 10) -> int:
    """4 large files sharing big_mib, and `files` small ones (1 B to small_max) in 100 directories."""
    total = 0
    chunk = os.urandom(1 << 20)
    for i in range(4):
        with open(root / f"big{i}", "wb") as f:
            for k in range(big_mib // 4):
                f.write(chunk[k % 7 :] + chunk[: k % 7])
                total += 1 << 20
    small = os.urandom(small_max)
    for i in range(files):
        d = root / f"d{i % 100:02d}"
        if i < 100:
            d.mkdir()
        size = 1 + (i * 7919) % small_max
        (d / f"f{i}").write_bytes(small[:size])
        total += size
    return total


class Sampler:
    """The peak VmRSS of each pid while it runs (every 20 ms)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, KeyError):
                    self.peak[name] = max(self.peak[name], status_kib(pid)["VmRSS"])
            time.sleep(0.02)

    def done(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join()
        return self.peak


def start_pair(
    root: Path, build: Path, backing: Path
) -> tuple[subprocess.Popen[bytes], Events, subprocess.Popen[bytes]]:
    """The secondary (a fresh copy) and the primary of `backing`, in sync: secondary, its events, primary."""
    replica, mnt = root / "replica", root / "mnt"
    replica.mkdir()
    mnt.mkdir()
    sec = subprocess.Popen(
        [str(build / "safekit-rfs-secondary"), str(write_spec(root, "secondary", replica, 0, "second"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(root / "sec.log").open("wb"),
    )
    port = int(Events(sec).wait("listening")["port"])
    prim = subprocess.Popen(
        [
            str(build / "safekit-rfs-primary"),
            f"--mountpoint={mnt}",
            str(write_spec(root, "primary", backing, port, "second")),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(root / "prim.log").open("wb"),
    )
    pev = Events(prim)
    pev.wait("mounted")
    pev.send("degrade_ok")
    pev.wait("in_sync", timeout=1800)
    return sec, pev, prim


def verify_round(pev: Events, pids: dict[str, int]) -> dict[str, Any]:
    """One `verify`: its answer, duration, each process's peak RSS during it and status after it."""
    n = sum(1 for e in pev.lines if e.get("event") == "verify")
    sampler = Sampler(pids)
    t0 = time.monotonic()
    pev.send("verify")
    deadline = t0 + 1800
    while sum(1 for e in pev.lines if e.get("event") == "verify") <= n:
        if time.monotonic() > deadline or pev.proc.poll() is not None:
            raise RuntimeError("no verify answer")
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    peak = sampler.done()
    answer = [e for e in pev.lines if e.get("event") == "verify"][-1]
    time.sleep(0.5)
    return {
        "seconds": round(elapsed, 1),
        "ok": answer.get("ok"),
        "checked": answer.get("checked"),
        "peak_rss_kib": peak,
        "after_kib": {name: status_kib(pid) for name, pid in pids.items()},
    }


def stop(sec: subprocess.Popen[bytes] | None, prim: subprocess.Popen[bytes] | None, mnt: Path) -> None:
    for proc in (prim, sec):
        if proc is None or proc.poll() is not None:
            continue
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.write(b'{"cmd":"stop"}\n')
            proc.stdin.flush()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc is prim:
            unmount(mnt)


def run_build(root: Path, build: Path, backing: Path, rounds: int, smaps: Path | None) -> dict[str, Any]:
    """A pair of `build` on the tree in `backing`, in sync, then `rounds` verify rounds."""
    root.mkdir()
    (root / "key").write_text("safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    (root / "key").chmod(0o600)
    sec = prim = None
    try:
        t0 = time.monotonic()
        sec, pev, prim = start_pair(root, build, backing)
        pids = {"primary": prim.pid, "secondary": sec.pid}
        result: dict[str, Any] = {
            "build": str(build),
            "loadavg_start": os.getloadavg(),
            "full_sync_s": round(time.monotonic() - t0, 1),
            "after_sync_kib": {n: status_kib(p) for n, p in pids.items()},
            "rounds": [],
        }
        for r in range(rounds + 1):
            if smaps:
                smaps.mkdir(parents=True, exist_ok=True)
                for name, pid in pids.items():
                    shutil.copyfile(f"/proc/{pid}/smaps", smaps / f"{root.name}-{name}-{r}.smaps")
            if r == rounds:
                break
            row = {"round": r + 1} | verify_round(pev, pids)
            result["rounds"].append(row)
            print(json.dumps(row), flush=True)
        result["loadavg_end"] = os.getloadavg()
        rss = {n: [row["after_kib"][n]["VmRSS"] for row in result["rounds"]] for n in pids}
        result["summary"] = {
            n: {
                "after_sync_mib": round(result["after_sync_kib"][n]["VmRSS"] / 1024, 1),
                "after_rounds_mib": [round(v / 1024, 1) for v in rss[n]],
                "peak_during_verify_mib": round(
                    max(row["peak_rss_kib"][n] for row in result["rounds"]) / 1024, 1
                ),
                "first_round_step_mib": round((rss[n][0] - result["after_sync_kib"][n]["VmRSS"]) / 1024, 2),
                "growth_round2_to_last_mib": round((rss[n][-1] - rss[n][min(1, len(rss[n]) - 1)]) / 1024, 2),
            }
            for n in pids
        }
        print(json.dumps(result["summary"], indent=2), flush=True)
        return result
    finally:
        stop(sec, prim, root / "mnt")
        shutil.rmtree(root / "replica", ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mib", type=int, default=2048)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--small-max", type=int, default=512, help="largest small file (bytes)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compare", type=Path, help="another build directory, run first on the same tree")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--smaps", type=Path, help="copy each process's /proc/PID/smaps here after each round")
    args = ap.parse_args()
    builds = {"this": (REPO / "native" / "build").resolve()}
    if args.compare:
        builds = {"other": args.compare.resolve()} | builds
    top = Path(tempfile.mkdtemp(prefix="sknverify-", dir="/tmp"))
    try:
        backing = top / "backing"
        backing.mkdir()
        t0 = time.monotonic()
        data_bytes = make_tree(backing, args.big_mib, args.files, args.small_max)
        result: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "tree": {
                "bytes": data_bytes,
                "large_files": 4,
                "small_files": args.files,
                "small_max_bytes": args.small_max,
                "made_s": round(time.monotonic() - t0, 1),
            },
            "rounds": args.rounds,
            "runs": {
                name: run_build(top / name, build, backing, args.rounds, args.smaps)
                for name, build in builds.items()
            },
            "note": "127.0.0.1, the tree written into the primary's directory before it starts (first sync: "
            "full); RSS sampled every 20 ms during each verify and read 0.5 s after it",
        }
        result["loadavg_end"] = os.getloadavg()
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        for m in top.glob("*/mnt"):
            unmount(m)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
