"""The engine's Debian package on a node (safekit.ha.node tasks/deb.yml), run by ansible-playbook
against this machine as the node: when dpkg already has the package's exact version (a second run
of the playbook), the package is neither copied to the node's cache nor installed - nothing changes;
any other version (or none) is copied and given to apt-get. The installed package is a fake
`dpkg-query` first in PATH, apt-get a fake that records its arguments (nothing is installed here)."""

from __future__ import annotations

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
        tasks_from: deb
"""
PACKAGE = "safekit_0.2.0~~dev1-1+deb12_amd64.deb"


def deploy(
    tmp: Path, dpkg_says: str, preflight_read: str | None = None
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """deb.yml with PACKAGE picked and `dpkg-query` answering DPKG_SAYS (each call noted in
    dpkg-query.log); PREFLIGHT_READ: what the pre-flight's probe read (_safekit_node.deb_package), None:
    no pre-flight ran. (result, cache, apt-get's log)."""
    fake_bin, cache, apt_log = tmp / "bin", tmp / "cache", tmp / "apt-get.log"
    fake_bin.mkdir()
    (fake_bin / "dpkg-query").write_text(
        f"#!/bin/sh\necho called >> {tmp / 'dpkg-query.log'}\nprintf '%s' '{dpkg_says}'\n"
    )
    (fake_bin / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {apt_log}\n')
    for script in fake_bin.iterdir():
        script.chmod(0o755)
    package = tmp / "deb" / PACKAGE
    package.parent.mkdir()
    package.write_bytes(b"the package")
    variables: dict[str, object] = {"safekit_deb_cache": str(cache), "_safekit_deb_file": str(package)}
    if preflight_read is not None:
        variables["_safekit_node"] = {"deb_package": preflight_read}
    result = run_local_play(PLAY, tmp, variables, path=f"{fake_bin}:{os.environ['PATH']}")
    return result, cache, apt_log


def changed(result: subprocess.CompletedProcess[str]) -> int:
    recap = [line for line in result.stdout.splitlines() if line.startswith("node1") and "ok=" in line]
    assert recap, result.stdout
    return int(recap[-1].split("changed=")[1].split()[0])


def test_the_installed_version_is_neither_copied_nor_installed(tmp_path: Path) -> None:
    result, cache, apt_log = deploy(tmp_path, "installed 0.2.0~~dev1-1+deb12")
    assert result.returncode == 0, result.stdout + result.stderr
    assert changed(result) == 0
    assert not cache.exists(), "the package was copied although dpkg has its version"
    assert not apt_log.exists(), "apt-get ran although dpkg has the package's version"


@pytest.mark.parametrize(
    "dpkg_says",
    [
        "",  # not installed (dpkg-query: no packages found)
        "installed 0.2.0~~dev0-1+deb12",  # another version
        "config-files 0.2.0~~dev1-1+deb12",  # removed, its configuration kept
    ],
)
def test_another_state_copies_and_installs_the_package(tmp_path: Path, dpkg_says: str) -> None:
    result, cache, apt_log = deploy(tmp_path, dpkg_says)
    assert result.returncode == 0, result.stdout + result.stderr
    assert changed(result) >= 2  # the copy and apt-get
    assert (cache / PACKAGE).read_bytes() == b"the package"
    apt_get = ["install", "--yes", "--no-install-recommends", str(cache / PACKAGE)]
    assert apt_log.read_text().split() == apt_get


def test_the_preflights_reading_is_used_without_asking_dpkg_again(tmp_path: Path) -> None:
    """After the pre-flight (a deploy), its one probe's reading decides: dpkg-query does not run again."""
    result, cache, apt_log = deploy(tmp_path, "", preflight_read="installed 0.2.0~~dev1-1+deb12")
    assert result.returncode == 0, result.stdout + result.stderr
    assert changed(result) == 0
    assert not (tmp_path / "dpkg-query.log").exists(), (
        "dpkg-query ran although the pre-flight read the version"
    )
    assert not cache.exists() and not apt_log.exists()


def test_the_preflight_reading_another_version_installs(tmp_path: Path) -> None:
    result, cache, apt_log = deploy(
        tmp_path, "installed 0.2.0~~dev1-1+deb12", preflight_read="installed 0.1.0-1+deb12"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (cache / PACKAGE).read_bytes() == b"the package"
    assert apt_log.read_text().split() == [
        "install",
        "--yes",
        "--no-install-recommends",
        str(cache / PACKAGE),
    ]
