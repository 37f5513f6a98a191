"""The modules' 0.1.0 names (install, module, command, info) are deprecated redirects in
meta/runtime.yml for one release (ADR 0057): a play that still uses them runs the renamed modules
and says, once per name, which name to use instead; no module is named like an ansible.builtin one,
so a bare name under the `collections` keyword is the builtin."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

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
WEB = {
    "heartbeats": [{"name": "default", "pulse": "50ms", "timeout": "200ms"}],
    "vip": [{"addr": "198.18.0.100", "netmask": "24"}],
}

# Each former name, then its new one, with the same arguments; every result recorded.
FORMER_AND_NEW = """
- name: The modules' former names and their new ones
  hosts: node1
  gather_facts: false
  environment: "{{ node_env }}"
  module_defaults:
    group/safekit.ha.safekit:
      engine_bin: "{{ engine_bin }}"
  tasks:
    - name: Former install
      safekit.ha.install: {venv: "{{ tmp }}/venv", service: none, state: absent}
      register: old_install
    - name: New engine
      safekit.ha.engine: {venv: "{{ tmp }}/venv", service: none, state: absent}
      register: new_install
    - name: Former module writes the module
      safekit.ha.module: "{{ web }}"
      register: old_module
    - name: New app_module finds it written
      safekit.ha.app_module: "{{ web }}"
      register: new_module
    - name: Former info
      safekit.ha.info: {name: web}
      register: old_info
    - name: New node_info
      safekit.ha.node_info: {name: web}
      register: new_info
    - name: Former command
      safekit.ha.command: {name: web, command: prim}
      register: old_command
      failed_when: false
    - name: New app_module_command
      safekit.ha.app_module_command: {name: web, command: prim}
      register: new_command
      failed_when: false
    - name: Record
      ansible.builtin.copy:
        content: >-
          {{ {'install': [old_install, new_install], 'module': [old_module, new_module],
              'info': [old_info, new_info], 'command': [old_command, new_command]} | to_json }}
        dest: "{{ tmp }}/results.json"
        mode: "0600"
"""

# A play listing the collection: bare names are the builtins or the new modules; module_defaults
# keyed by a former name reach a task that uses the new one.
BARE_NAMES = """
- name: Bare names under the collections keyword
  hosts: node1
  gather_facts: false
  collections: [safekit.ha]
  module_defaults:
    safekit.ha.info:
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


def play(text: str, tmp: Path) -> tuple[str, dict[str, Any]]:
    """Run it; its output (whitespace folded, as Ansible may wrap warnings) and recorded results."""
    variables = {
        "tmp": str(tmp),
        "node_env": node_env(tmp),
        "engine_bin": str(ENGINE_BIN),
        "web": {"name": "web", **WEB},
    }
    done = run_local_play(text, tmp, variables)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return output, json.loads((tmp / "results.json").read_text())


def test_a_play_using_the_former_names_runs_the_renamed_modules_and_warns(tmp_path: Path) -> None:
    output, results = play(FORMER_AND_NEW, tmp_path)
    for old, new in RENAMED.items():
        warning = f"[DEPRECATION WARNING]: safekit.ha.{old} has been deprecated. Use safekit.ha.{new} instead"
        assert output.count(warning) == 1, (old, output[-3000:])
        assert "removed from collection 'safekit.ha' version 0.3.0" in output
    old_install, new_install = results["install"]
    assert not old_install["changed"] and not new_install["changed"]
    assert old_install["version_before"] is None and new_install["version_before"] is None
    # the former name wrote the module, the new one finds it as written: the same module
    old_module, new_module = results["module"]
    assert old_module["changed"] and not new_module["changed"], (old_module, new_module)
    assert (tmp_path / "opt" / "modules" / "web" / "conf" / "userconfig.xml").read_text() == old_module[
        "userconfig"
    ]
    old_info, new_info = results["info"]
    assert old_info["modules"] == new_info["modules"]
    assert old_info["modules"][0]["params"]["vip"] == WEB["vip"]
    old_command, new_command = results["command"]
    assert "safekitd is not running" in old_command["msg"]
    assert old_command["msg"] == new_command["msg"]


def test_bare_names_under_the_collections_keyword(tmp_path: Path) -> None:
    output, results = play(BARE_NAMES, tmp_path)
    # ansible.builtin.command ran, not a module of the collection
    assert results["command"]["stdout"] == "bare" and results["command"]["rc"] == 0
    # node_info, with the engine_bin given to the former name in module_defaults
    assert results["info"]["version"] and results["info"]["daemon_running"] is False
    # Until 0.3.0 the former safekit.ha.command is still found for a bare 'command' (its warning
    # says to name ansible.builtin.command); the new names warn of nothing.
    assert "safekit.ha.node_info has been deprecated" not in output


def builtin_modules() -> set[str]:
    spec = importlib.util.find_spec("ansible.modules")
    assert spec is not None and spec.submodule_search_locations
    (where,) = spec.submodule_search_locations
    return {path.stem for path in Path(where).glob("*.py") if path.stem != "__init__"}


def test_no_module_is_named_like_a_builtin_and_each_former_name_redirects() -> None:
    builtins = builtin_modules()
    assert {"command", "copy", "service"} <= builtins
    assert set(MODULE_NAMES) == {path.stem for path in MODULES.glob("*.py")}
    assert not set(MODULE_NAMES) & builtins
    routing = RUNTIME["plugin_routing"]["modules"]
    assert set(routing) == set(RENAMED)
    for old, new in RENAMED.items():
        assert not (MODULES / f"{old}.py").exists()
        assert routing[old]["redirect"] == f"safekit.ha.{new}" and new in MODULE_NAMES
        deprecation = routing[old]["deprecation"]
        assert f"Use safekit.ha.{new} instead" in deprecation["warning_text"]
        assert deprecation["removal_version"] == "0.3.0"
    # the group lists the modules; a task with a former name is resolved to one of them first
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
