"""playbooks/deploy-farm.yml on fresh lab hosts (3 nodes, a client): a farm whose every node answers
clients of the VIP, a second run that changes nothing, check mode that changes nothing, and
safekit.ha.node_info's parameters given back to safekit.ha.app_module changing nothing (round trip)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ansible_lab_runs import BIN, ROOT, Recap, recap_of, run_playbook

from safekit.lab import Lab
from safekit.lab.run_names import run_lab_name

NODES = ("node1", "node2", "node3")
USERCONFIG = "/opt/safekit/modules/webfarm/conf/userconfig.xml"

# Run on the client: `count` HTTP GETs to the URL, each on a new connection; who answered.
PROBE = r"""
import json, sys, urllib.request
answers, failures = {}, 0
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for _ in range(int(sys.argv[2])):
    try:
        with opener.open(sys.argv[1], timeout=3) as reply:
            page = reply.read().decode().strip()
            answers[page] = answers.get(page, 0) + 1
    except OSError:
        failures += 1
print(json.dumps({"answers": answers, "failures": failures}))
"""

ROUND_TRIP = """
- name: What info reads, given back to module, changes nothing
  hosts: safekit_nodes
  gather_facts: false
  tasks:
    - name: Read the module
      safekit.ha.node_info:
        name: webfarm
      register: node

    - name: Give its parameters back
      safekit.ha.app_module:
        name: webfarm
        mode: "{{ p.mode | default(omit) }}"
        boot: "{{ p.boot | default(omit) }}"
        farm: "{{ p.farm | default(omit) }}"
        vip: "{{ p.vip | default(omit) }}"
        loadbalancing: "{{ p.loadbalancing | default(omit) }}"
        user: "{{ p.user | default(omit) }}"
        errd: "{{ p.errd | default(omit) }}"
        checkers: "{{ p.checkers | default(omit) }}"
      vars:
        p: "{{ node.modules[0].params }}"
      register: again
      failed_when: again.changed or node.modules[0].params is none
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    lab = Lab(run_lab_name("ansitfarm"))
    lab.down()
    lab.up(nodes=len(NODES), client=True)
    try:
        yield lab
    finally:
        lab.down()


Deploy = Callable[..., tuple[subprocess.CompletedProcess[str], Recap]]


@pytest.fixture(scope="module")
def playbook(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    """deploy-farm.yml on the lab, with the wheelhouses built from a copy of the source."""
    frozen = frozen_source(tmp_path_factory.mktemp("engine"))

    def run(*extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
        return run_playbook(lab, "deploy-farm.yml", *frozen, *extra)

    return run


def frozen_source(directory: Path) -> tuple[str, ...]:
    """Extra variables that build the wheelhouses from a copy of the engine's source taken now, in
    this test's own directories: the runs of a test compare what the nodes receive, which must not
    change because someone edits the checkout meanwhile."""
    source = directory / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # The native replication programs the wheel carries (setup.py): their sources and the checkout's
    # build, times kept, so that `make` finds it up to date and the wheel is built without compiling
    # (the sanitizer and fuzzer builds are not the wheel's).
    shutil.copytree(ROOT / "native", source / "native", ignore=native_ignored, symlinks=True)
    # The controller's cluster key and wheelhouse, made here as safekit.ha.node makes them: in check
    # mode its commands that make them do not run, and a check run on new nodes needs both.
    key = directory / "cluster.key"
    subprocess.run([str(BIN / "safekit"), "cluster", "genkey", str(key)], check=True, capture_output=True)
    wheelhouse = directory / "wheelhouse"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheelhouse), str(source)],
        env=dict(os.environ, SOURCE_DATE_EPOCH="315532800"),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return (
        "-e",
        f"safekit_key_file={key}",
        "-e",
        f"safekit_project_root={source}",
        "-e",
        f"safekit_controller_wheelhouse={wheelhouse}",
        "-e",
        f"safekit_cloud_controller_wheelhouse={directory / 'wheelhouse-cloud'}",
    )


def native_ignored(directory: str, names: list[str]) -> set[str]:
    """What the copy of native/ leaves out: build/'s sanitizer and fuzzer trees."""
    return {"asan", "fuzz"} & set(names) if Path(directory) == ROOT / "native" / "build" else set()


def changed_tasks(output: str) -> list[str]:
    """The tasks of a run that reported a change, as "TASK NAME: host"."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]", 1)[0]
        elif line.startswith("changed: ["):
            found.append(f"{task}: {line[len('changed: [') :].split(']', 1)[0]}")
    return found


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, ["/opt/safekit/venv/bin/safekit", "state", "-m", "webfarm", "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


def probe(lab: Lab, count: int = 60) -> dict[str, object]:
    url = f"http://{lab.plan().vips[0]}:8080/"
    out = lab.exec("client", ["python3", "-c", PROBE, url, str(count)], check=True, timeout=count * 3 + 30)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_check_mode_on_new_nodes_reports_and_changes_nothing(lab: Lab, playbook: Deploy) -> None:
    result, recap = playbook("--check")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert all(recap[node]["changed"] > 0 for node in NODES), recap
    for node in NODES:
        assert lab.exec(node, ["test", "-e", "/opt/safekit/venv"]).returncode != 0
        assert lab.exec(node, ["test", "-e", USERCONFIG]).returncode != 0


def test_deploy_serves_from_every_node_then_a_second_run_changes_nothing(lab: Lab, playbook: Deploy) -> None:
    started = time.monotonic()
    first, recap = playbook()
    first_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert all(recap[node]["failed"] == 0 and recap[node]["changed"] > 0 for node in NODES), recap
    assert "Every connection was answered" in first.stdout  # the playbook's own check from the client
    for node in NODES:
        assert state(lab, node) == ("UP", "Ready")
    result = probe(lab)
    assert result["failures"] == 0, result
    assert result["answers"].keys() == {f"served by {node}" for node in NODES}, result  # type: ignore[attr-defined]

    started = time.monotonic()
    second, recap = playbook()
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), changed_tasks(second.stdout)
    print(f"deploy-farm.yml: first run {first_seconds:.1f} s, second run {second_seconds:.1f} s")


def test_check_mode_on_a_changed_input_reports_and_changes_nothing(lab: Lab, playbook: Deploy) -> None:
    before = lab.exec("node1", ["cat", USERCONFIG], check=True).stdout
    result, recap = playbook("--check", "--diff", "-e", "safekit_web_port=8081")
    assert result.returncode == 0, result.stdout[-4000:]
    assert all(recap[node]["changed"] > 0 for node in NODES), recap
    assert 'port="8081"' in result.stdout  # the diff shows the load-balancing rule that would change
    assert lab.exec("node1", ["cat", USERCONFIG], check=True).stdout == before
    assert state(lab, "node1") == ("UP", "Ready")


def test_what_info_reads_given_back_to_module_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    book = tmp_path / "round-trip.yml"
    book.write_text(ROUND_TRIP)
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab.inventory_path), str(book)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    recap = recap_of(result.stdout)
    assert result.returncode == 0, result.stdout[-4000:]
    assert all(recap[node]["changed"] == 0 and recap[node]["ok"] == 2 for node in NODES), recap


def test_input_the_engine_refuses_changes_no_node(lab: Lab, playbook: Deploy) -> None:
    before = {node: lab.exec(node, ["cat", USERCONFIG], check=True).stdout for node in NODES}
    bad_rule = json.dumps({"safekit_farm_rules": [{"virtual_addr": "198.18.9.9", "port": 8080}]})
    result, recap = playbook("-e", bad_rule)
    assert result.returncode != 0
    assert "is not valid (nothing was changed)" in result.stdout and "198.18.9.9" in result.stdout
    assert all(recap[node]["failed"] == 1 for node in NODES), recap
    assert {node: lab.exec(node, ["cat", USERCONFIG], check=True).stdout for node in NODES} == before
    assert all(state(lab, node) == ("UP", "Ready") for node in NODES)


def test_the_cloud_role_installs_the_sdk_and_writes_the_provider(lab: Lab, playbook: Deploy) -> None:
    """The role safekit.ha.cloud through deploy-farm.yml: the aws extra (boto3) installed into each node's
    engine from wheels built on the controller, provider and options written on the farm's VIP and
    validated by the engine; the running farm is left alone (restart_required), and a second run
    changes nothing. (This engine's farm modules do not call VIP providers: nothing is acquired.)"""
    cloud = json.dumps(
        {
            "safekit_cloud_provider": "aws_lb",
            "safekit_cloud_options": {"port": 8080, "os_address": False},
        }
    )
    no_boto3 = ["/opt/safekit/venv/bin/python", "-c", "import boto3"]
    assert lab.exec("node1", no_boto3).returncode != 0, "the engine starts without the cloud extra"
    first, recap = playbook("-e", cloud)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert all(recap[node]["changed"] > 0 for node in NODES), recap
    for node in NODES:
        assert lab.exec(node, no_boto3).returncode == 0, f"boto3 not installed on {node}"
        xml = lab.exec(node, ["cat", USERCONFIG], check=True).stdout
        assert f'<virtual_addr addr="{lab.plan().vips[0]}" provider="aws_lb">' in xml, xml
        assert '<option name="port" value="8080"/>' in xml
        assert '<option name="os_address" value="off"/>' in xml
        assert state(lab, node) == ("UP", "Ready")
    assert "its new configuration applies at its next stop" in first.stdout
    second, recap = playbook("-e", cloud)
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), changed_tasks(second.stdout)
