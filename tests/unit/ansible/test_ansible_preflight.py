"""The safekit.ha.node role's pre-flight (tasks/preflight.yml of the collection's roles/node), run
by ansible-playbook against this machine as the node (read-only: it changes nothing): it picks the
Debian package for the node's release and architecture, chooses the install source (auto), and fails
in one line that says what is wrong when the install source cannot work on the node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from safekit_collection import REPO, run_local_play

PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: safekit.ha.node
        tasks_from: preflight
    - ansible.builtin.copy:
        content: >-
          {{ {'deb': _safekit_deb_file | default(''), 'node': _safekit_node, 'source': safekit_engine_source,
              'reason': _safekit_source_reason} | to_json }}
        dest: "{{ out }}"
        mode: "0600"
"""


def node_release() -> tuple[str, str]:
    release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )["VERSION_ID"].strip('"')
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    return release, arch.stdout.strip()


def preflight(
    tmp: Path, path: str | None = None, **extra: object
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """The pre-flight with these variables; `path`: the controller's PATH (this machine's if None)."""
    out = tmp / "out.json"
    out.unlink(missing_ok=True)
    # the engine's source a wheelhouse is built from: this checkout (the play is in tmp, beside none)
    variables = {"out": str(out), "safekit_project_root": str(REPO), **extra}
    result = run_local_play(PLAY, tmp, variables, path=path)
    return result, (json.loads(out.read_text()) if out.exists() else {})


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The assert's message (the one line the operator reads)."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if '"msg":' in line]
    assert lines, result.stdout
    return lines[-1].split('"msg":', 1)[1].strip().strip('"}')


def test_deb_source_picks_the_package_for_the_nodes_release_and_architecture(tmp_path: Path) -> None:
    release, arch = node_release()
    debs = tmp_path / "deb"
    debs.mkdir()
    wanted = debs / f"safekit_0.2.0-1+deb{release}_{arch}.deb"
    for name in (wanted.name, f"safekit_0.2.0-1+deb{release}_s390x.deb", "safekit_0.2.0-1+deb99_amd64.deb"):
        (debs / name).write_bytes(b"")
    result, seen = preflight(tmp_path, safekit_install_source="deb", safekit_deb_dir=str(debs))
    assert result.returncode == 0, result.stdout
    assert seen["deb"] == str(wanted)


def test_deb_source_without_a_package_says_which_one_to_build(tmp_path: Path) -> None:
    release, arch = node_release()
    result, _ = preflight(tmp_path, safekit_install_source="deb", safekit_deb_dir=str(tmp_path))
    message = failure(result)
    assert f"no safekit_*+deb{release}_{arch}.deb in {tmp_path}" in message
    assert "make deb" in message


def test_deb_source_needs_the_packages_virtualenv(tmp_path: Path) -> None:
    release, arch = node_release()
    (tmp_path / f"safekit_0.2.0-1+deb{release}_{arch}.deb").write_bytes(b"")
    result, _ = preflight(
        tmp_path, safekit_install_source="deb", safekit_deb_dir=str(tmp_path), safekit_venv="/srv/engine"
    )
    assert "installs the engine in /opt/safekit/venv, safekit_venv is /srv/engine" in failure(result)


def test_auto_never_installs_the_package_on_the_machine_running_ansible(tmp_path: Path) -> None:
    """This machine is the node (as lab hosts of network namespaces are: the same kernel boot and
    root): even with its package built, auto chooses the wheelhouse and says why."""
    release, arch = node_release()
    (tmp_path / f"safekit_0.2.0-1+deb{release}_{arch}.deb").write_bytes(b"")
    result, seen = preflight(tmp_path, safekit_deb_dir=str(tmp_path), safekit_deb_auto_releases=[release])
    assert result.returncode == 0, result.stdout
    assert seen["source"] == "wheelhouse"
    assert "this node is the system running Ansible" in str(seen["reason"])
    assert "node1: the engine from wheelhouse (auto, this node is the system running Ansible" in result.stdout


def test_auto_keeps_the_wheelhouse_where_the_package_is_not_the_default(tmp_path: Path) -> None:
    release, _ = node_release()
    result, seen = preflight(tmp_path, safekit_deb_dir=str(tmp_path), safekit_deb_auto_releases=["99"])
    assert result.returncode == 0, result.stdout
    assert seen["source"] == "wheelhouse"
    expected = f"auto, the Debian package is the default on Debian 99 and this node runs debian {release}"
    assert seen["reason"] == expected


def test_an_explicit_source_is_said_too(tmp_path: Path) -> None:
    result, seen = preflight(tmp_path, safekit_install_source="wheelhouse")
    assert result.returncode == 0, result.stdout
    assert (seen["source"], seen["reason"]) == ("wheelhouse", "set by safekit_install_source")


def test_wheelhouse_source_passes_when_the_controller_is_the_node(tmp_path: Path) -> None:
    """This machine is both: the same Python minor version and architecture."""
    result, seen = preflight(tmp_path, safekit_install_source="wheelhouse")
    assert result.returncode == 0, result.stdout
    node = seen["node"]
    assert isinstance(node, dict)
    assert node["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert node["fuse"] == "yes"


def test_wheelhouse_source_passes_with_the_native_toolchain_on_the_controller(tmp_path: Path) -> None:
    """The checkout holds native/: the wheel will carry the native programs, built here (make deps)."""
    result, _ = preflight(tmp_path, safekit_install_source="wheelhouse", safekit_project_root=str(REPO))
    assert result.returncode == 0, result.stdout


def test_wheelhouse_source_names_the_native_build_packages_the_controller_lacks(tmp_path: Path) -> None:
    """A controller whose pkg-config finds neither libfuse3 nor libcrypto: one line, before any node
    is touched, naming the Debian packages to install."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pkg-config").write_text("#!/bin/sh\nexit 1\n")
    (fake / "pkg-config").chmod(0o755)
    result, _ = preflight(
        tmp_path,
        path=f"{fake}{os.pathsep}{os.environ['PATH']}",
        safekit_install_source="wheelhouse",
        safekit_project_root=str(REPO),
    )
    assert failure(result) == (
        "the controller cannot build the native replication programs the engine's wheel carries: missing "
        "libfuse3-dev libssl-dev (on the controller: apt-get install build-essential pkg-config "
        "libfuse3-dev libssl-dev, or make native-deps)"
    )
