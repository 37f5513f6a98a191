"""What a checksum resynchronisation costs after scattered 4 KiB changes (docs/replication.md,
"Checksum block size"). Not a test: a measurement, run by hand as root.

One file of SIZE_MIB (default 64) replicated; the secondary goes away; PCT (default 1) % of the
file's 4 KiB pages, chosen at random, are rewritten; the primary is killed (its journal is not
trusted any more: checksum mode next) and restarted; the secondary comes back. Printed as one JSON
line: the mode, the data bytes the primary sent (its `in_sync` event), the bytes on the wire each
way over the session's TCP connection (`ss -ti`: bytes_received on the secondary's side is what the
primary sent, bytes_acked what the secondary sent - its manifest), the resync time, and the CPU
seconds (user + system) each process spent between the secondary's start and `in_sync`, and each
process's peak resident memory (VmHWM; the primary's includes the page cache it mapped, none here).

    SAFEKIT_NATIVE_BUILD=DIR PYTHONPATH=src python tests/native/measure_checksum_blocks.py

DIR holds safekit-rfs-primary and safekit-rfs-secondary (default native/build): a build with
another block size (SKP_ZONE / SKS_ZONE) measures that one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from test_resync import MIB, PAGE, Cluster, walk  # this directory: sys.path[0] when run as a script


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def tcp_bytes(port: int) -> tuple[int, int]:
    """(bytes_received, bytes_acked) of the secondary's end of the session (local port `port`)."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    received = re.search(r"bytes_received:(\d+)", out)
    acked = re.search(r"bytes_acked:(\d+)", out)
    return (int(received[1]) if received else 0, int(acked[1]) if acked else 0)


def measure(size_mib: int, pct: float) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="skblocks-", dir="/var/tmp"))
    c = Cluster(root)
    try:
        rng = random.Random(26)
        c.start_secondary()
        primary = c.start_primary()
        primary.wait("in_sync")
        size = size_mib * MIB
        with open(c.mnt / "db", "wb") as f:
            for _ in range(size // (16 * MIB)):
                f.write(rng.randbytes(16 * MIB))
        c.settle()
        c.stop_secondary()
        pages = rng.sample(range(size // PAGE), int(size // PAGE * pct / 100))
        with open(c.mnt / "db", "r+b") as f:
            for p in pages:
                f.seek(p * PAGE)
                f.write(rng.randbytes(PAGE))
        c.settle()
        c.kill_primary()
        primary = c.start_primary()
        c.settle()
        syncs = primary.count("in_sync")
        p0 = cpu_seconds(primary.proc.pid)
        secondary = c.start_secondary()
        s0 = cpu_seconds(secondary.proc.pid)
        in_sync = primary.wait("in_sync", count=syncs + 1, timeout=300)
        p1, s1 = cpu_seconds(primary.proc.pid), cpu_seconds(secondary.proc.pid)
        received, acked = tcp_bytes(c.port)
        hwm = (peak_rss_kib(primary.proc.pid), peak_rss_kib(secondary.proc.pid))
        c.settle()
        assert walk(c.replica) == walk(c.backing)
        return {
            "build": os.environ.get("SAFEKIT_NATIVE_BUILD", "native/build"),
            "size_mib": size_mib,
            "changed_pages": len(pages),
            "changed_bytes": len(pages) * PAGE,
            "mode": in_sync["mode"],
            "data_bytes_sent": in_sync["bytes"],
            "wire_primary_to_secondary": received,
            "wire_secondary_to_primary": acked,
            "seconds": round(in_sync["seconds"], 3),
            "cpu_primary_s": round(p1 - p0, 2),
            "cpu_secondary_s": round(s1 - s0, 2),
            "peak_rss_kib_primary": hwm[0],
            "peak_rss_kib_secondary": hwm[1],
        }
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    for _ in range(int(os.environ.get("ROUNDS", "1"))):
        print(json.dumps(measure(int(os.environ.get("SIZE_MIB", "64")), float(os.environ.get("PCT", "1")))))
        time.sleep(0.5)
