"""A variable the three stacks share means the same on every cloud: identical type, default,
nullable/sensitive and validation (python-hcl2's reading of variables.tf), so that one tfvars or
one module call works the same on AWS, Azure and GCP. The only freedom is an error message's
example, `(e.g. ...)`, which names an address of that cloud's own network. The shared hand-off
module (ADR 0040) takes some of the same variables: same type and validation there too."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from terraform_offline import CLOUDS, EXAMPLES, HANDOFF, TERRAFORM, module_dir, variables_of

COMPARED = ("type", "default", "nullable", "sensitive", "validation")
# An error message may end its sentence with an example from the cloud's own network.
_EXAMPLE = re.compile(r" \(e\.g\. [^)]*\)")
# Examples: each cloud's mirror example has its own default VIP, outside its own network.
EXAMPLE_DEFAULTS_OF_THEIR_CLOUD = {("mirror", "vip_address")}

Variables = dict[str, dict[str, Any]]


def _normalized(body: dict[str, Any], attribute: str) -> Any:
    value = body.get(attribute)
    if attribute == "validation" and value:
        return [
            {"condition": rule["condition"], "error_message": _EXAMPLE.sub("", rule["error_message"])}
            for rule in value
        ]
    return value


def shared_variable_differences(
    by_stack: dict[str, Variables],
    compared: tuple[str, ...] = COMPARED,
    allowed: frozenset[str] = frozenset(),
) -> list[str]:
    """'name attribute: stack=value, ...' for each variable every stack declares whose
    attribute (one of `compared`, less `allowed` names' defaults) is not the same everywhere."""
    names = _shared_names(by_stack)
    problems = []
    for name in sorted(names):
        for attribute in compared:
            if attribute == "default" and name in allowed:
                continue
            values = {stack: _normalized(v[name], attribute) for stack, v in by_stack.items()}
            if len({repr(value) for value in values.values()}) > 1:
                problems.append(f"{name} {attribute}: " + ", ".join(f"{s}={v!r}" for s, v in values.items()))
    return problems


def _stacks() -> dict[str, Variables]:
    return {cloud: variables_of(module_dir(cloud)) for cloud in CLOUDS}


def _shared_names(by_stack: dict[str, Variables]) -> set[str]:
    return set.intersection(*(set(v) for v in by_stack.values()))


def test_the_stacks_share_their_common_variables_exactly() -> None:
    stacks = _stacks()
    shared = _shared_names(stacks)
    # what makes a cluster, whatever the cloud: not an empty intersection by accident
    assert shared >= {
        "name", "kind", "node_count", "module_name", "vip_mode", "vip_address", "app_port",
        "heartbeat_port", "admin_cidrs", "client_cidrs", "lb_internal", "ssh_user",
        "ssh_public_key", "assign_public_ip", "create_network", "witness_address",
    }, shared  # fmt: skip
    assert shared_variable_differences(stacks) == []


def test_the_shared_module_takes_the_stacks_variables_as_they_are() -> None:
    handoff = variables_of(HANDOFF)
    common = set(handoff) & _shared_names(_stacks())
    assert common >= {
        "name",
        "kind",
        "module_name",
        "ssh_user",
        "ssh_public_key",
        "heartbeat_port",
        "app_port",
    }
    # the shared module requires what a stack defaults: defaults are the stacks' business
    by_stack = {cloud: {n: v[n] for n in common} for cloud, v in _stacks().items()}
    problems = shared_variable_differences(
        {**by_stack, "shared": {n: handoff[n] for n in common}},
        compared=("type", "nullable", "sensitive", "validation"),
    )
    assert problems == []


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_examples_share_their_common_variables_exactly(example: str) -> None:
    by_cloud = {cloud: variables_of(TERRAFORM / cloud / "examples" / example) for cloud in CLOUDS}
    shared = _shared_names(by_cloud)
    assert {"name", "admin_cidrs", "ssh_public_key_file"} <= shared, shared
    allowed = frozenset(n for e, n in EXAMPLE_DEFAULTS_OF_THEIR_CLOUD if e == example)
    assert shared_variable_differences(by_cloud, allowed=allowed) == []


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("example", EXAMPLES)
def test_an_example_variable_has_the_type_of_the_module_variable_it_feeds(cloud: str, example: str) -> None:
    module = variables_of(module_dir(cloud))
    for name, body in variables_of(TERRAFORM / cloud / "examples" / example).items():
        if name in module:
            assert body.get("type") == module[name].get("type"), (cloud, example, name)


# ------------------------------------------------------------------ the check itself
def _tampered(attribute: str, value: Any) -> dict[str, Variables]:
    stacks = copy.deepcopy(_stacks())
    if attribute == "validation":
        stacks["gcp"]["name"]["validation"][0].update(value)
    else:
        stacks["gcp"]["name"][attribute] = value
    return stacks


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("validation", {"condition": '${can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))}'}),
        ("validation", {"error_message": "name: anything goes."}),
        ("default", "skcluster"),
        ("type", "any"),
        ("nullable", False),
    ],
)
def test_the_check_catches_a_stack_that_drifts(attribute: str, value: Any) -> None:
    problems = shared_variable_differences(_tampered(attribute, value))
    assert len(problems) == 1 and problems[0].startswith(f"name {attribute}:"), problems


def test_the_check_lets_an_error_message_name_its_own_clouds_example() -> None:
    stacks = copy.deepcopy(_stacks())
    rule = stacks["gcp"]["vip_address"]["validation"][0]
    assert "(e.g. " in rule["error_message"]
    rule["error_message"] = _EXAMPLE.sub(" (e.g. 10.99.0.10, outside the subnet)", rule["error_message"])
    assert shared_variable_differences(stacks) == []
