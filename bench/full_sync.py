"""Full resynchronisation (issue 15: >= 0.9x a plain TCP copy) alone, against that TCP copy, in one run.

safekit-rfs-primary and safekit-rfs-secondary run directly (no safekitd), async="second", between
the two nodes of the lab `bnsync` (veth between network namespaces, as bench/replication.py's
`bnrfs`; `--net loopback`: over 127.0.0.1 without a lab). The data set, SIZE MiB in files of 32 MiB
(default 2 GiB = bench/replication.py's full mode), is written once under /var/tmp (the same disk
for both sides, as in the lab). The secondary first gets its copy (the session's first
resynchronisation), then each round, with every cache dropped before it (`sync; drop_caches`):

- `safekit fullsync`: the primary's `fullsync` command, timed by the primary itself (its `in_sync`
  event: seconds from SYNC_BEGIN to SYNC_END acknowledged, after the secondary's syncfs), with each
  process's CPU seconds over it and its peak RSS during it (VmHWM reset before);
- the TCP copy: bench/replication.py's plain copy (1 MiB reads of the same files on node1, one
  stream, written to one file on node2 and fsync'd), with its CPU.

Several builds (`--build DIR`, repeatable: another commit's native/build) take turns in each round, the
order rotated, so their figures share the load; a ratio is the median of the same-round ratios.
`--warm`: no cache dropped (the source read from the page cache: the data path's own limit);
`--perf DIR`: one more full sync of the first build under `perf record -g`, its breakdown in the JSON.
Writes bench/results/full_sync.json. Needs root, /dev/fuse, fusermount3, `make -C native all`.
Usage: bench/full_sync.py [--size-mib 2048] [--rounds 3] [--net lab|loopback] [--build DIR ...]
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import native_cpu
import native_replication as nr
from common import write_result
from replication import TCP_RECV, TCP_SEND
from safekit.lab import Lab

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "native" / "build"
LAB = "bnsync"
FILE_MIB = 32
TCP_PORT = 5998
TARGET = 0.9


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def status(pid: int) -> dict[str, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "peak_rss_mib": round(int(fields["VmHWM"].split()[0]) / 1024, 1),
    }


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5\n")  # VmHWM := VmRSS


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


class Net:
    """Where the two processes run: two lab nodes (veth) or this host (127.0.0.1)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lab: Any = None
        self.addr = {"node1": "127.0.0.1", "node2": "127.0.0.1"}
        if kind == "lab":
            self.lab = Lab(LAB)
            self.lab.down()
            self.lab.up(nodes=2, lans=1)
            plan = self.lab.plan()
            self.addr = {n: str(plan.host(n).address) for n in ("node1", "node2")}

    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return self.lab.exec_argv(node, argv) if self.lab else list(argv)

    def down(self) -> None:
        if self.lab:
            self.lab.down()


def spec(root: Path, role: str, path: Path, port: int, net: Net) -> Path:
    me, peer = ("node1", "node2") if role == "primary" else ("node2", "node1")
    p = nr.write_spec(root, role, path, port, "second")
    data = json.loads(p.read_text())
    data["local_addr"], data["peer_addr"] = net.addr[me], net.addr[peer]
    p.write_text(json.dumps(data))
    return p


class Pair:
    """One build's primary and secondary, the secondary's copy made by the first resync."""

    def __init__(self, build: Path, root: Path, backing: Path, net: Net, name: str) -> None:
        self.name, self.net = name, net
        self.base = root / name
        self.base.mkdir()
        (self.base / "key").write_text(
            "safekit-cluster-key-v1:" + base64.b64encode(os.urandom(32)).decode() + "\n"
        )
        (self.base / "key").chmod(0o600)
        self.replica, self.mnt = self.base / "replica", self.base / "mnt"
        self.replica.mkdir()
        self.mnt.mkdir()
        self.sec = subprocess.Popen(
            net.argv(
                "node2",
                [
                    str(build / "safekit-rfs-secondary"),
                    str(spec(self.base, "secondary", self.replica, 0, net)),
                ],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.base / "sec.log").open("wb"),
        )
        self.sev = nr.Events(self.sec)
        port = int(self.sev.wait("listening")["port"])
        self.prim = subprocess.Popen(
            net.argv(
                "node1",
                [
                    str(build / "safekit-rfs-primary"),
                    f"--mountpoint={self.mnt}",
                    str(spec(self.base, "primary", backing, port, net)),
                ],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.base / "prim.log").open("wb"),
        )
        self.pev = nr.Events(self.prim)
        self.pev.wait("mounted")
        self.pev.send("degrade_ok")
        first = self.wait_in_sync(0, 1800)
        self.first_sync = {k: first.get(k) for k in ("mode", "seconds", "bytes")}

    def wait_in_sync(self, after: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        answered = after
        while time.monotonic() < deadline:
            # a fullsync ends the session: the primary is degraded until safekitd's leave
            for e in self.pev.lines[answered:]:
                answered += 1
                if e.get("event") == "degraded":
                    self.pev.send("degrade_ok")
            found = [e for e in self.pev.lines[after:] if e.get("event") == "in_sync"]
            if found:
                return found[0]
            if self.prim.poll() is not None or self.sec.poll() is not None:
                raise RuntimeError(f"{self.name}: a replication process ended (logs in {self.base})")
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: no in_sync within {timeout} s")

    def fullsync(self, data_bytes: int, cold: bool = True, perf: Path | None = None) -> dict[str, Any]:
        if cold:
            drop_caches()
        time.sleep(1)
        for pid in (self.prim.pid, self.sec.pid):
            reset_peak(pid)
        perfs = []
        if perf:
            for role, pid in (("primary", self.prim.pid), ("secondary", self.sec.pid)):
                perfs.append(
                    subprocess.Popen(
                        ["perf", "record", "-g", "-o", str(perf / f"{role}.perf"), "-p", str(pid)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(0.5)
        c0 = {"primary": nr.cpu_seconds(self.prim.pid), "secondary": nr.cpu_seconds(self.sec.pid)}
        mark = len(self.pev.lines)
        self.pev.send("fullsync")
        ev = self.wait_in_sync(mark, 1800)
        for p in perfs:
            p.send_signal(2)
            p.wait(120)
        cpu = {
            "primary": nr.cpu_seconds(self.prim.pid) - c0["primary"],
            "secondary": nr.cpu_seconds(self.sec.pid) - c0["secondary"],
        }
        gib = data_bytes / (1 << 30)
        seconds = float(ev["seconds"])
        return {
            "mode": ev.get("mode"),
            "seconds": round(seconds, 3),
            "bytes": ev.get("bytes"),
            "mib_s": round(data_bytes / (1 << 20) / seconds, 1),
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_s_per_gib": {k: round(v / gib, 3) for k, v in cpu.items()},
            "peak_rss_mib": {
                "primary": status(self.prim.pid)["peak_rss_mib"],
                "secondary": status(self.sec.pid)["peak_rss_mib"],
            },
        }

    def close(self) -> None:
        if self.prim.poll() is None:
            self.pev.send("stop")
            try:
                self.prim.wait(30)
            except subprocess.TimeoutExpired:
                self.prim.kill()
                self.prim.wait()
        nr.unmount(self.mnt)
        if self.sec.poll() is None:
            self.sev.send("stop")
            try:
                self.sec.wait(30)
            except subprocess.TimeoutExpired:
                self.sec.kill()
                self.sec.wait()


def tcp_copy(net: Net, source_root: Path, out: Path, cold: bool = True) -> dict[str, Any]:
    """bench/replication.py's plain TCP copy of the data set (caches dropped before)."""
    if cold:
        drop_caches()
    else:
        os.sync()
    time.sleep(1)
    cpu0 = children_cpu()
    receiver = subprocess.Popen(
        net.argv("node2", [sys.executable, "-c", TCP_RECV, str(TCP_PORT), str(out)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    receiver.stdout.readline()
    subprocess.run(
        net.argv(
            "node1", [sys.executable, "-c", TCP_SEND, str(source_root), net.addr["node2"], str(TCP_PORT)]
        ),
        check=True,
        timeout=1800,
    )
    copied, seconds = receiver.stdout.readline().split()
    receiver.wait(60)
    return {
        "bytes": int(copied),
        "seconds": round(float(seconds), 3),
        "mib_s": round(int(copied) / (1 << 20) / float(seconds), 1),
        "cpu_s_both_sides": round(children_cpu() - cpu0, 2),
    }


def make_dataset(backing: Path, size_mib: int) -> int:
    d = backing / "set"
    d.mkdir(parents=True)
    for i in range(max(1, size_mib // FILE_MIB)):
        with (d / f"f{i:03d}.bin").open("wb") as f:
            for _ in range(FILE_MIB):
                f.write(os.urandom(1 << 20))
    os.sync()
    return sum(p.stat().st_size for p in d.iterdir())


def rotated(items: list[str], rnd: int) -> list[str]:
    k = rnd % len(items)
    return items[k:] + items[:k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--net", choices=("lab", "loopback"), default="lab")
    ap.add_argument("--build", action="append", type=Path, help="a native/build directory (repeatable)")
    ap.add_argument("--out", default="full_sync", help="the result's name under bench/results")
    ap.add_argument(
        "--perf", help="a directory: perf profiles of one more full sync of the first build kept there"
    )
    ap.add_argument(
        "--warm",
        action="store_true",
        help="do not drop the caches: the data set is read from the page cache (the data path's own limit)",
    )
    args = ap.parse_args()
    builds = {
        f"b{i}" if args.build and len(args.build) > 1 else "this": b.resolve()
        for i, b in enumerate(args.build or [BUILD])
    }
    load0 = [round(x, 2) for x in os.getloadavg()]
    root = Path(tempfile.mkdtemp(prefix="skfullsync-", dir="/var/tmp"))
    root.chmod(0o755)
    net = Net(args.net)
    pairs: dict[str, Pair] = {}
    rounds: list[dict[str, Any]] = []
    try:
        backing = root / "backing"
        data_bytes = make_dataset(backing, args.size_mib)
        for name, build in builds.items():
            pairs[name] = Pair(build, root, backing, net, name)
        cold = not args.warm
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "tcp_copy": functools.partial(tcp_copy, net, backing, root / "copy.bin", cold=cold)
        }
        for name, pair in pairs.items():
            runs[name] = functools.partial(pair.fullsync, data_bytes, cold=cold)
        profile: dict[str, Any] = {}
        if args.perf:  # one more full sync of the first build, profiled (not in the figures)
            first = next(iter(pairs.values()))
            first.fullsync(data_bytes, cold=not args.warm, perf=root)
            profile = {role: native_cpu.breakdown(root / f"{role}.perf") for role in ("primary", "secondary")}
            for role in ("primary", "secondary"):
                shutil.copy(root / f"{role}.perf", Path(args.perf) / f"full_sync_{role}.perf")
        for rnd in range(args.rounds):
            row: dict[str, Any] = {}
            for what in rotated(list(runs), rnd):
                row[what] = runs[what]()
                print(json.dumps({"round": rnd, what: row[what]}), flush=True)
            for name in pairs:
                row[name]["ratio_to_tcp_copy"] = round(row[name]["mib_s"] / row["tcp_copy"]["mib_s"], 3)
            rounds.append(row)
        median: dict[str, Any] = {"tcp_copy_mib_s": statistics.median(r["tcp_copy"]["mib_s"] for r in rounds)}
        for name in pairs:
            rows = [r[name] for r in rounds]
            median[name] = {
                "mib_s": statistics.median(r["mib_s"] for r in rows),
                "ratio_to_tcp_copy": statistics.median(r["ratio_to_tcp_copy"] for r in rows),
                "cpu_s_per_gib": {
                    side: statistics.median(r["cpu_s_per_gib"][side] for r in rows)
                    for side in ("primary", "secondary")
                },
                "peak_rss_mib": {
                    side: max(r["peak_rss_mib"][side] for r in rows) for side in ("primary", "secondary")
                },
                "meets_target": statistics.median(r["ratio_to_tcp_copy"] for r in rows) >= TARGET,
            }
        result = {
            "net": args.net if args.net == "loopback" else f"lab {LAB} (veth between network namespaces)",
            "data_bytes": data_bytes,
            "files": max(1, args.size_mib // FILE_MIB),
            "caches": "kept (--warm: the data set read from the page cache)"
            if args.warm
            else "dropped before each",
            "builds": {name: str(b) for name, b in builds.items()},
            "first_sync": {name: p.first_sync for name, p in pairs.items()},
            "target_ratio_to_tcp_copy": TARGET,
            "rounds": rounds,
            "median": median,
            **({"perf_breakdown_pct": profile} if profile else {}),
            "loadavg_start": load0,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "note": "each round takes the TCP copy and every build in turn (order rotated), caches dropped "
            "before each; a ratio is the median of the same-round ratios",
        }
        path = write_result(args.out, result)
        print(json.dumps(median, indent=2))
        print(f"written: {path}")
        return 0
    finally:
        for p in pairs.values():
            p.close()
        net.down()
        for m in root.glob("*/mnt"):
            nr.unmount(m)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
