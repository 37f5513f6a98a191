"""The rerun of playbooks/deploy-mirror.yml on nodes installed from the Debian package: this tree's
roles against those of a base revision, on the same lab, alternately, at the same load.

Why alternately on one lab: the rerun is 10-40 s on this shared machine and its load moves by a
factor of three within minutes, so runs of two trees minutes apart (or on two labs) compare the
load, not the roles. Here one lab of tests/integration/deb (two Debian hosts booting systemd, real
sshd, the controller in a client namespace) is deployed once by this tree; then each round runs
the rerun with the base revision's roles (a `git archive` of it) and with this tree's, in turns
(the first of the pair alternates), plus playbooks/lab-ping.yml (what any playbook pays there).
Every rerun must report changed=0 on every node (else the script fails).

Writes bench/results/deploy_deb_rerun.json: the walls per round, medians, this tree over the base
(median ratio and per round), the load average around each run.

Usage: bench/deploy_deb_rerun.py [--base main] [--rounds 3] [--lab NAME] [--suite bookworm]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

ROOT = Path(__file__).resolve().parents[1]
DEB_TESTS = ROOT / "tests" / "integration" / "deb"


def base_tree(revision: str, into: Path) -> Path:
    """The base revision's files (read from git, nothing written to the repository)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def changed(recap: dict[str, dict[str, int]]) -> int:
    return sum(host.get("changed", 0) + host.get("failed", 0) for host in recap.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the revision to compare with (default: main)")
    parser.add_argument("--rounds", type=int, default=3, help="rerun pairs (default: 3)")
    parser.add_argument("--lab", default="benchdebab", help="lab name (default: benchdebab)")
    parser.add_argument("--suite", default="bookworm", choices=["bookworm", "trixie"])
    args = parser.parse_args()
    # the test module reads its lab name and Debian release when imported
    os.environ["SAFEKIT_DEB_DEPLOY_LAB"] = args.lab
    os.environ["SAFEKIT_DEB_SUITE"] = args.suite
    sys.path.insert(0, str(DEB_TESTS))
    deb_test: Any = importlib.import_module("test_deploy_mirror_from_deb")
    samples: dict[str, list[float]] = {"base": [], "tree": []}
    pings: list[float] = []
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="safekit-bench-rerun-") as tmp:
        trees = {"base": base_tree(args.base, Path(tmp)), "tree": ROOT}
        package = deb_test.deb.__wrapped__(None)
        lab_up = deb_test.lab.__wrapped__(package)
        lab = next(lab_up)
        try:
            deb_test.REPO = ROOT
            first, recap, first_s = lab.playbook()
            if first.returncode != 0:
                raise SystemExit(f"the first deploy failed:\n{first.stdout[-4000:]}")
            for number in range(args.rounds):
                order = ["base", "tree"] if number % 2 == 0 else ["tree", "base"]
                row: dict[str, Any] = {"order": order}
                for variant in order:
                    deb_test.REPO = trees[variant]
                    load = os.getloadavg()[0]
                    again, recap, seconds = lab.playbook()
                    if again.returncode != 0 or changed(recap) != 0:
                        raise SystemExit(f"{variant}: the rerun changed something:\n{again.stdout[-4000:]}")
                    samples[variant].append(seconds)
                    row[variant] = {"wall_s": round(seconds, 2), "loadavg_1m_before": round(load, 2)}
                deb_test.REPO = ROOT
                ping, _recap, ping_s = lab.playbook("lab-ping.yml")
                if ping.returncode != 0:
                    raise SystemExit(f"lab-ping failed:\n{ping.stdout[-3000:]}")
                pings.append(ping_s)
                row["lab_ping_s"] = round(ping_s, 2)
                row["tree_over_base"] = round(row["tree"]["wall_s"] / row["base"]["wall_s"], 2)
                rounds.append(row)
                print(row, flush=True)
        finally:
            lab_up.close()  # the lab's teardown (its hosts, namespaces, work directory)
    medians = {variant: round(statistics.median(walls), 2) for variant, walls in samples.items()}
    path = write_result(
        "deploy_deb_rerun",
        {
            "what": "rerun of playbooks/deploy-mirror.yml (changed=0) from the Debian package, "
            f"this tree's roles against {args.base}'s, alternately on one lab",
            "suite": args.suite,
            "base": args.base,
            "package": package.name,
            "first_deploy_s": round(first_s, 2),
            "rounds": rounds,
            "median_s": medians,
            "median_lab_ping_s": round(statistics.median(pings), 2),
            "tree_over_base_median": round(medians["tree"] / medians["base"], 2),
            "target_s": 20.0,
        },
    )
    print(medians, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
