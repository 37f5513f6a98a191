"""The collection as users install it deploys the demo mirror module (issue 18, ADR 0041):
`ansible-galaxy collection build`, `install` of the tarball into an empty path, then a playbook that
names only FQCNs (`import_playbook: safekit.ha.deploy_mirror`) on fresh lab hosts, Ansible seeing
that path alone - no ansible.cfg, roles/ or collections/ of this checkout. The checkout only gives
the engine's source for the wheelhouse (safekit_project_root), as it would to a user.

Two to six minutes (one whole deployment): make test-collection-deploy, not make test (which builds,
installs and checks the playbooks and docs of the installed copy in
tests/unit/ansible/test_ansible_collection_package.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_lab_runs import ROOT, fresh_lab, recap_of

from safekit.lab import Lab

BIN = Path(sys.executable).parent
COLLECTION = ROOT / "collections" / "ansible_collections" / "safekit" / "ha"
SITE = """\
- name: The demo mirror module, from the installed collection
  ansible.builtin.import_playbook: safekit.ha.deploy_mirror
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    yield from fresh_lab("collroles")


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(the installed collection, an empty working directory, an environment seeing only it)."""
    work = tmp_path_factory.mktemp("collroles")
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
    install = [galaxy, "collection", "install", "--offline", str(tarball), "-p", str(collections)]
    done = run(install, work, env, 120)
    assert done.returncode == 0, done.stdout + done.stderr
    return collections / "ansible_collections" / "safekit" / "ha", work, env


def state(lab: Lab, node: str) -> tuple[str, str]:
    out = lab.exec(node, ["/opt/safekit/venv/bin/safekit", "state", "-m", "webmirror", "--json"], check=True)
    module = json.loads(out.stdout)["modules"][0]
    return module["state"], module["readiness"]


@pytest.mark.timeout(900)  # one whole deployment: about 130 s on a quiet machine, 360 s at load 8
def test_a_playbook_of_fqcns_deploys_the_demo_module_from_the_installed_collection(
    lab: Lab, installed: tuple[Path, Path, dict[str, str]]
) -> None:
    collection, work, env = installed
    (work / "site.yml").write_text(SITE)
    controller = {
        # The engine's source and the wheelhouse built from it (shared with the other playbook tests);
        # the controller's own files for this cluster in the working directory.
        "safekit_project_root": str(ROOT),
        "safekit_controller_wheelhouse": str(ROOT / ".safekit" / "wheelhouse"),
        "safekit_deb_dir": str(ROOT / "build" / "deb"),
        "safekit_key_file": str(work / "collroles.key"),
        "safekit_arbiter_controller_dir": str(work / "arbiter"),
    }
    result = run(
        [
            str(BIN / "ansible-playbook"),
            "-vv",
            "-i",
            str(lab.inventory_path),
            "site.yml",
            "-e",
            json.dumps(controller),
        ],
        work,
        env,
        840,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    recap = recap_of(result.stdout)
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0, recap
    # Every task came from the installed copy: its roles and playbook, none of this checkout.
    task_paths = set(re.findall(r"^task path: (\S+):\d+$", result.stdout, re.MULTILINE))
    assert any("/roles/mirror/tasks/" in p for p in task_paths), sorted(task_paths)[:5]
    assert all(p.startswith(str(collection) + "/") for p in task_paths), sorted(task_paths)
    assert "TASK [safekit.ha.node : " in result.stdout and "TASK [safekit.ha.mirror : " in result.stdout
    # The demo module runs: PRIM and SECOND, the web page served through the VIP by the primary.
    assert state(lab, "node1") == ("PRIM", "Ready")
    assert state(lab, "node2") == ("SECOND", "Ready")
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
    # The cluster key the controller generated is the nodes'.
    key = lab.exec("node1", ["cat", "/etc/safekit/cluster.key"], check=True).stdout.strip()
    assert (work / "collroles.key").read_text().strip() == key
