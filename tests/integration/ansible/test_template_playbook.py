"""playbooks/examples/mirror.yml on fresh lab hosts: the generic mirror module of the template library
(safekit_module_template: mirror, its site values as safekit_template_* variables) deployed by the
roles, serving its replicated directory through the VIP; a second run changes nothing."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from ansible_lab_runs import Recap, fresh_lab, run_playbook

from safekit.lab import Lab

MODULE = "app"  # safekit_module_name in playbooks/examples/mirror.yml
PAGE = "/srv/data/index.html"  # in the template's replicated_dir, served by its app_command


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from fresh_lab("md16tpl")


def playbook(lab: Lab, *extra: str) -> tuple[subprocess.CompletedProcess[str], Recap]:
    return run_playbook(lab, "examples/mirror.yml", *extra)


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, ["/opt/safekit/venv/bin/safekit", "state", "-m", MODULE, "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


def fetch(lab: Lab, url: str) -> str:
    code = f"import urllib.request;print(urllib.request.urlopen({url!r},timeout=2).read().decode())"
    return lab.exec("client", ["python3", "-c", code]).stdout.strip()


def changed_tasks(output: str) -> list[str]:
    """The tasks of a run that reported a change, with the hosts: what to look at when a second
    run is not idempotent (a wheelhouse rebuilt because the tree changed in between is one)."""
    found: list[str] = []
    task = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line.split("]", 1)[0] + "]"
        elif line.startswith("changed:"):
            found.append(f"{task} {line.split(']', 1)[0]}]")
    return found


def wait_for(what: str, check: object, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:g} s"
        time.sleep(0.5)


@pytest.mark.timeout(900)  # two whole deployments: 191 s then 143 s measured at load 12
def test_template_module_deployed_by_the_playbook_serves_through_the_vip(lab: Lab) -> None:
    started = time.monotonic()
    first, recap = playbook(lab)
    first_run = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0
    # The module on the node is the template's, its macros set to the playbook's site values.
    config = lab.exec(
        "node1", ["cat", f"/opt/safekit/modules/{MODULE}/conf/userconfig.xml"], check=True
    ).stdout
    vip = lab.plan().vips[0]
    assert f'<macro name="VIRTUAL_IP" value="{vip}"/>' in config, config
    assert '<macro name="REPLICATED_DIR" value="/srv/data"/>' in config
    assert lab.exec("node1", ["test", "-x", f"/opt/safekit/modules/{MODULE}/bin/start_prim"]).returncode == 0
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")

    # A page written on the primary is served by the template's application through the VIP and
    # is on the secondary too (the directory is replicated).
    write = f"echo 'app on node1' > {PAGE}.tmp && sync && mv {PAGE}.tmp {PAGE}"
    lab.exec("node1", ["sh", "-c", write], check=True)
    url = f"http://{vip}:8080/index.html"
    wait_for("the page through the VIP", lambda: fetch(lab, url) == "app on node1", 30)
    wait_for(
        "the page on the secondary",
        lambda: lab.exec("node2", ["cat", PAGE]).stdout.strip() == "app on node1",
        30,
    )

    started = time.monotonic()
    second, recap = playbook(lab)
    second_run = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(host["changed"] == 0 for host in recap.values()), (recap, changed_tasks(second.stdout))
    assert state(lab, "node1") == ("PRIM", "Ready"), "a second run restarts nothing"
    assert fetch(lab, url) == "app on node1"
    print(f"first run: {first_run:.1f} s, second run: {second_run:.1f} s")
