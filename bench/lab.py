"""Lab up/down wall times: a 2-node lab with witness and client, as the demo and the tests use it.

Writes bench/results/lab.json. Targets (issue 2): up <= 2 s, down <= 2 s. "Up" ends when every
host's sshd answers, so the figure is the time until Ansible can work. The baseline measured in the
same run is the cost of the bare kernel objects (namespaces + veths, no sshd, no mounts), so the
ratio says what our own work adds on top of what the kernel must do anyway.

Usage: bench/lab.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import summary, write_result
from safekit.lab import Lab

TARGET_UP_S = 2.0
TARGET_DOWN_S = 2.0
HOSTS = 4


def bare_kernel_objects() -> float:
    """Create and delete 4 namespaces with one veth each: the floor under any namespace lab."""
    names = [f"sklab-bench-raw{i}" for i in range(HOSTS)]
    start = time.perf_counter()
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(
            ["ip", "-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb"], check=True
        )
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 runs")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    lab = Lab("bench")
    lab.down()
    ups, downs, baselines = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        lab.up(nodes=2, witness=True, client=True)
        ups.append(time.perf_counter() - start)
        start = time.perf_counter()
        lab.down()
        downs.append(time.perf_counter() - start)
        baselines.append(bare_kernel_objects())
    up, down, base = summary(ups), summary(downs), summary(baselines)
    result = {
        "lab": {"nodes": 2, "witness": True, "client": True, "runs": runs},
        "up": {**up, "target_s": TARGET_UP_S, "meets_target": up["p50_s"] <= TARGET_UP_S},
        "down": {**down, "target_s": TARGET_DOWN_S, "meets_target": down["p50_s"] <= TARGET_DOWN_S},
        "baseline_bare_namespaces": base,
        "ratio_up_plus_down_over_baseline": round((up["p50_s"] + down["p50_s"]) / base["p50_s"], 2),
    }
    path = write_result("lab", result)
    print(
        f"lab up p50 {up['p50_s']:.3f} s (max {up['max_s']:.3f}), down p50 {down['p50_s']:.3f} s "
        f"(max {down['max_s']:.3f}) over {runs} runs; bare namespaces {base['p50_s']:.3f} s -> {path}"
    )
    return 0 if result["up"]["meets_target"] and result["down"]["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
