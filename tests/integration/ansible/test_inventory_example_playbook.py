"""The inventory-driven example (playbooks/examples/site.yml with playbooks/examples/onprem's
group_vars) on fresh lab hosts: its module, with structured replication parameters, is deployed and
replicates; safekit.ha.node_info returns those parameters in the shape the example gave them; a second run
changes nothing.

The example's values are used as they are, except what names the on-premises network (LANs, VIP,
witness, first primary), replaced by the lab's.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_lab_runs import BIN, ROOT, Recap, fresh_lab, recap_of

from safekit.lab import Lab

GROUP_VARS = ROOT / "playbooks" / "examples" / "onprem" / "group_vars" / "safekit_nodes.yml"
MODULE = "webmirror"


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from fresh_lab("itinv")


def example_vars(lab: Lab) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(GROUP_VARS.read_text())
    plan = lab.plan()
    values["safekit_cluster_lans"] = ["default"]
    values["safekit_module"]["heartbeats"] = [{"name": "default"}]
    values["safekit_vip"] = str(plan.vips[0])
    values["safekit_witness"] = "{{ safekit_lab_witness }}"
    values["safekit_first_primary"] = "node1"
    values["safekit_cluster_name"] = "itinv"
    return values


def site(lab: Lab, tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
    extra_vars = tmp / "example-vars.json"
    extra_vars.write_text(json.dumps(example_vars(lab)))
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(lab.inventory_path),
            "playbooks/examples/site.yml",
            "-e",
            f"@{extra_vars}",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return result, recap_of(result.stdout)


def info(lab: Lab, node: str) -> dict[str, Any]:
    """safekit.ha.node_info of the module on `node`, run by Ansible as a user would."""
    result = subprocess.run(
        [
            str(BIN / "ansible"),
            "-i",
            str(lab.inventory_path),
            node,
            "-m",
            "safekit.ha.node_info",
            "-a",
            json.dumps({"name": MODULE}),
            "-o",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    answer: dict[str, Any] = json.loads(result.stdout.split("=>", 1)[1])
    return answer


@pytest.mark.timeout(900)  # two deploys of a fresh cluster
def test_the_example_deploys_replicates_and_round_trips(lab: Lab, tmp_path: Path) -> None:
    first, recap = site(lab, tmp_path)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0

    xml = lab.exec("node1", ["cat", f"/opt/safekit/modules/{MODULE}/conf/userconfig.xml"], check=True).stdout
    assert '<rfs async="second" sendtimeout="30s">' in xml
    assert '<notreplicated path="cache"/>' in xml

    # info gives back the example's replication parameters, in the shape safekit.ha.app_module takes
    given = yaml.safe_load(GROUP_VARS.read_text())["safekit_module"]["replication"]
    for node in ("node1", "node2"):
        module = info(lab, node)["modules"][0]
        assert module["params_note"] is None, module["params_note"]
        assert module["params"]["replication"] == given
    assert info(lab, "node1")["modules"][0]["state"] == "PRIM"

    # it replicates: the page the primary wrote is on the secondary; its scratch space is not
    scratch = "mkdir -p /srv/www/cache && echo scratch > /srv/www/cache/x && sync"
    lab.exec("node1", ["sh", "-c", scratch], check=True)
    data = "echo written on the primary > /srv/www/data.txt && sync /srv/www/data.txt"
    lab.exec("node1", ["sh", "-c", data], check=True)
    copied = lab.exec("node2", ["cat", "/srv/www/index.html", "/srv/www/data.txt"], check=True).stdout
    assert copied.splitlines() == ["served by node1", "written on the primary"]
    assert lab.exec("node2", ["test", "-e", "/srv/www/cache/x"]).returncode != 0

    second, recap = site(lab, tmp_path)
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
