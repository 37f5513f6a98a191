"""safekit.ha.deploy_mirror on fresh lab hosts, from the collection as users install it (issue 18,
ADR 0041), then the inventory-driven example re-deploys the module with structured replication.

1. `ansible-galaxy collection build`, `install` of the tarball into an empty path, then a playbook
   that names only FQCNs (`import_playbook: safekit.ha.deploy_mirror`), Ansible seeing that path
   alone - no ansible.cfg, roles/ or collections/ of this checkout, which only gives the engine's
   source for the wheelhouse (safekit_project_root), as it would to a user: the demo mirror module
   runs. A second run changes nothing; check mode on a changed input reports and changes nothing.
2. On the same cluster, the operator stops the module and deploys it again from the example's
   inventory values (playbooks/examples/site.yml with playbooks/examples/onprem's group_vars, run
   from this checkout): its replication is given as structured parameters; it replicates, and
   safekit.ha.node_info returns those parameters in the shape the example gave them; a second run
   changes nothing. The example's values are used as they are, except what names the on-premises
   network (LANs, VIP, witness, first primary) and the cluster (the one deployed in 1, its key).

make test runs the first run of each (one lab for both Must-show lines of issue 18, the example's run
where a second run of the demo's was); the second runs and the check mode are in make
test-ansible-long with the rest of this file (Molecule's mirror scenario, in make test, runs
safekit.ha.deploy_mirror twice from the checkout; tests/unit/ansible/test_ansible_userconfig.py
renders and parses back generated replication parameters). The whole file at load 13: lab and
collection 22 s, deployment 294 s, its second run 226 s, check mode 113 s, the example's stop and
deployment 92 s, its second run 106 s. make test's part (22 + 294 + 92 s; building and installing
the collection is in the 22) replaced a deployment and a second run of the checkout's playbook on a
lab of its own (about 294 + 226 s): about 2 minutes less at that load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_lab_runs import ROOT, Recap, fresh_lab, recap_of

from safekit.lab import Lab

BIN = Path(sys.executable).parent
COLLECTION = ROOT / "collections" / "ansible_collections" / "safekit" / "ha"
ENGINE = "/opt/safekit/venv/bin/safekit"
MODULE = "webmirror"
SITE = """\
- name: The demo mirror module, from the installed collection
  ansible.builtin.import_playbook: safekit.ha.deploy_mirror
"""
GROUP_VARS = ROOT / "playbooks" / "examples" / "onprem" / "group_vars" / "safekit_nodes.yml"


class Installed:
    """The installed collection, a working directory of the user's own, an environment seeing only it."""

    def __init__(self, collection: Path, work: Path, env: dict[str, str]) -> None:
        self.collection, self.work, self.env = collection, work, env

    @property
    def key_file(self) -> Path:
        return self.work / "cluster.key"


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from fresh_lab("itans")


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None, timeout: int
) -> subprocess.CompletedProcess[str]:
    """argv in cwd; env None: this process's environment (this checkout's ansible.cfg from cwd)."""
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("installed")
    collections, build = work / "collections", work / "build"
    collections.mkdir()
    (work / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {collections}\nroles_path = {work / 'no-roles'}\n"
        "interpreter_python = auto_silent\nforks = 20\n"
        "[ssh_connection]\npipelining = true\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s"
        " -o ServerAliveInterval=5 -o ServerAliveCountMax=3\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {
        "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_NOCOLOR": "1",
    }
    galaxy = str(BIN / "ansible-galaxy")
    built = run([galaxy, "collection", "build", "--output-path", str(build)], COLLECTION, env, 120)
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = build.glob("safekit-ha-*.tar.gz")
    assert list(collections.iterdir()) == []
    install = [galaxy, "collection", "install", "--offline", str(tarball), "-p", str(collections)]
    done = run(install, work, env, 120)
    assert done.returncode == 0, done.stdout + done.stderr
    (work / "site.yml").write_text(SITE)
    return Installed(collections / "ansible_collections" / "safekit" / "ha", work, env)


def deploy(lab: Lab, installed: Installed, *extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
    """ansible-playbook site.yml (safekit.ha.deploy_mirror) in the user's directory, installed copy."""
    controller = {
        # The engine's source and the wheelhouse built from it (shared with the other playbook tests);
        # the controller's own files for this cluster in the working directory.
        "safekit_project_root": str(ROOT),
        "safekit_controller_wheelhouse": str(ROOT / ".safekit" / "wheelhouse"),
        "safekit_deb_dir": str(ROOT / "build" / "deb"),
        "safekit_key_file": str(installed.key_file),
        "safekit_arbiter_controller_dir": str(installed.work / "arbiter"),
    }
    argv = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory_path), "site.yml"]
    result = run([*argv, "-e", json.dumps(controller), *extra], installed.work, installed.env, 840)
    return result, recap_of(result.stdout)


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, [ENGINE, "state", "-m", MODULE, "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


def page(lab: Lab) -> str:
    vip = lab.plan().vips[0]
    fetch = (
        f"import urllib.request;print(urllib.request.urlopen('http://{vip}:8080/',timeout=2).read().decode())"
    )
    return lab.exec("client", ["python3", "-c", fetch]).stdout.strip()


def userconfig(lab: Lab) -> str:
    return lab.exec("node1", ["cat", f"/opt/safekit/modules/{MODULE}/conf/userconfig.xml"], check=True).stdout


@pytest.mark.timeout(900)  # one whole deployment: about 130 s on a quiet machine, 360 s at load 8
def test_a_playbook_of_fqcns_deploys_the_demo_module_from_the_installed_collection(
    lab: Lab, installed: Installed
) -> None:
    result, recap = deploy(lab, installed, "-vv")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0, recap
    # Every task came from the installed copy: its roles and playbook, none of this checkout.
    task_paths = set(re.findall(r"^task path: (\S+):\d+$", result.stdout, re.MULTILINE))
    assert any("/roles/mirror/tasks/" in p for p in task_paths), sorted(task_paths)[:5]
    assert all(p.startswith(str(installed.collection) + "/") for p in task_paths), sorted(task_paths)
    assert "TASK [safekit.ha.node : " in result.stdout and "TASK [safekit.ha.mirror : " in result.stdout
    # The engine was installed on each node from the wheelhouse, into the node's own /opt.
    for node in ("node1", "node2"):
        assert lab.exec(node, ["test", "-x", "/opt/safekit/venv/bin/safekitd"]).returncode == 0
    # The demo module runs: PRIM and SECOND, the web page served through the VIP by the primary.
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")
    assert page(lab) == "served by node1"
    # The cluster key the controller generated is the nodes', and never shown, even with -vv.
    key = lab.exec("node1", ["cat", "/etc/safekit/cluster.key"], check=True).stdout.strip()
    assert installed.key_file.read_text().strip() == key
    secret = key.split(":", 1)[1]
    assert secret not in result.stdout and secret not in result.stderr


@pytest.mark.timeout(600)  # make test-ansible-long
def test_a_second_run_changes_nothing(lab: Lab, installed: Installed) -> None:
    second, recap = deploy(lab, installed)
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    assert state(lab, "node1")[0] == "PRIM", "a second run restarts nothing"


@pytest.mark.timeout(600)  # make test-ansible-long
def test_check_mode_on_a_changed_input_reports_and_changes_nothing(lab: Lab, installed: Installed) -> None:
    before = userconfig(lab)
    result, recap = deploy(lab, installed, "--check", "--diff", "-e", "safekit_web_port=8081")
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap["node1"]["changed"] > 0
    assert "8081" in result.stdout  # the diff shows what would change
    assert userconfig(lab) == before


def example_vars(lab: Lab, installed: Installed) -> dict[str, Any]:
    """The example's group_vars, with the lab's network and the cluster deployed above."""
    values: dict[str, Any] = yaml.safe_load(GROUP_VARS.read_text())
    values["safekit_cluster_lans"] = ["default"]
    values["safekit_module"]["heartbeats"] = [{"name": "default"}]
    values["safekit_vip"] = str(lab.plan().vips[0])
    values["safekit_witness"] = "{{ safekit_lab_witness }}"
    values["safekit_first_primary"] = "node1"
    values["safekit_cluster_name"] = lab.name
    values["safekit_key_file"] = str(installed.key_file)
    return values


def example(lab: Lab, installed: Installed, tmp: Path) -> tuple[subprocess.CompletedProcess[str], Recap]:
    """ansible-playbook playbooks/examples/site.yml from this checkout, the example's values given."""
    extra_vars = tmp / "example-vars.json"
    extra_vars.write_text(json.dumps(example_vars(lab, installed)))
    argv = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory_path), "playbooks/examples/site.yml"]
    result = run([*argv, "-e", f"@{extra_vars}"], ROOT, None, 600)
    return result, recap_of(result.stdout)


def node_info(lab: Lab) -> dict[str, dict[str, Any]]:
    """safekit.ha.node_info of the module on each node, run by Ansible as a user would: {node: answer}."""
    argv = [
        str(BIN / "ansible"),
        "-i",
        str(lab.inventory_path),
        "safekit_nodes",
        "-m",
        "safekit.ha.node_info",
    ]
    result = run([*argv, "-a", json.dumps({"name": MODULE}), "-o"], ROOT, None, 120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    answers = (re.match(r"^(\S+) \| SUCCESS => (\{.*\})$", line) for line in result.stdout.splitlines())
    return {m.group(1): json.loads(m.group(2)) for m in answers if m}


@pytest.mark.timeout(900)  # a stop and a deployment of the module
def test_the_inventory_example_deploys_replication_that_node_info_returns(
    lab: Lab, installed: Installed, tmp_path: Path
) -> None:
    # A running module takes a new configuration at its next stop (the role says so): the operator
    # stops it, the secondary first, so the primary keeps the newest data and starts as primary again.
    for node in ("node2", "node1"):
        lab.exec(node, [ENGINE, "stop", "-m", MODULE], check=True)
        assert state(lab, node)[0] == "STOP"
    assert "<rfs" not in userconfig(lab)

    first, recap = example(lab, installed, tmp_path)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0, recap
    xml = userconfig(lab)
    assert '<rfs async="second" sendtimeout="30s">' in xml
    assert '<notreplicated path="cache"/>' in xml

    # node_info gives back the example's replication parameters, in the shape safekit.ha.app_module takes
    given = yaml.safe_load(GROUP_VARS.read_text())["safekit_module"]["replication"]
    info = node_info(lab)
    assert sorted(info) == ["node1", "node2"], info
    for answer in info.values():
        module = answer["modules"][0]
        assert module["params_note"] is None, module["params_note"]
        assert module["params"]["replication"] == given
    assert [info[n]["modules"][0]["state"] for n in ("node1", "node2")] == ["PRIM", "SECOND"]
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")

    # It replicates: the page the primary wrote is on the secondary; its scratch space is not.
    scratch = "mkdir -p /srv/www/cache && echo scratch > /srv/www/cache/x && sync"
    lab.exec("node1", ["sh", "-c", scratch], check=True)
    data = "echo written on the primary > /srv/www/data.txt && sync /srv/www/data.txt"
    lab.exec("node1", ["sh", "-c", data], check=True)
    copied = lab.exec("node2", ["cat", "/srv/www/index.html", "/srv/www/data.txt"], check=True).stdout
    assert copied.splitlines() == ["served by node1", "written on the primary"]
    assert lab.exec("node2", ["test", "-e", "/srv/www/cache/x"]).returncode != 0
    assert page(lab) == "served by node1"


@pytest.mark.timeout(600)  # make test-ansible-long
def test_the_inventory_example_run_again_changes_nothing(
    lab: Lab, installed: Installed, tmp_path: Path
) -> None:
    second, recap = example(lab, installed, tmp_path)
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), recap
    assert state(lab, "node1")[0] == "PRIM", "a second run restarts nothing"
