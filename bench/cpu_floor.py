"""What one GiB costs in CPU on this machine without any replication logic: the floor under issue 15's
"CPU per GiB written <= 0.5 s on each side".

Each side of the native data path does at least, per byte written by an application:
- primary: the copy out of /dev/fuse (measured as a read of a cached file: the same kernel copy to
  user memory), the write into the backing file's page cache, the AEAD seal, the TCP send;
- secondary: the TCP receive, the AEAD open, the copy into its aligned buffer (large aligned writes
  go to the disk with O_DIRECT, ADR 0061: no page-cache copy).
Measured here, each in a child process whose CPU (user + system, getrusage) is counted, ROUNDS
times (median and minimum):
- page_cache_write: 1 MiB pwrite calls into a new file (unlinked after), no fsync; and with an
  fsync at the end (the writeback work done in the writer's context);
- page_cache_read: 1 MiB pread calls of a file in the page cache;
- tcp_send / tcp_recv: 1 MiB send and recv_into calls over 127.0.0.1 (the lab's veth costs more);
- aead: native/build/bench_aead (`make -C native bench`), AES-256-GCM on 1 MiB frames;
- page_cache_write_fresh: the page-cache write into pages freed 5 s before, and memory_first_touch
  against memory_touched_again (anonymous memory): what a page costs the first time it is touched
  after the host took it back (a VM with virtio-balloon free page reporting, as here).
Writes bench/results/cpu_floor.json. Usage: bench/cpu_floor.py [--gib 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20
FREE_PAGE_REPORTING_WAIT = 5.0
"""Seconds after a file's pages were freed (virtio-balloon reports free pages to the host 2 s after)."""

WRITER = r"""
import os, sys, resource
path, mib, fsync = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
block = os.urandom(1 << 20)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
r0 = resource.getrusage(resource.RUSAGE_SELF)
for i in range(mib):
    os.pwrite(fd, block, i << 20)
if fsync:
    os.fsync(fd)
r1 = resource.getrusage(resource.RUSAGE_SELF)
os.close(fd)
print(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
"""

READER = r"""
import os, sys, resource
path, mib = sys.argv[1], int(sys.argv[2])
buf = bytearray(1 << 20)
fd = os.open(path, os.O_RDONLY)
for i in range(mib):  # warm: every page in the cache
    os.preadv(fd, [buf], i << 20)
r0 = resource.getrusage(resource.RUSAGE_SELF)
for i in range(mib):
    os.preadv(fd, [buf], i << 20)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
"""


FIRST_TOUCH = r"""
import mmap, resource, sys
mib = int(sys.argv[1])
m = mmap.mmap(-1, mib << 20)
block = b"\x01" * (1 << 20)
passes = []
for _ in range(2):  # first: every page touched for the first time; second: the same pages again
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(mib):
        m[i << 20 : (i + 1) << 20] = block
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    passes.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
print(passes[0], passes[1])
"""


def child_seconds(argv: list[str]) -> float:
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def tcp(mib: int) -> tuple[float, float]:
    """CPU seconds of the sender and of the receiver (threads of this process, RUSAGE_THREAD)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    got: dict[str, float] = {}

    def receiver() -> None:
        c, _ = ls.accept()
        buf = bytearray(MIB)
        view = memoryview(buf)
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        while c.recv_into(view):
            pass
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        got["recv"] = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        c.close()

    t = threading.Thread(target=receiver)
    t.start()
    s = socket.create_connection(("127.0.0.1", port))
    block = os.urandom(MIB)
    r0 = resource.getrusage(resource.RUSAGE_THREAD)
    for _ in range(mib):
        s.sendall(block)
    s.close()
    r1 = resource.getrusage(resource.RUSAGE_THREAD)
    t.join()
    ls.close()
    return r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, got["recv"]


def aead_s_per_gib() -> float | None:
    out = subprocess.run(
        ["make", "-C", str(REPO / "native"), "bench"], capture_output=True, text=True, check=False
    )
    m = re.search(r"AES-256-GCM\s+1048576-byte frames:\s+(\d+) MB/s", out.stdout)
    return round((1 << 30) / (int(m.group(1)) * 1e6), 3) if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    mib = args.gib << 10
    samples: dict[str, list[float]] = {}
    load0 = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="skcpufloor-", dir="/var/tmp") as d:
        path = str(Path(d) / "f.bin")
        for _ in range(args.rounds):
            for fsync in (False, True):
                name = "page_cache_write_fsync" if fsync else "page_cache_write"
                s = child_seconds([sys.executable, "-c", WRITER, path, str(mib), "1" if fsync else "0"])
                samples.setdefault(name, []).append(s / args.gib)
            samples.setdefault("page_cache_read", []).append(
                child_seconds([sys.executable, "-c", READER, path, str(mib)]) / args.gib
            )
            os.unlink(path)
            # the pages just freed reach the host's free page reporting after 2 s: a new file's pages
            # then come from memory the hypervisor must fault in again, as in a long sequential write
            time.sleep(FREE_PAGE_REPORTING_WAIT)
            samples.setdefault("page_cache_write_fresh", []).append(
                child_seconds([sys.executable, "-c", WRITER, path, str(mib), "0"]) / args.gib
            )
            os.unlink(path)
            out = subprocess.run(
                [sys.executable, "-c", FIRST_TOUCH, str(mib)], capture_output=True, text=True, check=True
            ).stdout.split()
            samples.setdefault("memory_first_touch", []).append(float(out[0]) / args.gib)
            samples.setdefault("memory_touched_again", []).append(float(out[1]) / args.gib)
            snd, rcv = tcp(mib)
            samples.setdefault("tcp_send", []).append(snd / args.gib)
            samples.setdefault("tcp_recv", []).append(rcv / args.gib)
    per: dict[str, Any] = {
        k: {
            "median": round(statistics.median(v), 3),
            "min": round(min(v), 3),
            "samples": [round(x, 3) for x in v],
        }
        for k, v in samples.items()
    }
    aead = aead_s_per_gib()
    per["aead_aes_256_gcm"] = {"median": aead, "min": aead}
    floor: dict[str, Any] = {}
    if aead is not None:
        for stat in ("median", "min"):
            floor[stat] = {
                "primary": round(
                    per["page_cache_read"][stat]
                    + per["page_cache_write"][stat]
                    + aead
                    + per["tcp_send"][stat],
                    3,
                ),
                # the secondary writes large aligned data with O_DIRECT (ADR 0061): no page-cache copy,
                # one copy into its aligned buffer (resident memory)
                "secondary": round(per["tcp_recv"][stat] + aead + per["memory_touched_again"][stat], 3),
            }
    result = {
        "cpu_seconds_per_gib": per,
        "floor_cpu_seconds_per_gib": floor,
        "floor_terms": {
            "primary": "page_cache_read (the /dev/fuse copy) + page_cache_write + aead + tcp_send",
            "secondary": "tcp_recv + aead + memory_touched_again (the copy into the O_DIRECT buffer)",
        },
        "fresh_pages": "page_cache_write_fresh: the same write into pages freed 5 s before (given back "
        "to the host by free page reporting); memory_first_touch / memory_touched_again: anonymous "
        "memory written once, then again. On a VM with free page reporting every new page-cache page "
        "of a long write is a first touch: page_cache_write_fresh, not page_cache_write, is what the "
        "primary's write into the backing file pays there (the secondary writes with O_DIRECT).",
        "target_each_side": 0.5,
        "gib": args.gib,
        "rounds": args.rounds,
        "loadavg_start": load0,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    path_out = write_result("cpu_floor", result)
    print(json.dumps({"per_gib": {k: v["median"] for k, v in per.items()}, "floor": floor}, indent=2))
    print(f"written: {path_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
