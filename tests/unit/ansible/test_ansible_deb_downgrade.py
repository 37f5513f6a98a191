"""playbooks/upgrade.yml's plan for a node of the Debian package (safekit.ha.node tasks/deb_plan.yml),
run by ansible-playbook against this machine as the node: a package in safekit_deb_dir older than
the installed one stops the plan in one line (apt-get would refuse it later, on the first node
already changed); the same or a newer one goes through. dpkg's own version order decides (real
`dpkg --compare-versions`); the installed package is a fake `dpkg-query` first in PATH and the
engine a fake `safekit --version`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from safekit_collection import run_local_play

PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: safekit.ha.node
        tasks_from: deb_plan
    - ansible.builtin.copy:
        content: "{{ safekit_upgrade_plan | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""
INSTALLED = "0.2.0~~dev1-1+deb12"


def plan(tmp: Path, package: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """deb_plan.yml with INSTALLED installed and `package` picked from safekit_deb_dir."""
    fake_bin, venv = tmp / "bin", tmp / "venv"
    fake_bin.mkdir()
    (venv / "bin").mkdir(parents=True)
    (fake_bin / "dpkg-query").write_text(f"#!/bin/sh\necho '{INSTALLED}'\n")
    (venv / "bin" / "safekit").write_text("#!/bin/sh\necho 'safekit 0.2.0.dev1'\n")
    for script in (fake_bin / "dpkg-query", venv / "bin" / "safekit"):
        script.chmod(0o755)
    out = tmp / "out.json"
    variables = {
        "out": str(out),
        "safekit_venv": str(venv),
        "_safekit_deb_file": str(tmp / package),
        "_safekit_node": {"release": "12", "arch": "amd64"},
    }
    result = run_local_play(PLAY, tmp, variables, path=f"{fake_bin}:{os.environ['PATH']}")
    return result, (json.loads(out.read_text()) if out.exists() else {})


def test_an_older_package_stops_the_plan_in_one_line(tmp_path: Path) -> None:
    result, seen = plan(tmp_path, "safekit_0.2.0~~dev0-1+deb12_amd64.deb")
    assert result.returncode != 0 and not seen, result.stdout
    messages = [line for line in result.stdout.splitlines() if '"msg":' in line]
    assert len(messages) == 1 and "Traceback" not in result.stdout + result.stderr, result.stdout
    assert (
        "node1: safekit_0.2.0~~dev0-1+deb12_amd64.deb is older than the installed safekit "
        f"{INSTALLED}: playbooks/upgrade.yml does not downgrade (apt-get refuses it)"
    ) in messages[0]


@pytest.mark.parametrize(
    "package",
    [
        "safekit_0.2.0~~dev1-1+deb12_amd64.deb",  # the same: nothing to install
        "safekit_0.2.0~rc1-1+deb12_amd64.deb",  # dev1 < rc1 < the release, as pip orders them
        "safekit_0.2.0-1+deb12_amd64.deb",
    ],
)
def test_the_same_or_a_newer_package_is_planned(tmp_path: Path, package: str) -> None:
    result, seen = plan(tmp_path, package)
    assert result.returncode == 0, result.stdout
    assert seen == {
        "version_before": INSTALLED,
        "version_after": package.split("_")[1],
        "engine_version": "0.2.0.dev1",
    }
