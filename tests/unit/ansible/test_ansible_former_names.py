"""The modules' 0.1.0 names (install, module, command, info) were deprecated redirects in 0.2.0 and
are removed in 0.3.0 (ADR 0057): a task naming install, module or info fails at parse time with a
message naming the module to use (a tombstone in meta/runtime.yml); `command` has no entry at all,
so that a bare `command:` under the `collections` keyword is ansible.builtin.command; no module is
named like an ansible.builtin one."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from safekit_collection import COLLECTION, ENGINE_BIN, MODULE_NAMES, MODULES, run_local_play

RUNTIME = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
RENAMED = {
    "install": "engine",
    "module": "app_module",
    "command": "app_module_command",
    "info": "node_info",
}
# A task naming a former name, alone in its play (the play fails while it is parsed).
FORMER = """
- name: A former module name
  hosts: node1
  gather_facts: false
  tasks:
    - name: Former {old}
      safekit.ha.{old}: {{}}
"""

# A play listing the collection: bare names are the builtins or the new modules.
BARE_NAMES = """
- name: Bare names under the collections keyword
  hosts: node1
  gather_facts: false
  collections: [safekit.ha]
  module_defaults:
    group/safekit.ha.safekit:
      engine_bin: "{{ engine_bin }}"
  tasks:
    - name: Bare command
      command: echo bare
      register: bare_command
      changed_when: false
    - name: Bare node_info
      node_info:
      register: bare_info
      environment: "{{ node_env }}"
    - name: Record
      ansible.builtin.copy:
        content: "{{ {'command': bare_command, 'info': bare_info} | to_json }}"
        dest: "{{ tmp }}/results.json"
        mode: "0600"
"""


def node_env(tmp: Path) -> dict[str, str]:
    """The engine's paths moved into tmp (no daemon to ask)."""
    names = {
        "SAFE": "opt",
        "SAFEKIT_CONF": "etc",
        "SAFEVAR": "var",
        "SAFEKIT_LOG": "log",
        "SAFEKIT_RUN": "run",
    }
    return {variable: str(tmp / where) for variable, where in names.items()}


def run(text: str, tmp: Path) -> tuple[int, str]:
    """Run it: its exit code and output (whitespace folded, as Ansible may wrap messages)."""
    variables = {"tmp": str(tmp), "node_env": node_env(tmp), "engine_bin": str(ENGINE_BIN)}
    done = run_local_play(text, tmp, variables)
    return done.returncode, " ".join((done.stdout + done.stderr).split())


@pytest.mark.parametrize("old", ["install", "module", "info"])
def test_a_removed_name_fails_the_play_naming_the_module_to_use(tmp_path: Path, old: str) -> None:
    code, output = run(FORMER.format(old=old), tmp_path)
    assert code != 0
    new = RENAMED[old]
    assert f"The 'safekit.ha.{old}' module has been removed. Use safekit.ha.{new} instead" in output, output[
        -2000:
    ]
    assert "removed from collection 'safekit.ha' version 0.3.0" in output


def test_the_former_command_is_unknown(tmp_path: Path) -> None:
    code, output = run(FORMER.format(old="command"), tmp_path)
    assert code != 0
    assert "couldn't resolve module/action 'safekit.ha.command'" in output, output[-2000:]


def test_bare_names_under_the_collections_keyword(tmp_path: Path) -> None:
    code, output = run(BARE_NAMES, tmp_path)
    assert code == 0, output[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    # ansible.builtin.command ran, not a module of the collection, and nothing warns of one
    assert results["command"]["stdout"] == "bare" and results["command"]["rc"] == 0
    assert "safekit.ha.command" not in output
    # node_info, with the group's engine_bin from module_defaults
    assert results["info"]["version"] and results["info"]["daemon_running"] is False


def builtin_modules() -> set[str]:
    spec = importlib.util.find_spec("ansible.modules")
    assert spec is not None and spec.submodule_search_locations
    (where,) = spec.submodule_search_locations
    return {path.stem for path in Path(where).glob("*.py") if path.stem != "__init__"}


def test_no_module_is_named_like_a_builtin_and_each_former_name_is_removed() -> None:
    builtins = builtin_modules()
    assert {"command", "copy", "service"} <= builtins
    assert set(MODULE_NAMES) == {path.stem for path in MODULES.glob("*.py")}
    assert not set(MODULE_NAMES) & builtins
    routing = RUNTIME["plugin_routing"]["modules"]
    assert set(routing) == set(RENAMED) - {"command"}  # a tombstone named command would catch a bare one
    for old, new in RENAMED.items():
        assert not (MODULES / f"{old}.py").exists()
        if old == "command":
            continue
        tombstone = routing[old]["tombstone"]
        assert "redirect" not in routing[old] and new in MODULE_NAMES
        assert f"Use safekit.ha.{new} instead" in tombstone["warning_text"]
        assert tombstone["removal_version"] == "0.3.0"
    assert not set(RUNTIME["action_groups"]["safekit"]) & set(RENAMED)


@pytest.mark.parametrize("name", sorted(RENAMED.values()))
def test_a_renamed_module_is_documented_under_its_new_name_since_its_first_release(name: str) -> None:
    plugin = importlib.import_module(f"ansible_collections.safekit.ha.plugins.modules.{name}")
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    assert doc["module"] == name
    assert doc["version_added"] == "0.1.0"  # the module is 0.1.0's, renamed
    tasks = yaml.safe_load(plugin.EXAMPLES)
    assert any(f"safekit.ha.{name}" in task for task in tasks)
    former = {f"safekit.ha.{old}" for old in RENAMED}
    assert not any(former & set(task) for task in tasks)
