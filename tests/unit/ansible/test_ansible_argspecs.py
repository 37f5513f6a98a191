"""Each module's documentation is its argument spec: same options, types, choices, defaults,
required, down to suboptions; and declares the check_mode, diff_mode and idempotent attributes."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest
import yaml
from safekit_collection import MODULE_NAMES

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.safekit import ENGINE_ARGUMENT_SPEC

SUPPORT = {"full", "partial", "none", "N/A"}


def plugin(name: str) -> ModuleType:
    return importlib.import_module(f"ansible_collections.safekit.ha.plugins.modules.{name}")


# Modules that run without the engine (cluster_key: on the controller; wheelhouse: either side).
ENGINE_FREE = {"engine", "cluster_key", "wheelhouse"}


def full_spec(module: ModuleType, name: str) -> dict[str, Any]:
    return module.ARGUMENT_SPEC if name in ENGINE_FREE else {**ENGINE_ARGUMENT_SPEC, **module.ARGUMENT_SPEC}


def compare(doc: dict[str, Any], spec: dict[str, Any], where: str) -> None:
    assert set(doc) == set(spec), where
    for option, want in spec.items():
        here = f"{where}.{option}"
        documented = doc[option]
        assert documented.get("description"), here
        assert documented.get("type", "str") == want.get("type", "str"), here
        assert documented.get("elements") == want.get("elements"), here
        assert documented.get("choices") == want.get("choices"), here
        assert documented.get("default") == want.get("default"), here
        assert bool(documented.get("required")) == bool(want.get("required")), here
        if "options" in want:
            compare(documented["suboptions"], want["options"], here)
        else:
            assert "suboptions" not in documented, here


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_documented_options_are_the_argument_spec(name: str) -> None:
    module = plugin(name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == name
    assert doc["short_description"] and doc["description"] and doc["version_added"]
    compare(doc["options"], full_spec(module, name), name)


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_attributes_declare_check_diff_and_idempotence(name: str) -> None:
    attributes = yaml.safe_load(plugin(name).DOCUMENTATION)["attributes"]
    assert {"check_mode", "diff_mode", "idempotent"} <= set(attributes)
    for attribute in attributes.values():
        assert attribute["support"] in SUPPORT and attribute["description"]


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_examples_use_documented_options_and_return_is_documented(name: str) -> None:
    module = plugin(name)
    options = set(full_spec(module, name))
    for task in yaml.safe_load(module.EXAMPLES):
        args = task.get(f"safekit.ha.{name}")
        if args is not None:
            assert set(args) <= options, task["name"]
    returned = yaml.safe_load(module.RETURN)
    assert "changed" in returned or name == "node_info"
    assert all(value["description"] and value["returned"] for value in returned.values())
