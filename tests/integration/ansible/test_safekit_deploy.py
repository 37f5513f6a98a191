"""`safekit deploy mirror -i INVENTORY` on fresh lab hosts: progress, summary, a working cluster."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_lab_runs import fresh_lab

from safekit.lab import Lab

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from fresh_lab("itdep")


def deploy(lab: Lab, *extra: str) -> subprocess.CompletedProcess[str]:
    # From another directory: the playbooks are found from the package, not from the cwd.
    return subprocess.run(
        [str(BIN / "safekit"), "deploy", "mirror", "-i", str(lab.inventory_path), *extra],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def summary(stdout: str) -> dict[str, dict[str, int]]:
    return {
        m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        for m in re.finditer(r"^  (node\d+)\s+(ok=\d+ changed=\d+ failed=\d+ unreachable=\d+)$", stdout, re.M)
    }


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, ["/opt/safekit/venv/bin/safekit", "state", "-m", "webmirror", "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


def test_deploy_mirror_shows_progress_and_a_summary_and_builds_the_cluster(lab: Lab) -> None:
    result = deploy(lab)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "TASK safekit.ha.node : Install the engine (from the wheelhouse), and its service" in lines
    assert "  node1: changed" in lines and "  node2: ok" in lines
    assert "SUMMARY" in lines
    recap = summary(result.stdout)
    assert set(recap) == {"node1", "node2"}
    assert all(h["failed"] == 0 and h["unreachable"] == 0 and h["changed"] > 0 for h in recap.values())
    # the two nodes and the witness host, where the play installs the arbitrating witness
    assert re.search(r"^total time \d+\.\d s: ok on 3 hosts$", result.stdout, re.M)
    assert re.search(r"^  witness\s+ok=\d+ changed=\d+ failed=0 unreachable=0$", result.stdout, re.M)
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")
    # The cluster key never reaches the display (the task that distributes it is no_log).
    key = lab.exec("node1", ["cat", "/etc/safekit/cluster.key"], check=True).stdout.strip().split(":", 1)[1]
    assert key not in result.stdout and key not in result.stderr


def test_a_second_deploy_changes_nothing(lab: Lab) -> None:
    result = deploy(lab)
    assert result.returncode == 0, result.stdout[-4000:]
    assert all(h["changed"] == 0 for h in summary(result.stdout).values()), result.stdout[-2000:]
    assert state(lab, "node1")[0] == "PRIM"


def test_check_mode_and_extra_vars_change_nothing(lab: Lab) -> None:
    conf = "/opt/safekit/modules/webmirror/conf/userconfig.xml"
    before = lab.exec("node1", ["cat", conf], check=True).stdout
    result = deploy(lab, "--check", "-e", "safekit_web_port=8081")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "(check mode)" in result.stdout.splitlines()[0]
    assert summary(result.stdout)["node1"]["changed"] > 0
    assert lab.exec("node1", ["cat", conf], check=True).stdout == before


def test_an_unreachable_node_fails_the_deploy_before_any_change(lab: Lab) -> None:
    lab.kill("node2")
    try:
        result = deploy(lab, "-e", "safekit_web_port=8082")
    finally:
        lab.start("node2")
    assert result.returncode == 1
    assert "  node2: UNREACHABLE" in result.stdout
    assert "FAILED on node2" in result.stdout
    recap = summary(result.stdout)
    assert recap["node2"]["unreachable"] == 1 and recap["node1"]["changed"] == 0
    conf = lab.exec("node1", ["cat", "/opt/safekit/modules/webmirror/conf/userconfig.xml"], check=True).stdout
    assert "8082" not in conf
