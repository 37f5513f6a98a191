"""Invariants that tie terraform/ to the engine: the health check is the engine's (port and path),
the identities grant exactly what the VIP providers call (safekit.vip.cloud.permissions, the one
list), heartbeat and replication ports are open between the nodes only, what the cluster moves at
runtime is ignored by Terraform, and the inventory the shared module renders is the recorded
`terraform output -json` of each cloud. Each check is a function that returns problems, tested on
a bad sample too."""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from terraform_offline import (
    CLOUDS,
    HANDOFF,
    ROOT,
    TERRAFORM,
    Block,
    apply_module,
    blocks,
    handoff_inputs,
    locals_of,
    module_dir,
    tf_files,
    variables_of,
)

from safekit import cloud_driver
from safekit.daemon import health
from safekit.daemon.farm_module import DEFAULT_FARM_PORT
from safekit.daemon.mirror_module import DEFAULT_HEARTBEAT_PORT
from safekit.vip.cloud import permissions

FIXTURES = Path(__file__).parent / "fixtures"
HEALTH_CHECKS = {
    # resource type -> (block holding the check or None, port attribute, path attribute)
    "aws_lb_target_group": ("health_check", "port", "path"),
    "azurerm_lb_probe": (None, "port", "request_path"),
    "google_compute_region_health_check": ("http_health_check", "port", "request_path"),
}
# What the VIP providers move at failover, per resource type: Terraform must ignore it.
RUNTIME_MOVED = {
    "aws_route": ["network_interface_id"],
    "azurerm_route": ["next_hop_in_ip_address"],
    "google_compute_route": ["next_hop_instance", "next_hop_instance_zone"],
}
OPEN = {"0.0.0.0/0", "*", "Internet", "any", "::/0"}
ACTION = {
    "aws": re.compile(r"\b(?:ec2|elasticloadbalancing|iam|sts|s3):[A-Za-z*]+"),
    "azure": re.compile(r"Microsoft\.[A-Za-z]+/[A-Za-z/*]+/(?:read|write|delete|action)\b"),
    "gcp": re.compile(r"\bcompute\.[a-zA-Z]+\.[a-zA-Z]+"),
}
# Not the VIP providers' actions: the EC2 trust policy, and the prefix iam.tf splits reads by.
NOT_VIP_ACTIONS = {"sts:AssumeRole", "ec2:Describe"}


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _module_blocks(cloud: str) -> list[Block]:
    return list(blocks(module_dir(cloud)))


# ------------------------------------------------------------------ health check
@pytest.mark.parametrize("cloud", CLOUDS)
def test_health_check_port_and_path_are_the_engines(cloud: str) -> None:
    local = locals_of(module_dir(cloud))
    assert local["health_port"] == health.DEFAULT_PORT
    sample = local["health_path"].replace("${var.module_name}", "webmirror")
    match = health._READY_PATH.match(sample)
    assert match and match.group(1) == "webmirror", local["health_path"]
    # the module_name validation is the engine's rule for the name in the path
    rule = variables_of(module_dir(cloud))["module_name"]["validation"][0]["condition"]
    assert health._READY_PATH.pattern.split("/var/modules/(")[1].split(")/ready")[0] in rule

    checks = [b for b in _module_blocks(cloud) if b.type in HEALTH_CHECKS]
    assert checks, f"{cloud}: no health check"
    for block in checks:
        inner, port, path = HEALTH_CHECKS[block.type]
        body = _first(block.body[inner]) if inner else block.body
        assert "local.health_port" in str(body[port]), block.address
        assert body[path] == "${local.health_path}", block.address


# ------------------------------------------------------------------ ports
@pytest.mark.parametrize("cloud", CLOUDS)
def test_heartbeat_default_and_replication_rule_are_the_engines(cloud: str) -> None:
    assert DEFAULT_HEARTBEAT_PORT == DEFAULT_FARM_PORT
    assert variables_of(module_dir(cloud))["heartbeat_port"]["default"] == DEFAULT_HEARTBEAT_PORT
    local = locals_of(module_dir(cloud))
    assert local["heartbeat_port"] == "${var.heartbeat_port}"
    assert local["replication_port"] == "${var.heartbeat_port + 1}"
    assert local["console_port"] == 9453


def _cluster_port_problems(block: Block) -> list[str]:  # noqa: PLR0911 - one verdict per rule type
    """A rule that lets traffic reach the heartbeat or replication port from anywhere but the
    nodes themselves."""
    text = json.dumps(block.body)
    if "local.heartbeat_port" not in text and "local.replication_port" not in text:
        return []
    body = block.body
    if block.type.startswith("aws_vpc_security_group_ingress_rule"):
        if body.get("cidr_ipv4") or body.get("cidr_ipv6") or body.get("prefix_list_id"):
            return [f"{block.address}: heartbeat/replication open to a CIDR"]
        if body.get("referenced_security_group_id") != "${aws_security_group.nodes.id}":
            return [f"{block.address}: heartbeat/replication not restricted to the nodes' group"]
        return []
    if block.type == "azurerm_network_security_rule":
        if body.get("access") == "Deny":
            return []
        sources = body.get("source_address_prefixes") or [body.get("source_address_prefix")]
        if any(
            s in OPEN or (s is None and not body.get("source_application_security_group_ids"))
            for s in sources
        ):
            return [f"{block.address}: heartbeat/replication allowed from {sources}"]
        if not body.get("source_application_security_group_ids"):
            return [f"{block.address}: heartbeat/replication not restricted to the nodes' group"]
        return []
    if block.type == "google_compute_firewall":
        if body.get("source_ranges") or not body.get("source_tags"):
            return [f"{block.address}: heartbeat/replication from ranges {body.get('source_ranges')}"]
        return []
    if block.type in ("aws_vpc_security_group_egress_rule",):
        return []
    return [f"{block.address}: unknown rule type on a cluster port"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_heartbeat_and_replication_are_open_between_the_nodes_only(cloud: str) -> None:
    problems = [p for b in _module_blocks(cloud) for p in _cluster_port_problems(b)]
    assert problems == []
    rules = [b for b in _module_blocks(cloud) if "local.replication_port" in json.dumps(b.body)]
    assert rules, f"{cloud}: no replication rule"
    assert not any(o in json.dumps(b.body) for b in rules for o in ('"0.0.0.0/0"',)), rules


def test_azure_denies_the_cluster_ports_to_the_rest_of_the_network() -> None:
    # An NSG allows the whole virtual network by default: without this deny, heartbeats would be
    # open to every VM there.
    deny = [
        b
        for b in _module_blocks("azure")
        if b.type == "azurerm_network_security_rule" and b.body["access"] == "Deny"
    ]
    ports = {p for b in deny for p in b.body.get("destination_port_ranges", [])}
    assert {"${tostring(local.heartbeat_port)}", "${tostring(local.replication_port)}"} <= ports
    allows = [b for b in _module_blocks("azure") if b.name in ("heartbeat", "replication")]
    assert all(a.body["priority"] < d.body["priority"] for a in allows for d in deny)


def test_the_cluster_port_check_catches_an_open_rule(tmp_path: Path) -> None:
    bad = [
        Block(
            "resource",
            "aws_vpc_security_group_ingress_rule",
            "hb",
            {"from_port": "${local.heartbeat_port}", "cidr_ipv4": "0.0.0.0/0"},
            TERRAFORM / "x.tf",
        ),
        Block(
            "resource",
            "azurerm_network_security_rule",
            "hb",
            {
                "access": "Allow",
                "destination_port_range": "${local.heartbeat_port}",
                "source_address_prefix": "*",
            },
            TERRAFORM / "x.tf",
        ),
        Block(
            "resource",
            "google_compute_firewall",
            "hb",
            {"allow": [{"ports": ["${local.replication_port}"]}], "source_ranges": ["0.0.0.0/0"]},
            TERRAFORM / "x.tf",
        ),
    ]
    assert all(_cluster_port_problems(b) for b in bad)


# ------------------------------------------------------------------ permissions
def _expected_actions(cloud: str) -> dict[str, list[str]]:
    return {
        name: sorted(p.action for p in provider.permissions if not p.optional)
        for name, provider in permissions.PROVIDERS.items()
        if provider.cloud == cloud
    }


@pytest.mark.parametrize("cloud", CLOUDS)
def test_granted_actions_equal_permissions_py_for_every_provider(cloud: str) -> None:
    local = locals_of(module_dir(cloud))
    assert {k: sorted(v) for k, v in local["vip_actions"].items()} == _expected_actions(cloud)
    # what is granted is the map's entry for the provider in use, nothing added
    assert local["granted_actions"] == "${local.vip_actions[local.vip_provider]}"
    chosen = re.search(r'\?\s*"([a-z_]+)"\s*:\s*"([a-z_]+)"', local["vip_provider"])
    assert chosen and set(chosen.groups()) <= set(_expected_actions(cloud)), local["vip_provider"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_identity_grants_only_granted_actions(cloud: str) -> None:
    grants = {
        "aws": ("aws_iam_role_policy", "policy"),
        "azure": ("azurerm_role_definition", "permissions"),
        "gcp": ("google_project_iam_custom_role", "permissions"),
    }[cloud]
    granting = [b for b in _module_blocks(cloud) if b.type == grants[0]]
    assert len(granting) == 1
    text = json.dumps(granting[0].body[grants[1]])
    assert "local.granted_" in text
    assert not ACTION[cloud].findall(text.replace("local.granted_", "")), text


@pytest.mark.parametrize("cloud", CLOUDS)
def test_no_file_but_permissions_tf_names_an_action(cloud: str) -> None:
    for path in tf_files(TERRAFORM / cloud):
        if path.name == "permissions.tf":
            continue
        found = set(ACTION[cloud].findall(path.read_text())) - NOT_VIP_ACTIONS
        assert not found, f"{path}: grants {found} outside permissions.tf"


def test_permissions_tf_would_fail_on_a_missing_action() -> None:
    expected = _expected_actions("aws")
    tampered = {**expected, "aws_route": expected["aws_route"][:-1]}
    assert tampered != expected


# ------------------------------------------------------------------ runtime-moved resources
def _ignore_problems(block: Block) -> list[str]:
    moved = [a for a in RUNTIME_MOVED.get(block.type, []) if a in block.body]
    if not moved:
        return []
    lifecycle = _first(block.body.get("lifecycle")) or {}
    ignored = lifecycle.get("ignore_changes", [])
    missing = [a for a in moved if a not in ignored]
    return [f"{block.address}: lifecycle ignore_changes lacks {missing}"] if missing else []


@pytest.mark.parametrize("cloud", CLOUDS)
def test_runtime_moved_resources_ignore_changes(cloud: str) -> None:
    moved = [b for b in _module_blocks(cloud) if any(a in b.body for a in RUNTIME_MOVED.get(b.type, []))]
    assert len(moved) == 1, [b.address for b in moved]  # the VIP route
    assert [p for b in _module_blocks(cloud) for p in _ignore_problems(b)] == []


def test_the_ignore_check_catches_a_route_without_lifecycle() -> None:
    bad = Block("resource", "aws_route", "vip", {"network_interface_id": "x"}, TERRAFORM / "x.tf")
    assert _ignore_problems(bad)


# ------------------------------------------------------------------ inventory hand-off
def _provider_classes() -> dict[str, Any]:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["safekit.vip"]
    out = {}
    for name, target in entry.items():
        module, _, attr = target.partition(":")
        out[name] = getattr(importlib.import_module(module), attr)
    return out


FIXTURE_FILES = sorted(FIXTURES.glob("*-output.json"))


def test_fixtures_cover_every_cloud_and_both_kinds() -> None:
    names = [p.name.split("-")[:2] for p in FIXTURE_FILES]
    assert {c for c, _ in names} == set(CLOUDS)
    assert {k for _, k in names} == {"mirror", "farm"}


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: p.name)
def test_inventory_template_renders_from_recorded_output(fixture: Path) -> None:
    cloud, kind = fixture.name.split("-")[:2]
    outputs = json.loads(fixture.read_text())
    inputs = handoff_inputs(outputs, "ssh-ed25519 AAAAC3Nza test@x")
    assert (inputs["cloud"], inputs["kind"]) == (cloud, kind)
    applied = apply_module(HANDOFF, inputs, ["ansible_inventory", "inventory_vars"])
    rendered = applied["ansible_inventory"]
    # the recorded ansible_inventory, which the stacks' own templates rendered before the shared
    # module (ADR 0040), is what the shared module renders: the same bytes, the same variables
    assert rendered == outputs["ansible_inventory"]["value"]
    assert applied["inventory_vars"] == outputs["inventory_vars"]["value"]
    # and it is what the driver accepts and the playbooks read
    assert cloud_driver.inventory_from_outputs({"ansible_inventory": {"value": rendered}}) == rendered
    inventory = yaml.safe_load(rendered)
    group_vars = inventory["all"]["vars"]
    hosts = inventory["all"]["children"]["safekit_nodes"]["hosts"]
    assert len(hosts) == (2 if kind == "mirror" else len(outputs["nodes"]["value"]))
    for name, host in hosts.items():
        assert host["ansible_host"] and host["safekit_addresses"]["default"], name
    assert group_vars["safekit_cloud"] == cloud
    # no inventory-wide become (it would reach the controller-side tasks too): the playbooks become
    # root on the nodes themselves because the ssh user is not root
    assert not any(key.startswith("ansible_become") for key in group_vars), group_vars
    assert group_vars["ansible_user"] != "root"
    assert group_vars["safekit_module_kind"] == kind
    assert group_vars["safekit_heartbeat_port"] == DEFAULT_HEARTBEAT_PORT
    if kind == "mirror":
        assert group_vars["safekit_replication_port"] == group_vars["safekit_heartbeat_port"] + 1
    assert group_vars["safekit_health_port"] == health.DEFAULT_PORT
    provider = group_vars["safekit_vip_provider"]
    assert permissions.PROVIDERS[provider].cloud == cloud
    cls = _provider_classes()[provider]
    options = group_vars["safekit_vip_options"]
    assert set(options) <= set(cls.OPTIONS), (provider, set(options) - set(cls.OPTIONS))
    assert {k for k, o in cls.OPTIONS.items() if o.required} <= set(options)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_module_inventory_vars_name_a_provider_option_set_the_provider_knows(cloud: str) -> None:
    local = locals_of(module_dir(cloud))
    classes = _provider_classes()
    for provider, options in local["vip_options"].items():
        assert set(options) <= set(classes[provider].OPTIONS), provider
        assert {k for k, o in classes[provider].OPTIONS.items() if o.required} <= set(options), provider


def test_cloud_init_renders_to_cloud_config() -> None:
    golden = json.loads((FIXTURES / "cloud-init-golden.json").read_text())
    inputs = handoff_inputs(json.loads(FIXTURE_FILES[0].read_text()), golden["inputs"]["ssh_public_key"])
    inputs["hostnames"] = golden["inputs"]["hostnames"]
    documents = apply_module(HANDOFF, inputs, ["cloud_init"])["cloud_init"]
    # what the AWS and Azure stacks' own template rendered before the shared module (ADR 0040)
    assert documents == golden["cloud_init"]
    for hostname, text in zip(golden["inputs"]["hostnames"], documents, strict=True):
        assert text.startswith("#cloud-config\n")
        config = yaml.safe_load(text)
        assert config["hostname"] == hostname
        assert config["users"][0]["name"] == inputs["ssh_user"]
        assert config["users"][0]["ssh_authorized_keys"] == [golden["inputs"]["ssh_public_key"].strip()]
        assert {"python3", "python3-venv"} <= set(config["packages"])
        assert config["ssh_pwauth"] is False
