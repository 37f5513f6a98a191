"""playbooks/deploy-mirror.yml from the Debian package (make deb) on a Debian 12 and a Debian 13 lab
pair: wall time of the first deploy and of a rerun, the package's size and its apt-get install time.

Writes bench/results/deploy_deb.json, and the same record as bench/results/deploy.json (issue 17's
must-show: the deploy figures now from the package; the wheelhouse's are bench/deploy.py's
deploy_wheelhouse.json). Targets (issue 17, those of bench/deploy.py kept): first run
<= 90 s, rerun <= 20 s with changed=0 on every node. The deploys are the ones of
tests/integration/deb (lab hosts booting systemd from their own overlay of a debootstrap root, real
sshd, the controller in a client namespace, no compiler on the nodes - the test asserts it): the
first deploy starts from nodes without the engine, installs the package with apt-get (its
dependencies from the node's package sources), writes the cluster, the module (webmirror, with a
replicated directory) and starts it; the rerun follows a swap. The install time is the apt-get
task's own duration (Ansible's junit callback), per node. Baseline measured in the same run, on
the same lab: playbooks/lab-ping.yml (ping + one command per node), what any playbook pays there for
ssh and module transfer.

Usage: bench/deploy_deb.py [--lab NAME] [--suite bookworm --suite trixie]  (make bench-deploy-deb)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/integration/deb/test_deploy_mirror_from_deb.py"
TESTS = ("test_deploy_from_the_package_serves_replicates_and_swaps", "test_a_second_run_changes_nothing")
TARGET_FIRST_S = 90.0
TARGET_SECOND_S = 20.0
INSTALL_TASK = "Install the Debian package"


def install_seconds(junit_dir: Path) -> dict[str, float]:
    """The apt-get install task's duration per node (the junit reports of both runs; the rerun skips it)."""
    seconds: dict[str, float] = {}
    for report in sorted(junit_dir.glob("*.xml")):
        # written by this run's own ansible-playbook (the junit callback), not untrusted
        for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
            name = case.get("name", "")
            if INSTALL_TASK not in name or case.find("skipped") is not None:
                continue
            host = name.split("]", 1)[0].lstrip("[")
            seconds[host] = round(float(case.get("time", "0")), 2)
    return seconds


def suite_run(suite: str, lab: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="safekit-bench-deb-") as tmp:
        figures, junit = Path(tmp) / "figures.json", Path(tmp) / "junit"
        env = {
            **os.environ,
            "SAFEKIT_DEB_SUITE": suite,
            "SAFEKIT_DEB_DEPLOY_LAB": lab,
            "SAFEKIT_DEB_BENCH_JSON": str(figures),
            "ANSIBLE_CALLBACKS_ENABLED": "junit",
            "JUNIT_OUTPUT_DIR": str(junit),
        }
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                *(f"{TEST}::{t}" for t in TESTS),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"bench/deploy_deb.py: the {suite} deploy failed:\n{result.stdout[-4000:]}")
        found = json.loads(figures.read_text())
        first, second = found["first_recap"], found["second_recap"]
        changed_first = sum(host.get("changed", 0) for host in first.values())
        changed_second = sum(host.get("changed", 0) for host in second.values())
        return {
            "package": found["package"],
            "baseline_lab_ping_s": round(found["lab_ping_s"], 2),
            "first_run_over_baseline": round(found["first_s"] / found["lab_ping_s"], 1),
            "second_run_over_baseline": round(found["second_s"] / found["lab_ping_s"], 1),
            "package_mb": round(found["package_bytes"] / 1e6, 2),
            "apt_get_install_s": install_seconds(junit),
            "first_run": {
                "wall_s": round(found["first_s"], 2),
                "changed": changed_first,
                "recap": first,
                "target_s": TARGET_FIRST_S,
                "meets_target": found["first_s"] <= TARGET_FIRST_S,
            },
            "second_run": {
                "wall_s": round(found["second_s"], 2),
                "changed": changed_second,
                "recap": second,
                "target_s": TARGET_SECOND_S,
                "meets_target": found["second_s"] <= TARGET_SECOND_S and changed_second == 0,
            },
            "suite_wall_s": round(time.monotonic() - started, 1),
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="benchdeb", help="lab name (default: benchdeb)")
    parser.add_argument("--suite", action="append", choices=["bookworm", "trixie"], help="default: both")
    args = parser.parse_args()
    suites = args.suite or ["bookworm", "trixie"]
    runs = {suite: suite_run(suite, args.lab) for suite in suites}
    for suite, run in runs.items():
        print(
            f"{suite}: first deploy {run['first_run']['wall_s']} s (changed {run['first_run']['changed']}), "
            f"rerun {run['second_run']['wall_s']} s (changed {run['second_run']['changed']}), "
            f"{run['package']} {run['package_mb']} MB, apt-get install {run['apt_get_install_s']} s, "
            f"lab-ping {run['baseline_lab_ping_s']} s, "
            f"load {run['loadavg_1m_before']} -> {run['loadavg_1m_after']}"
        )
    record = {
        "source": "the Debian package (make deb), safekit_install_source auto",
        "lab": {"nodes": 2, "systemd_pid1": True, "ssh": True, "client": True, "module": "webmirror"},
        "suites": runs,
        "meets_targets": all(
            run["first_run"]["meets_target"] and run["second_run"]["meets_target"] for run in runs.values()
        ),
    }
    for name in ("deploy_deb", "deploy"):
        print(write_result(name, record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
