"""CPU per GiB written on each side of the native data path, and where it goes.

safekit-rfs-primary (FUSE front + network sink) replicating to safekit-rfs-secondary over
127.0.0.1, async="second": sequential 1 MiB writes of SIZE MiB (default 256) through the mount,
ROUNDS times (default 3, the first one counted apart: it fills the caches); per round each
process's CPU seconds (utime + stime from /proc) per GiB written, and at the end each process's
peak RSS and open descriptors (before and after the rounds: flat). Several builds (--build DIR,
repeatable: e.g. another commit's native/build) run in turn in the same invocation, so their
figures compare under the same load.

--perf: `perf record -g` on both processes during the rounds of the first build, and a breakdown
of their samples by what the CPU did (kernel copy into the page cache, copy out of /dev/fuse,
socket copies, AEAD, libc copies, the rest).

Writes bench/results/native_cpu.json. Needs root, /dev/fuse, fusermount3, `make -C native all`
(and perf for --perf).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import native_replication as nr

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "native_cpu.json"

# perf symbol -> what it is (the rest is "other")
CATEGORIES = {
    "copy_folio_from_iter_atomic": "kernel copy into the page cache (pwrite)",
    "fuse_copy_do": "kernel copy out of /dev/fuse",
    "__pi_memcpy": "kernel copy out of /dev/fuse",
    "gup_fast_fallback": "kernel copy out of /dev/fuse",
    "_copy_from_iter": "kernel socket send copy",
    "_copy_to_iter": "kernel socket receive copy",
    "__memmove_avx512_unaligned_erms": "libc copies (the payload into its frame)",
    "__memmove_avx_unaligned_erms": "libc copies (the payload into its frame)",
}


def status(pid: int) -> dict[str, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "peak_rss_kib": int(fields["VmHWM"].split()[0]),
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def breakdown(data: Path) -> dict[str, float]:
    """Share of samples (%) per category, by symbol and by shared object (libcrypto = AEAD)."""
    by_sym = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    out: dict[str, float] = {}
    for line in by_sym.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].endswith("%"):
            continue
        share = float(parts[0].rstrip("%"))
        dso, sym = parts[1], parts[-1]
        if "libcrypto" in dso:
            what = "AEAD (libcrypto)"
        else:
            what = CATEGORIES.get(sym, "other kernel" if "kernel" in dso else "other")
        out[what] = round(out.get(what, 0.0) + share, 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def stop_secondary(sec: subprocess.Popen[bytes], sev: nr.Events, replica: Path) -> None:
    """With its own "stop": it detaches its read-only bind over the replica (a kill leaves it)."""
    if sec.poll() is None:
        sev.send("stop")
        try:
            sec.wait(30)
        except subprocess.TimeoutExpired:
            sec.kill()
            sec.wait()
    if os.path.ismount(replica):
        subprocess.run(["umount", "-l", str(replica)], check=False)


def run_build(build: Path, size: int, rounds: int, perf: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="sknativecpu-", dir="/tmp"))
    (root / "key").write_text("safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    (root / "key").chmod(0o600)
    replica, backing, mnt = root / "replica", root / "backing", root / "mnt"
    for d in (replica, backing, mnt):
        d.mkdir()
    sec = subprocess.Popen(
        [str(build / "safekit-rfs-secondary"), str(nr.write_spec(root, "secondary", replica, 0, "second"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(root / "sec.log").open("wb"),
    )
    sev = nr.Events(sec)
    prim = None
    perfs: list[subprocess.Popen[bytes]] = []
    try:
        port = int(sev.wait("listening")["port"])
        prim = subprocess.Popen(
            [
                str(build / "safekit-rfs-primary"),
                f"--mountpoint={mnt}",
                str(nr.write_spec(root, "primary", backing, port, "second")),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(root / "prim.log").open("wb"),
        )
        pev = nr.Events(prim)
        pev.wait("mounted")
        pev.send("degrade_ok")
        pev.wait("in_sync")
        before = {"primary": status(prim.pid), "secondary": status(sec.pid)}
        if perf:
            for name, pid in (("primary", prim.pid), ("secondary", sec.pid)):
                perfs.append(
                    subprocess.Popen(
                        ["perf", "record", "-g", "-o", str(root / f"{name}.perf"), "-p", str(pid)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(0.5)
        gib = size / (1 << 30)
        runs = []
        for _ in range(rounds):
            c0, s0 = nr.cpu_seconds(prim.pid), nr.cpu_seconds(sec.pid)
            mib_s = nr.seq_write(mnt / "seq", size)
            runs.append(
                {
                    "mib_s": round(mib_s, 1),
                    "primary_cpu_s_per_gib": round((nr.cpu_seconds(prim.pid) - c0) / gib, 3),
                    "secondary_cpu_s_per_gib": round((nr.cpu_seconds(sec.pid) - s0) / gib, 3),
                }
            )
            (mnt / "seq").unlink(missing_ok=True)
        for p in perfs:
            p.send_signal(2)
            p.wait(60)
        after = {"primary": status(prim.pid), "secondary": status(sec.pid)}
        counted = runs[1:] or runs
        result: dict[str, Any] = {
            "build": str(build),
            "rounds": runs,
            "median_after_first": {
                k: statistics.median(r[k] for r in counted)
                for k in ("mib_s", "primary_cpu_s_per_gib", "secondary_cpu_s_per_gib")
            },
            "before_rounds": before,
            "after_rounds": after,
        }
        if perf:
            result["perf_breakdown_pct"] = {
                name: breakdown(root / f"{name}.perf") for name in ("primary", "secondary")
            }
        pev.send("stop")
        prim.wait(15)
        return result
    finally:
        for p in perfs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if prim is not None and prim.poll() is None:
            prim.kill()
            prim.wait()
        nr.unmount(mnt)
        stop_secondary(sec, sev, replica)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", type=Path, help="a native/build directory (repeatable)")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--perf", action="store_true", help="perf breakdown (first build)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    builds = args.build or [REPO / "native" / "build"]
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "size_mib": args.size_mib,
        "builds": [
            run_build(b.resolve(), args.size_mib << 20, args.rounds, args.perf and i == 0)
            for i, b in enumerate(builds)
        ],
    }
    results["loadavg_end"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
