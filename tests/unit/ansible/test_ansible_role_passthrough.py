"""The mirror role passes every mirror parameter of safekit.ha.app_module from `safekit_module`, and
refuses a key it would not pass (a silently dropped `replication` would deploy a module that
replicates nothing)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from safekit_collection import COLLECTION

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.userconfig import FARM_ONLY, MIRROR_ONLY
from ansible_collections.safekit.ha.plugins.modules import app_module as module_plugin

TASKS = COLLECTION / "roles" / "mirror" / "tasks" / "main.yml"


def tasks(path: Path) -> list[dict[str, object]]:
    return list(yaml.safe_load(path.read_text()))


def test_every_mirror_parameter_is_passed_and_only_those_are_accepted() -> None:
    mirror_params = set(module_plugin.STRUCTURED) - set(FARM_ONLY) | {"userconfig"}
    module_task = next(t for t in tasks(TASKS) if "safekit.ha.app_module" in t)
    args = module_task["safekit.ha.app_module"]
    assert isinstance(args, dict)
    passed = {key for key, value in args.items() if f"safekit_module.{key} " in str(value)}
    assert passed == mirror_params
    guard = next(t for t in tasks(TASKS) if str(t["name"]).startswith("Every key of safekit_module"))
    accepted = set(re.findall(r"'(\w+)'", str(guard["vars"]["_safekit_unknown"])))
    assert accepted == mirror_params


def test_the_farm_role_passes_every_farm_parameter() -> None:
    farm_params = set(module_plugin.STRUCTURED) - set(MIRROR_ONLY) | {"userconfig"}
    path = COLLECTION / "roles" / "farm" / "tasks" / "main.yml"
    args = next(t for t in tasks(path) if "safekit.ha.app_module" in t)["safekit.ha.app_module"]
    assert isinstance(args, dict)
    assert {key for key, value in args.items() if f"safekit_farm_params.{key} " in str(value)} == farm_params
