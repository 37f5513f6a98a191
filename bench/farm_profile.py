"""Farm, keep-alive off: where a new connection's CPU goes through the VIP against directly to node1,
by kernel and user symbol (`perf record -a -g`), in the same run, alternate rounds.

The lab and the module are bench/farm.py's (`FarmBench`: three nodes, nginx behind a
`vmac_invisible` VIP, `filter="on_port"`, one client host). Each round runs wrk (-t3 -c30,
`Connection: close`) against node1's own address and against the VIP, one after the other, each
under a system-wide `perf record` of the same length. Samples are kept for the processes that do
the work of a request on veths: `wrk` (its own sends, and the receive path of the bridge and the
nodes, which runs in the sender's softirq) and `nginx`; other sessions' processes on this shared
machine are left out. A symbol's cost is its samples per 1,000 requests (perf's frequency is
fixed, so samples are CPU time); the result lists the symbols whose cost grows most through the
VIP, and the totals.

The symbols are also summed by part of the path (`parts_us_per_request`: nftables, conntrack, the
netfilter hooks, the lab bridge and its bridge netfilter). `--before FILE` keeps another run's
result (its `--output FILE`, for example with the code before a change on PYTHONPATH, run just
before) under `before`.

Writes bench/results/farm_profile.json. Usage: bench/farm_profile.py [--rounds N] [--seconds S]
[--lab NAME] [--no-write] [--output FILE] [--before FILE].
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration" / "farm"))
import directed_lab

from common import write_result
from farm import FarmBench
from safekit.lab import Lab

COMMS = ("wrk", "nginx")
FREQUENCY = 1999
TOP = 25


def perf_record(path: Path) -> subprocess.Popen[bytes]:
    """A system-wide `perf record` until SIGINT (its start on a loaded host takes seconds: it
    must cover the whole wrk run, so it is stopped after wrk rather than timed)."""
    argv = ["perf", "record", "-a", "-g", "-F", str(FREQUENCY), "-o", str(path)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_recording(recorder: subprocess.Popen[bytes], path: Path, timeout: float = 30.0) -> None:
    """Until perf has written its header (it samples from then on)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size > 0):
        if recorder.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"perf record did not start: {recorder.stderr.read() if recorder.stderr else ''!r}"
            )
        time.sleep(0.1)
    time.sleep(2.0)  # the header is written first, then the running tasks, then sampling begins


def symbol_samples(path: Path) -> dict[str, int]:
    """Samples per (comm, symbol) of the processes in COMMS (self time, no call graph)."""
    out = subprocess.run(
        [
            *("perf", "report", "-i", str(path), "--stdio", "--no-children", "-g", "none"),
            *("--comm", ",".join(COMMS), "--sort", "sym", "-F", "sample,sym", "-t", "\t"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, int] = collections.Counter()
    for line in out.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.strip().split("\t")
        if len(fields) < 2 or not fields[0].strip().isdigit():
            continue
        found[fields[-1].strip()] += int(fields[0])
    return dict(found)


def profiled_run(bench: FarmBench, target: str, seconds: int, workdir: Path, label: str) -> dict[str, Any]:
    data = workdir / f"{label}.data"
    data.unlink(missing_ok=True)
    with bench.lab_floor() if target == "floor" else contextlib.nullcontext():
        recorder = perf_record(data)
        wait_recording(recorder, data)
        result = bench.wrk(target, False, seconds, 30)
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=120)
    samples = symbol_samples(data)
    data.unlink(missing_ok=True)
    requests = float(result["requests"])
    return {
        "requests_per_s": result["requests_per_s"],
        "requests": requests,
        "samples": sum(samples.values()),
        "per_1000_requests": {s: n * 1000 / requests for s, n in samples.items()},
        "load": round(os.getloadavg()[0], 2),
    }


PARTS = {
    "nftables": re.compile(r"^\[k\] (nft_|__nft_|nf_tables_)"),
    "conntrack": re.compile(
        r"^\[k\] (__)?(nf_conntrack|nf_ct_|nf_confirm|tcp_packet|tcp_in_window|hash_conntrack)"
    ),
    "netfilter_hooks": re.compile(r"^\[k\] nf_hook_slow"),
    "bridge_netfilter": re.compile(r"^\[k\] br_nf_"),
    "bridge": re.compile(r"^\[k\] (br_(?!nf_)|maybe_deliver|__br_)"),
}
"""Where a symbol's cost goes, by part of the path (symbols of no part are in the totals only)."""


def part_of(symbol: str) -> str | None:
    return next((part for part, rx in PARTS.items() if rx.match(symbol)), None)


def compare(runs: dict[str, list[dict[str, Any]]], base: str = "direct1") -> dict[str, Any]:
    """Per symbol, the median over a target's runs of its samples per 1,000 requests (a run whose
    perf lost most of its samples under load does not drag the figures), VIP against `base`
    (direct1: node1's own address; floor: bench/farm.py's lab floor, the three nodes' addresses
    with the lab switch flooding every frame as it floods the VIP's)."""

    def median_costs(target: str) -> dict[str, float]:
        symbols = {s for run in runs[target] for s in run["per_1000_requests"]}
        per_run = runs[target]
        return {s: statistics.median(r["per_1000_requests"].get(s, 0.0) for r in per_run) for s in symbols}

    direct, vip = median_costs(base), median_costs("vip")
    delta = {s: vip.get(s, 0.0) - direct.get(s, 0.0) for s in set(direct) | set(vip)}
    top = sorted(delta, key=lambda s: -delta[s])[:TOP]
    samples_ms = 1000 / FREQUENCY  # one sample is 1/FREQUENCY s of CPU

    def by_part(costs: dict[str, float]) -> dict[str, float]:
        parts = dict.fromkeys(PARTS, 0.0)
        for symbol, cost in costs.items():
            part = part_of(symbol)
            if part is not None:
                parts[part] += cost * samples_ms
        return {p: round(c, 2) for p, c in parts.items()}

    return {
        "baseline": base,
        "parts_us_per_request": {base: by_part(direct), "vip": by_part(vip)},
        "parts": {p: rx.pattern for p, rx in PARTS.items()},
        "samples_per_1000_requests": {
            base: round(sum(direct.values()), 1),
            "vip": round(sum(vip.values()), 1),
        },
        "us_per_request": {
            base: round(sum(direct.values()) * samples_ms, 1),
            "vip": round(sum(vip.values()) * samples_ms, 1),
        },
        "largest_increases_us_per_request": [
            {
                "symbol": s,
                "vip": round(vip.get(s, 0.0) * samples_ms, 2),
                base: round(direct.get(s, 0.0) * samples_ms, 2),
                "extra": round(delta[s] * samples_ms, 2),
            }
            for s in top
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--lab", default="fprof")
    parser.add_argument("--vmac", choices=("vmac_invisible", "vmac_directed"), default="vmac_invisible")
    parser.add_argument(
        "--baseline",
        choices=("direct1", "floor"),
        default="direct1",
        help="what the VIP is compared with: node1's own address, or bench/farm.py's lab floor",
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--output", type=Path, help="also write the result to this file")
    parser.add_argument(
        "--before",
        type=Path,
        help="a run of the code before a change (its --output), kept in the result as `before`",
    )
    args = parser.parse_args()
    lab = Lab(args.lab)
    lab.down()
    lab.up(nodes=3, client=True)
    staging = Path(tempfile.mkdtemp(prefix="safekit-fprof-", dir="/var/tmp"))
    if args.vmac == "vmac_directed":
        directed_lab.no_flooding(lab)  # as bench/farm.py's directed phase: a switch that does not flood
    bench = FarmBench(lab, staging, vmac=args.vmac)
    base = args.baseline
    runs: dict[str, list[dict[str, Any]]] = {base: [], "vip": []}
    result: dict[str, Any] = {
        "vmac": args.vmac,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        bench.install()
        time.sleep(2)
        for index in range(args.rounds):
            order = (base, "vip") if index % 2 == 0 else ("vip", base)
            for target in order:
                run = profiled_run(bench, target, args.seconds, staging, f"{target}{index}")
                runs[target].append(run)
                rate, samples = run["requests_per_s"], run["samples"]
                print(f"{target}: {rate:.0f} req/s, {samples} samples, load {run['load']}", flush=True)
    finally:
        bench.cluster.stop_daemons()
        lab.down()
        shutil.rmtree(staging, ignore_errors=True)
    result.update(compare(runs, base))
    result["rounds"] = args.rounds
    result["seconds_per_run"] = args.seconds
    result["requests_per_s"] = {t: [round(r["requests_per_s"]) for r in rs] for t, rs in runs.items()}
    result["samples_per_run"] = {t: [r["samples"] for r in rs] for t, rs in runs.items()}
    result["loads"] = {t: [r["load"] for r in rs] for t, rs in runs.items()}
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.before is not None:
        result["before"] = json.loads(args.before.read_text(encoding="utf-8"))
    print(json.dumps(result, indent=2))
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not args.no_write:
        write_result("farm_profile", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
