"""Wall time of playbooks/deploy-mirror.yml on a fresh 2-node lab (with witness and client), and of a rerun.

Writes bench/results/deploy_wheelhouse.json (bench/results/deploy.json is the Debian package's run since
issue 17: bench/deploy_deb.py). Targets (issue 5): first run <= 90 s, second run <= 20 s with
changed=0 on every host. The first run starts from hosts with nothing installed and a new cluster
key; the controller builds the engine's wheelhouse in both runs (the playbook always rebuilds it, so
that cost is inside both figures). The baseline measured in the same run is playbooks/lab-ping.yml
(ping + one command per host): what any playbook pays for ssh connections and module transfer.

Usage: bench/deploy.py [--lab NAME]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from safekit.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_FIRST_S = 90.0
TARGET_SECOND_S = 20.0
TARGET_SECOND_CHANGED = 0


def playbook(lab: Lab, name: str) -> tuple[float, dict[str, dict[str, int]], str]:
    """Run one playbook on the lab: wall time, the recap per host, and the output's tail."""
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab.inventory_path), f"playbooks/{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench/deploy.py: {name} failed (rc {result.returncode}):\n{result.stdout[-3000:]}")
    recap = {
        m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        for m in re.finditer(r"^(\S+)\s+: (ok=.*)$", result.stdout, re.MULTILINE)
    }
    return elapsed, recap, result.stdout[-2000:]


def total(recap: dict[str, dict[str, int]], key: str) -> int:
    return sum(host.get(key, 0) for host in recap.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="benchdep", help="lab name (default: benchdep)")
    args = parser.parse_args()
    lab = Lab(args.lab)
    lab.down()
    # A fresh cluster: no key left on the controller by an earlier run of this benchmark.
    (ROOT / ".safekit" / f"{args.lab}.key").unlink(missing_ok=True)
    lab.up(nodes=2, witness=True, client=True)
    try:
        baseline_s, _, _ = playbook(lab, "lab-ping.yml")
        first_s, first_recap, _ = playbook(lab, "deploy-mirror.yml")
        second_s, second_recap, _ = playbook(lab, "deploy-mirror.yml")
    finally:
        lab.down()
        (ROOT / ".safekit" / f"{args.lab}.key").unlink(missing_ok=True)
    second_changed = total(second_recap, "changed")
    result = {
        "lab": {"nodes": 2, "witness": True, "client": True},
        "first_run": {
            "wall_s": round(first_s, 2),
            "target_s": TARGET_FIRST_S,
            "meets_target": first_s <= TARGET_FIRST_S,
            "changed": total(first_recap, "changed"),
            "recap": first_recap,
        },
        "second_run": {
            "wall_s": round(second_s, 2),
            "target_s": TARGET_SECOND_S,
            "meets_target": second_s <= TARGET_SECOND_S,
            "changed": second_changed,
            "changed_target": TARGET_SECOND_CHANGED,
            "meets_changed_target": second_changed == TARGET_SECOND_CHANGED,
            "recap": second_recap,
        },
        "baseline_lab_ping_s": round(baseline_s, 2),
        "ratio_second_run_over_baseline": round(second_s / baseline_s, 2),
    }
    path = write_result("deploy_wheelhouse", result)
    print(
        f"deploy-mirror.yml: first run {first_s:.1f} s (target {TARGET_FIRST_S:.0f}), second run "
        f"{second_s:.1f} s (target {TARGET_SECOND_S:.0f}) with changed={second_changed}; "
        f"lab-ping.yml {baseline_s:.1f} s -> {path}"
    )
    ok = (
        result["first_run"]["meets_target"]
        and result["second_run"]["meets_target"]
        and result["second_run"]["meets_changed_target"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
