"""The collection as users get it: `ansible-galaxy collection build`, then `install` of the tarball
into an empty path, and Ansible, seeing only that path, knows the roles, the playbooks and the
modules by their FQCN (ADR 0041). The deployment of the demo module from such an installed copy is
the first test of tests/integration/ansible/test_deploy_mirror_playbook.py (make test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from safekit_collection import COLLECTION, MODULE_NAMES, REPO

BIN = Path(sys.executable).parent
ROLES = ("arbiter", "cloud", "farm", "mirror", "node")
PLAYBOOKS = ("deploy_farm", "deploy_mirror", "failover_drill", "lab_ping", "remove", "snapshot", "upgrade")


def galaxy_meta() -> dict[str, object]:
    return dict(yaml.safe_load((COLLECTION / "galaxy.yml").read_text()))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)],
        cwd=COLLECTION,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (tarball,) = out.glob("safekit-ha-*.tar.gz")
    assert tarball.name == f"safekit-ha-{galaxy_meta()['version']}.tar.gz"
    return tarball


@pytest.fixture(scope="module")
def installed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tarball installed into an empty path; an environment in which Ansible sees only it."""
    path = tmp_path_factory.mktemp("collections")
    assert list(path.iterdir()) == []
    env = isolated_env(path, tmp_path_factory.mktemp("cwd"))
    # From this checkout, ansible-galaxy would see its collections/ and install nothing.
    done = ansible(env, "ansible-galaxy", "collection", "install", "--offline", str(built), "-p", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (path / "ansible_collections" / "safekit" / "ha" / "MANIFEST.json").is_file(), done.stdout
    return env


def isolated_env(collections: Path, empty: Path) -> dict[str, str]:
    """No ansible.cfg of this checkout, no roles path, no collection but the installed one."""
    config = f"[defaults]\ncollections_path = {collections}\nroles_path = {empty}\n"
    (empty / "ansible.cfg").write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return {
        **env,
        "ANSIBLE_CONFIG": str(empty / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_NOCOLOR": "1",
        "SAFEKIT_TEST_CWD": str(empty),
        "SAFEKIT_TEST_COLLECTIONS": str(collections),
    }


def ansible(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=env["SAFEKIT_TEST_CWD"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_tarball_carries_roles_playbooks_and_runtime_and_nothing_of_the_checkout(built: Path) -> None:
    with tarfile.open(built) as tar:
        names = set(tar.getnames())
    for role in ROLES:
        assert f"roles/{role}/tasks/main.yml" in names
        assert f"roles/{role}/meta/argument_specs.yml" in names
    for playbook in PLAYBOOKS:
        assert f"playbooks/{playbook}.yml" in names
    assert "playbooks/tasks/check_app.yml" in names
    assert "playbooks/files/webmirror/bin/start_prim" in names
    assert "playbooks/files/webfarm/bin/start_both" in names
    assert {"meta/runtime.yml", "MANIFEST.json", "FILES.json", "LICENSE", "README.md"} <= names
    assert {f"plugins/modules/{m}.py" for m in MODULE_NAMES} <= names
    for name in names:
        parts = name.split("/")
        assert not name.endswith((".tar.gz", ".pyc")), name
        assert not {"__pycache__", ".ruff_cache", "output", ".plugin-cache.yaml"} & set(parts), name
        assert name != "ruff.toml", name


def test_the_demo_module_scripts_are_those_of_the_checkouts_example() -> None:
    """deploy_mirror's web module carries its scripts (the installed collection has no checkout):
    they are examples/modules/webmirror/bin's, byte for byte."""
    example = REPO / "examples" / "modules" / "webmirror" / "bin"
    shipped = COLLECTION / "playbooks" / "files" / "webmirror" / "bin"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in example.iterdir())
    for script in example.iterdir():
        assert (shipped / script.name).read_bytes() == script.read_bytes(), script.name
        assert (shipped / script.name).stat().st_mode & 0o111, script.name


def test_ansible_sees_only_the_installed_copy(installed: dict[str, str]) -> None:
    listed = ansible(installed, "ansible-galaxy", "collection", "list", "safekit.ha")
    assert listed.returncode == 0, listed.stderr
    assert installed["SAFEKIT_TEST_COLLECTIONS"] in listed.stdout
    assert str(REPO / "collections") not in listed.stdout


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_each_playbook_is_known_by_its_fqcn(installed: dict[str, str], playbook: str) -> None:
    fqcn = f"safekit.ha.{playbook}"
    result = ansible(installed, "ansible-playbook", "--syntax-check", "-i", "localhost,", fqcn)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_playbook_of_fqcns_only_resolves_the_roles(installed: dict[str, str]) -> None:
    play = Path(installed["SAFEKIT_TEST_CWD"]) / "site.yml"
    play.write_text(
        "- name: Every role of the collection, by its FQCN\n"
        "  hosts: all\n"
        "  gather_facts: false\n"
        "  roles:\n" + "".join(f"    - safekit.ha.{role}\n" for role in ROLES)
    )
    result = ansible(installed, "ansible-playbook", "--syntax-check", "-i", "localhost,", str(play))
    assert result.returncode == 0, result.stdout + result.stderr
    # The former role names (links in the checkout's roles/ until 0.2.0) resolve nowhere.
    play.write_text(play.read_text().replace("safekit.ha.node", "safekit_node"))
    refused = ansible(installed, "ansible-playbook", "--syntax-check", "-i", "localhost,", str(play))
    assert refused.returncode != 0 and "safekit_node" in refused.stdout + refused.stderr


def test_ansible_doc_documents_the_installed_roles_and_modules(installed: dict[str, str]) -> None:
    roles = ansible(installed, "ansible-doc", "-t", "role", "-l", "safekit.ha")
    assert roles.returncode == 0, roles.stderr
    assert {f"safekit.ha.{role}" for role in ROLES} <= {
        line.rstrip(":") for line in roles.stdout.splitlines() if line.startswith("safekit.ha.")
    }
    mirror = ansible(installed, "ansible-doc", "-t", "role", "safekit.ha.mirror")
    assert mirror.returncode == 0 and "safekit_module" in mirror.stdout, mirror.stderr
    for name in MODULE_NAMES:
        doc = ansible(installed, "ansible-doc", f"safekit.ha.{name}")
        assert doc.returncode == 0 and "EXAMPLES" in doc.stdout, (name, doc.stderr)
    # the former names (ADR 0057), removed in 0.3.0, name the module to use from the tarball too
    for old, new in {"install": "engine", "module": "app_module", "info": "node_info"}.items():
        doc = ansible(installed, "ansible-doc", f"safekit.ha.{old}")
        said = " ".join((doc.stdout + doc.stderr).split())
        assert doc.returncode != 0 and f"Use safekit.ha.{new} instead" in said, (old, said)


def test_the_playbooks_files_are_inside_the_collection() -> None:
    """A task file or script a playbook reads by a relative path is found beside it (Ansible looks
    in the playbook's directory and its files/), so the installed copy has it too."""
    playbooks = COLLECTION / "playbooks"
    seen = 0
    for path in sorted(playbooks.glob("*.yml")):
        text = path.read_text()
        for tasks in re.findall(r"(?:include|import)_tasks: (\S+)", text):
            assert (playbooks / tasks).is_file(), (path.name, tasks)
            seen += 1
        for script in re.findall(r"lookup\('ansible\.builtin\.file', '([^']+)'\)", text):
            assert (playbooks / "files" / script).is_file(), (path.name, script)
            seen += 1
        assert "playbook_dir" not in text, path.name  # the checkout is not there once installed
    assert seen >= 11


def run_installed_deploy(installed: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    """safekit.ha.deploy_mirror from the installed copy, one node: this machine (no ssh, no sudo),
    as far as the pre-flight; the extra vars as -e."""
    cwd = Path(installed["SAFEKIT_TEST_CWD"])
    inventory = cwd / "inventory.yml"
    node = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "safekit_addresses": {"default": "198.18.255.1"},
    }
    inventory.write_text(yaml.safe_dump({"safekit_nodes": {"hosts": {"tk-node": node}}}))
    argv = ["ansible-playbook", "-i", str(inventory), "safekit.ha.deploy_mirror"]
    for name, value in extra.items():
        argv += ["-e", f"{name}={value}"]
    return ansible(installed, *argv)


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of the failed assertion (Ansible prints its msg as JSON)."""
    messages = re.findall(r'"msg": "((?:[^"\\]|\\.)*)"', result.stdout)
    assert result.returncode != 0 and messages, result.stdout + result.stderr
    return str(messages[-1])


def installed_collection(installed: dict[str, str]) -> Path:
    return Path(installed["SAFEKIT_TEST_COLLECTIONS"]) / "ansible_collections" / "safekit" / "ha"


def test_the_installed_copy_refuses_a_cluster_key_inside_itself(
    installed: dict[str, str], tmp_path: Path
) -> None:
    """Without safekit_key_file the key would be generated in the installed collection (the next
    install would wipe it, ADR 0041): the pre-flight says what to set, before any change."""
    collection = installed_collection(installed)
    before = sorted(collection.rglob("*"))
    # the package from an empty directory: whatever happened after the pre-flight, nothing installs here
    result = run_installed_deploy(installed, safekit_install_source="deb", safekit_deb_dir=str(tmp_path))
    line = refusal(result)
    assert "safekit_key_file would be kept inside the collection safekit.ha" in line, line
    assert f"({collection})" in line and "set safekit_key_file to a path of your own" in line, line
    assert "\\n" not in line, line  # one line
    assert sorted(collection.rglob("*")) == before  # no .safekit/, no key, nothing else
    assert "Generate the cluster key" not in result.stdout


def test_the_installed_copy_refuses_a_wheelhouse_without_the_engines_source(
    installed: dict[str, str], tmp_path: Path
) -> None:
    """With the key given and the engine from a wheelhouse, the source tree is the checkout's, which an
    installed copy does not have: refused with what to set, before the build and before the key."""
    collection = installed_collection(installed)
    before = sorted(collection.rglob("*"))
    key = tmp_path / "keys" / "cluster.key"
    result = run_installed_deploy(installed, safekit_key_file=str(key), safekit_install_source="wheelhouse")
    line = refusal(result)
    assert f"safekit_project_root ({collection}) has no pyproject.toml" in line, line
    assert "set safekit_project_root to a safekit checkout, or safekit_deb_dir" in line, line
    assert "Pre-flight - the node's Python" not in result.stdout  # stopped at the first controller check
    assert not key.exists() and not key.parent.exists()
    assert sorted(collection.rglob("*")) == before
