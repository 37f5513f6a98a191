"""Privileges as the playbooks and roles take them: root on the nodes, never on the controller.

A task run on the controller (`delegate_to: localhost`: the wheel build, the cluster key) says
`become: false`, so an inventory or play that becomes root cannot make it run under sudo on the
operator's machine; the plays on the nodes become root themselves unless ssh logs in as root, and
no inventory shipped here becomes root for every host. Key generation on the controller needs no
engine there (safekit.ha.cluster_key, not the `safekit` command next to ansible-playbook's Python).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COLLECTION = "collections/ansible_collections/safekit/ha"
# The collection's roles and playbooks, the top-level playbooks (pointers to them, and the
# examples) and the Molecule scenarios.
YAML_DIRS = (f"{COLLECTION}/roles", f"{COLLECTION}/playbooks", "playbooks", "molecule")
NESTED = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")
NODE_BECOME = "{{ safekit_become | default((ansible_user | default('root')) != 'root') }}"


def yaml_files() -> list[Path]:
    files: list[Path] = []
    for top in YAML_DIRS:
        files += [p for p in sorted((REPO / top).rglob("*.yml")) if not p.is_symlink()]
    return files


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def entries(items: Any) -> Iterator[dict[str, Any]]:
    """Every play, block and task of a playbook or task file, depth first."""
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        yield item
        for key in NESTED:
            yield from entries(item.get(key))


def task_files() -> list[Path]:
    return [p for p in yaml_files() if isinstance(load(p), list)]


@pytest.mark.parametrize("path", task_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_controller_side_tasks_never_become(path: Path) -> None:
    for entry in entries(load(path)):
        if entry.get("delegate_to") == "localhost":
            assert entry.get("become") is False, (path, entry.get("name"))
        assert entry.get("become") is not True, (path, entry.get("name"))  # never root unconditionally


def test_the_plays_on_the_nodes_become_root_unless_ssh_is_root() -> None:
    plays = 0
    for path in task_files():
        for play in load(path):
            hosts = play.get("hosts") if isinstance(play, dict) else None
            if hosts is None or hosts in ("localhost", "all"):
                continue
            plays += 1
            assert play.get("become") == NODE_BECOME, (path, play.get("name"))
    assert plays > 20


def test_no_inventory_becomes_root_for_every_host() -> None:
    setting = re.compile(r"^\s*ansible_become\w*\s*[:=]", re.MULTILINE)
    for path in (REPO / "playbooks").rglob("*.yml"):
        assert not setting.search(path.read_text()), path
    for path in (REPO / "terraform").rglob("*"):
        if path.suffix in (".tf", ".tftpl"):
            assert not setting.search(path.read_text()), path


def test_the_controller_needs_no_engine_for_the_keys() -> None:
    roles = list((REPO / COLLECTION / "roles").rglob("*.yml"))
    assert len(roles) > 20, roles
    for path in roles:
        text = path.read_text()
        assert "dirname }}/safekit" not in text, path
        assert "cluster genkey" not in text and "arbiter key --" not in text, path
