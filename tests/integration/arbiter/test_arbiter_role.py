"""The role safekit.ha.arbiter through playbooks/deploy-mirror.yml, on the lab's witness host.

It installs the engine on the witness, writes the derived key, runs the service as a supervised
process (lab hosts have no systemd), changes nothing on a second run, and the service grants a
lease to a node that holds the cluster key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.arbiter import keys
from safekit.lab import Lab
from safekit.lab.run_names import run_lab_name

BIN = Path(sys.prefix) / "bin"
ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = "playbooks/deploy-mirror.yml"
# also the cluster's name (safekit_lab_name)
LAB_NAME = os.environ.get("SAFEKIT_ARBITER_LAB") or run_lab_name("arb")


@pytest.fixture(scope="module")
def arb_lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(LAB_NAME)
    lab.down()
    lab.up(nodes=2, witness=True)
    try:
        yield lab
    finally:
        lab.down()


def deploy_witness(lab: Lab) -> str:
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(lab.inventory_path),
            PLAYBOOK,
            "--limit",
            "safekit_witness",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "SOURCE_DATE_EPOCH": "315532800"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout


def changed_tasks(output: str) -> list[str]:
    changed, task = [], ""
    for line in output.splitlines():
        match = re.match(r"TASK \[(.*)\]", line)
        if match:
            task = match.group(1)
        elif line.startswith("changed:"):
            changed.append(task)
    return changed


def test_role_deploys_a_working_arbiter_idempotently(arb_lab: Lab) -> None:
    first = deploy_witness(arb_lab)
    assert any(t.startswith("safekit.ha.arbiter : Start the arbiter") for t in changed_tasks(first))
    # only a derived key reaches the witness, readable by root alone
    key_path = f"/etc/safekit/arbiter/{LAB_NAME}.key"
    listing = arb_lab.exec("witness", ["stat", "-c", "%a %U", key_path], check=True)
    assert listing.stdout.split() == ["600", "root"]
    text = arb_lab.exec("witness", ["cat", key_path], check=True).stdout
    assert text.startswith(keys.ARBITER_KEY_PREFIX)

    second = deploy_witness(arb_lab)
    assert [t for t in changed_tasks(second) if t.startswith("safekit.ha.arbiter")] == []

    # the replica generations are kept in the witness's private state directory, mode 0700
    state = arb_lab.exec("witness", ["stat", "-c", "%a %U", "/var/safekit/arbiter"], check=True)
    assert state.stdout.split() == ["700", "root"]
    cluster_key = ROOT / ".safekit" / f"{LAB_NAME}.key"
    address = str(arb_lab.plan().host("witness").address)
    argv = [
        str(BIN / "safekit"),
        "arbiter",
        "request",
        "--address",
        address,
        "--cluster-key",
        str(cluster_key),
    ]
    argv += ["--node", "node1", "--module", "am", "--json"]
    deadline = time.monotonic() + 30  # the first start's grace period is 10 s
    while True:
        out = arb_lab.exec("node1", argv)
        if out.returncode == 0:
            break
        assert time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(1)
    answer = json.loads(out.stdout)
    assert answer["granted"] is True and answer["holder"] == "node1"
