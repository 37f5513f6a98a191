"""Reads through the native FUSE front (native/front, replication off) beside the local directory
and beside a baseline build of the front (the build from before a change), in one run, rounds
alternating: what ADR 0054's cache decision changes.

Targets, each on a file of 256 MiB (64 MiB with --short) under /tmp, read in 1 MiB reads:
- cold: `sync` and `drop_caches` first (every layer's pages dropped);
- warm: read again at once (its pages cached);
- reread after a write: the file is read (cached), 4 KiB are written to it through the same
  target, the attribute timeout (1 s) passes, the file is stat'ed (what `ls -l`, a database's
  size check or the next read after the timeout does), then it is read again whole. With
  libfuse's default (auto_inval_data) the stat sees the new mtime and the kernel drops every
  cached page of the file: the reread comes back through FUSE.
The FUSE READ requests of each pass are counted from the front's --debug log (the kernel asks
nothing when the page cache serves the read). The warm figures through FUSE stay below local
whatever the front does (order-0 folios: docs/adr/0054).

Writes bench/results/front_reads.json (with the load average at the start and at the end).
Usage: bench/front_reads.py --baseline PROGRAM [--short] [--rounds N]
  PROGRAM: safekit-front built from the commit before the change (see the result's "baseline").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

REPO = Path(__file__).resolve().parents[1]
PROGRAM = REPO / "native" / "build" / "front" / "safekit-front"

WORKLOAD = r"""
import json, os, sys, time
path, mib = sys.argv[1], int(sys.argv[2])
def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
def read_all(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    t = time.perf_counter()
    total = 0
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
    assert total == mib << 20, total
    return total / (1 << 20) / (time.perf_counter() - t)
out = {}
drop_caches()
fd = os.open(path, os.O_RDWR)
def mark():
    print("mark", flush=True)
    sys.stdin.readline()
mark()
out["cold_mib_s"] = read_all(fd)
mark()
out["warm_mib_s"] = read_all(fd)
mark()
os.pwrite(fd, b"w" * 4096, 8192)
time.sleep(1.2)
os.fstat(fd)
out["reread_after_write_mib_s"] = read_all(fd)
mark()
os.close(fd)
print(json.dumps(out), flush=True)
"""


@contextlib.contextmanager
def front(program: Path, root: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """The front serving root/name-backing at root/name, with --debug into root/name.log."""
    backing, mnt, log = root / f"{name}-backing", root / name, root / f"{name}.log"
    backing.mkdir()
    mnt.mkdir()
    with open(log, "wb") as err:
        command = [str(program), "--sink=null", "--debug", str(backing), str(mnt)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else b""
        if not line.startswith(b"mounted"):
            raise RuntimeError(f"{program} did not mount: {line!r}")
        yield mnt, log
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False, capture_output=True)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reads(log: Path | None) -> int:
    return log.read_text(errors="replace").count("opcode: READ (") if log else 0


def measure(path: Path, mib: int, log: Path | None) -> dict[str, float]:
    """The workload on `path`, with the FUSE READs of each pass (from `log`)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKLOAD, str(path), str(mib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    counts = []
    for _ in range(4):
        assert proc.stdout.readline().strip() == "mark"
        time.sleep(0.1)  # the last replies logged
        counts.append(reads(log))
        proc.stdin.write("\n")
        proc.stdin.flush()
    out: dict[str, float] = json.loads(proc.stdout.readline())
    proc.wait(timeout=30)
    for i, label in enumerate(("cold", "warm", "reread_after_write")):
        if log is not None:
            out[f"{label}_fuse_reads"] = counts[i + 1] - counts[i]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, required=True, help="safekit-front from before the change")
    parser.add_argument("--baseline-commit", default="", help="the commit it was built from (recorded)")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (drop_caches, FUSE mounts)", file=sys.stderr)
        return 2
    subprocess.run(["make", "-s", "-C", str(REPO / "native" / "front")], check=True)
    mib = 64 if args.short else 256
    load_start = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="skbench-reads-", dir="/tmp"))
    samples: dict[str, list[float]] = {}
    try:
        (root / "local").mkdir()
        with (
            front(PROGRAM, root, "front") as (mnt_new, log_new),
            front(args.baseline, root, "base") as (
                mnt_old,
                log_old,
            ),
        ):
            data = os.urandom(1 << 20)
            targets: dict[str, tuple[Path, Path | None]] = {
                "local": (root / "local", None),
                "baseline": (mnt_old, log_old),
                "front": (mnt_new, log_new),
            }
            for where, _ in targets.values():  # written through each target, as an application does
                with open(where / "read.bin", "wb") as f:
                    for _ in range(mib):
                        f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            for r in range(args.rounds):
                order = list(targets.items())
                if r % 2:
                    order.reverse()
                for label, (where, log) in order:
                    for key, value in measure(where / "read.bin", mib, log).items():
                        samples.setdefault(f"{label}.{key}", []).append(round(value, 1))
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {key: statistics.median(values) for key, values in samples.items()}
    result: dict[str, Any] = {
        "baseline": {"program": str(args.baseline), "commit": args.baseline_commit},
        "file_mib": mib,
        "rounds": args.rounds,
        "medians": med,
        "ratios_to_local": {
            f"{label}.{figure}": round(med[f"{label}.{figure}_mib_s"] / med[f"local.{figure}_mib_s"], 3)
            for label in ("baseline", "front")
            for figure in ("cold", "warm", "reread_after_write")
        },
        "samples": samples,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    path = write_result("front_reads", result)
    print(json.dumps(result["ratios_to_local"], indent=2))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
