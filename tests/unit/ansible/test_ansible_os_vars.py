"""The safekit.ha.node role's per-OS variables (roles/node/vars, loaded by tasks/os_vars.yml, first in
the pre-flight): every file defines every __safekit_ name the roles use; ansible-playbook itself picks
the file for a node's distribution facts (the first of DISTRIBUTION-MAJOR.yml, OS_FAMILY-MAJOR.yml,
default.yml), the facts of Debian 12, Debian 13, the RHEL 9 family, Ubuntu and others set on hosts of
this machine (set_fact cacheable: what the setup module would have gathered); the pre-flight stops in
one line on an OS without a file, names python3.11 on the RHEL 9 family when it is missing, and `auto`
never picks the Debian package there. No RHEL host here: what a real deployment on EL 9 does is not
tested (docs/install.md, "Per-OS variables")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from safekit_collection import COLLECTION, ENGINE_BIN, REPO, local_play_env

ROLES = COLLECTION / "roles"
VARS = ROLES / "node" / "vars"
NAME = re.compile(r"\b__safekit_[a-z0-9_]+")

# inventory host -> the distribution facts the setup module gives such a node
# (distribution, distribution_major_version, os_family), and the file that must be picked
OSES: dict[str, tuple[tuple[str, str, str], str]] = {
    "debian12": (("Debian", "12", "Debian"), "Debian-12.yml"),
    "debian13": (("Debian", "13", "Debian"), "Debian-13.yml"),
    "rocky9": (("Rocky", "9", "RedHat"), "RedHat-9.yml"),
    "alma9": (("AlmaLinux", "9", "RedHat"), "RedHat-9.yml"),
    "rhel9": (("RedHat", "9", "RedHat"), "RedHat-9.yml"),
    "ubuntu24": (("Ubuntu", "24", "Debian"), "default.yml"),
    "debian11": (("Debian", "11", "Debian"), "default.yml"),
    "rocky8": (("Rocky", "8", "RedHat"), "default.yml"),
    "fedora41": (("Fedora", "41", "RedHat"), "default.yml"),
}

SET_OS = """
    - name: The OS this host stands for, as the setup module would have gathered it
      ansible.builtin.set_fact:
        distribution: "{{ oses[inventory_hostname][0] }}"
        distribution_major_version: "{{ oses[inventory_hostname][1] }}"
        os_family: "{{ oses[inventory_hostname][2] }}"
        cacheable: true
      when: inventory_hostname in oses
"""

SELECT = f"""
- hosts: all
  gather_facts: false
  tasks:{SET_OS}
    - ansible.builtin.include_role:
        name: safekit.ha.node
        tasks_from: os_vars
    - ansible.builtin.copy:
        content: >-
          {{{{ {{'files': _safekit_os_vars_loaded.ansible_included_var_files | map('basename') | list,
              'facts': [ansible_facts.distribution, ansible_facts.distribution_major_version,
                        ansible_facts.os_family],
              'supported': __safekit_os_supported, 'python': __safekit_python,
              'packages': __safekit_node_packages, 'sources': __safekit_install_sources}} | to_json }}}}
        dest: "{{{{ out }}}}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
"""

PREFLIGHT = f"""
- hosts: all
  gather_facts: false
  tasks:{SET_OS}
    - ansible.builtin.include_role:
        name: safekit.ha.node
        tasks_from: preflight
    - ansible.builtin.copy:
        content: >-
          {{{{ {{'node': _safekit_node, 'source': safekit_engine_source,
              'reason': _safekit_source_reason}} | to_json }}}}
        dest: "{{{{ out }}}}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
"""


def play(
    text: str,
    tmp: Path,
    oses: dict[str, tuple[str, str, str] | None],
    variables: dict[str, Any],
    *,
    path: str | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """ansible-playbook of `text` against this machine as the hosts of `oses` (local connection,
    this interpreter, as safekit_collection.run_local_play), each with those distribution facts
    (None: none set, the role gathers this machine's); each host's JSON written to out/HOST.json."""
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    (tmp / "play.yml").write_text(text)
    env = local_play_env(path)
    facts = {host: list(os_facts) for host, os_facts in oses.items() if os_facts is not None}
    extra = {"out": str(out), "oses": facts, "safekit_project_root": str(REPO), **variables}
    command = [str(ENGINE_BIN / "ansible-playbook"), "-i", ",".join(oses) + ",", "-c", "local"]
    result = subprocess.run(
        [*command, "-e", json.dumps(extra), str(tmp / "play.yml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return result, {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The failed assert's message (the one line the operator reads)."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if '"msg":' in line]
    assert lines, result.stdout
    return lines[-1].split('"msg":', 1)[1].strip().strip('"}')


def os_release() -> dict[str, str]:
    text = Path("/etc/os-release").read_text()
    return {k: v.strip('"') for k, v in (line.split("=", 1) for line in text.splitlines() if "=" in line)}


def python_shim(tmp: Path, body: str) -> str:
    """A PATH whose python3.11 is `body` (a shell script's), before this machine's."""
    shims = tmp / "bin"
    shims.mkdir(exist_ok=True)
    shim = shims / "python3.11"
    shim.write_text(f"#!/bin/sh\n{body}\n")
    shim.chmod(0o755)
    return f"{shims}{os.pathsep}{os.environ['PATH']}"


# --- the files ---------------------------------------------------------------------------------


def vars_files() -> dict[str, dict[str, Any]]:
    files = {p.name: yaml.safe_load(p.read_text()) for p in sorted(VARS.glob("*.yml"))}
    assert {"Debian-12.yml", "Debian-13.yml", "RedHat-9.yml", "default.yml"} <= set(files)
    return files


def names_used() -> set[str]:
    """Every __safekit_ name in the roles' tasks, templates and defaults (not in vars/ itself)."""
    used: set[str] = set()
    for path in ROLES.rglob("*"):
        if path.is_file() and path.parent != VARS and path.suffix in {".yml", ".j2"}:
            used |= set(NAME.findall(path.read_text()))
    return used


def test_every_vars_file_defines_every_name_the_roles_use_and_no_other() -> None:
    used = names_used()
    assert {"__safekit_python", "__safekit_node_packages", "__safekit_install_sources"} <= used
    for name, content in vars_files().items():
        assert isinstance(content, dict), name
        assert set(content) == used, f"{name}: missing {used - set(content)}, unused {set(content) - used}"
        assert all(key.startswith("__safekit_") for key in content), name


def test_the_files_say_what_differs_between_the_oses() -> None:
    files = vars_files()
    debian12, debian13, el9, default = (
        files[n] for n in ("Debian-12.yml", "Debian-13.yml", "RedHat-9.yml", "default.yml")
    )
    # Debian: what the role did before the per-OS files, unchanged
    for debian in (debian12, debian13):
        assert debian["__safekit_python"] == "python3" and debian["__safekit_node_packages"] == ["fuse3"]
        assert (
            debian["__safekit_install_sources"] == ["deb", "wheelhouse"]
            and debian["__safekit_os_supported"] is True
        )
    assert (debian12["__safekit_deb_make"], debian13["__safekit_deb_make"]) == (
        "make deb",
        "make deb DEB_SUITE=trixie",
    )
    # EL 9: python3 is 3.9, the engine's Python is python3.11; no Debian package
    assert el9["__safekit_python"] == "python3.11" and el9["__safekit_install_sources"] == ["wheelhouse"]
    assert {"fuse3", "fuse3-libs"} <= set(el9["__safekit_node_packages"]) and el9[
        "__safekit_os_supported"
    ] is True
    assert default["__safekit_os_supported"] is False


# --- the choice of the file, by ansible-playbook ------------------------------------------------


def test_first_found_picks_the_file_of_each_os(tmp_path: Path) -> None:
    """One run, a host per OS, plus this machine with the facts the role gathers itself
    (gather_facts: false) and a host of an OS without a file given the user's own
    (safekit_os_vars_file): each gets its file's values."""
    files = vars_files()
    own = tmp_path / "alpine.yml"
    own.write_text(yaml.safe_dump({**files["RedHat-9.yml"], "__safekit_python": "python3.12"}))
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "alpine3.yml").write_text(yaml.safe_dump({"safekit_os_vars_file": str(own)}))
    oses: dict[str, tuple[str, str, str] | None] = {host: facts for host, (facts, _) in OSES.items()}
    result, seen = play(SELECT, tmp_path, {**oses, "this": None, "alpine3": ("Alpine", "3", "Alpine")}, {})
    assert result.returncode == 0, result.stdout + result.stderr
    for host, (facts, wanted) in OSES.items():
        assert seen[host]["facts"] == list(facts), host
        assert seen[host]["files"] == [wanted], host
        values = files[wanted]
        assert seen[host]["supported"] == values["__safekit_os_supported"], host
        assert seen[host]["python"] == values["__safekit_python"], host
        assert seen[host]["packages"] == values["__safekit_node_packages"], host
        assert seen[host]["sources"] == values["__safekit_install_sources"], host
    # this machine's own facts, gathered by the role (distribution subset only)
    release = os_release()
    debian = release.get("ID") == "debian" and release.get("VERSION_ID") in ("12", "13")
    assert seen["this"]["files"] == [f"Debian-{release['VERSION_ID']}.yml" if debian else "default.yml"]
    assert seen["this"]["facts"][1] == release.get("VERSION_ID", "").split(".")[0]
    # the user's file, for an OS the role has none for
    assert seen["alpine3"]["files"] == ["alpine.yml"]
    assert (seen["alpine3"]["python"], seen["alpine3"]["supported"]) == ("python3.12", True)


# --- the pre-flight on those OSes (read-only against this machine) ------------------------------


def test_an_os_without_a_file_stops_the_preflight_in_one_line(tmp_path: Path) -> None:
    result, seen = play(PREFLIGHT, tmp_path, {"ubuntu24": OSES["ubuntu24"][0]}, {})
    assert failure(result) == (
        "ubuntu24: safekit.ha.node has no per-OS variables for Ubuntu 24 (os_family Debian), only for "
        "Debian 12 and 13 and the RHEL 9 family: set safekit_os_vars_file to your copy of "
        f"{VARS}/Debian-13.yml or RedHat-9.yml adapted to it (docs/install.md, Per-OS variables)"
    )
    assert not seen  # stopped before the install source was chosen


def test_el9_without_python311_says_what_to_install_or_set(tmp_path: Path) -> None:
    """The RHEL 9 family's python3 is 3.9: the engine's Python there is python3.11, which this node
    lacks (a python3.11 on PATH that is not there: exit 127, as the shell's command not found)."""
    path = python_shim(tmp_path, "exit 127")
    result, _ = play(PREFLIGHT, tmp_path, {"rocky9": OSES["rocky9"][0]}, {}, path=path)
    assert failure(result) == (
        "rocky9: the engine needs Python 3.11 or newer, the node's python3.11 is none "
        "(dnf install python3.11 (AppStream), or set safekit_node_python to a Python 3.11 or newer)"
    )


def test_auto_never_picks_the_debian_package_on_el9(tmp_path: Path) -> None:
    """The package for this machine's release built and auto allowed on it: a Rocky 9 node still
    gets the wheelhouse, for that reason (not the rule of the system running Ansible, which comes
    later), and its Python is python3.11 (here a stand-in for this interpreter)."""
    release = os_release().get("VERSION_ID", "12")
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=False)
    debs = tmp_path / "deb"
    debs.mkdir()
    (debs / f"safekit_0.2.0-1+deb{release}_{arch.stdout.strip() or 'amd64'}.deb").write_bytes(b"")
    path = python_shim(tmp_path, f'exec {sys.executable} "$@"')
    variables = {"safekit_deb_dir": str(debs), "safekit_deb_auto_releases": [release]}
    result, seen = play(PREFLIGHT, tmp_path, {"rocky9": OSES["rocky9"][0]}, variables, path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert seen["rocky9"]["source"] == "wheelhouse"
    assert seen["rocky9"]["reason"] == (
        "auto, no Debian package for Rocky 9 (os_family RedHat): the engine comes from a wheelhouse there"
    )
    assert seen["rocky9"]["node"]["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_an_explicit_deb_source_on_el9_is_refused(tmp_path: Path) -> None:
    """safekit_install_source: deb on a Rocky 9 node: refused by the per-OS check, first (the probe
    reads this machine's os-release, Debian's: the facts' OS decides)."""
    result, seen = play(PREFLIGHT, tmp_path, {"rocky9": OSES["rocky9"][0]}, {"safekit_install_source": "deb"})
    assert failure(result) == (
        "rocky9: there is no Debian package for Rocky 9 (os_family RedHat): use safekit_install_source: "
        "wheelhouse (or auto)"
    )
    assert seen == {}
