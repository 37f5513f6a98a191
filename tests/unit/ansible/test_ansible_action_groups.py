"""meta/runtime.yml's action group: `module_defaults: {group/safekit.ha.safekit: {engine_bin: ...}}`
sets the engine's place once for every module that runs it, as ansible-playbook applies it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import yaml
from safekit_collection import COLLECTION, COLLECTIONS, ENGINE_BIN, MODULE_NAMES

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.safekit import ENGINE_ARGUMENT_SPEC

from safekit import __version__

RUNTIME = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())


def test_the_group_is_every_module_that_takes_engine_bin() -> None:
    takes_engine_bin = set()
    for name in MODULE_NAMES:
        plugin = importlib.import_module(f"ansible_collections.safekit.ha.plugins.modules.{name}")
        documented = yaml.safe_load(plugin.DOCUMENTATION)["options"]
        if "engine_bin" in documented:
            assert documented["engine_bin"]["default"] == ENGINE_ARGUMENT_SPEC["engine_bin"]["default"]
            takes_engine_bin.add(name)
    assert set(RUNTIME["action_groups"]["safekit"]) == takes_engine_bin
    assert takes_engine_bin == {"cluster", "app_module", "app_module_command", "node_info"}


def test_module_defaults_of_the_group_reach_the_modules(tmp_path: Path) -> None:
    playbook = tmp_path / "defaults.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "module_defaults by group",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "module_defaults": {"group/safekit.ha.safekit": {"engine_bin": str(ENGINE_BIN)}},
                    "tasks": [
                        {"name": "from the group", "safekit.ha.node_info": {}, "register": "grouped"},
                        {
                            "name": "overridden by the task",
                            "safekit.ha.node_info": {"engine_bin": str(tmp_path / "none")},
                            "register": "overridden",
                        },
                        {
                            "name": "record",
                            "ansible.builtin.copy": {
                                "content": "{{ {'grouped': grouped.version, 'overridden': overridden.version}"
                                " | to_json }}",
                                "dest": str(tmp_path / "versions.json"),
                                "mode": "0600",
                            },
                        },
                    ],
                }
            ]
        )
    )
    environment = {
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "SAFEKIT_RUN": str(tmp_path / "run"),  # no daemon to ask
        "SAFE": str(tmp_path / "opt"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions == {"grouped": __version__, "overridden": None}
