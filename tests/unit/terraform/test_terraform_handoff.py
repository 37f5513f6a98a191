"""The shared, provider-free module (terraform/shared/modules/safekit_handoff, ADR 0040) that
renders the inventory, its group variables and the nodes' first-boot configuration for the three
stacks: it needs no provider, the stacks call it with every argument it takes and nothing else
(`terraform get` loads the whole configuration offline), its outputs feed the instances while its
inventory reads them without a cycle, a stack fetched from git finds it, it refuses what would
break the hand-off, and GCP's startup script sets up what cloud-init sets up elsewhere. That it
renders byte for byte what the stacks' own templates did is test_terraform_invariants.py's
recorded-output tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from terraform_offline import (
    CLOUDS,
    EXAMPLES,
    HANDOFF,
    TERRAFORM,
    TerraformFailed,
    apply_module,
    apply_root,
    blocks,
    handoff_inputs,
    locals_of,
    module_dir,
    parse,
    terraform,
    tf_files,
)

from safekit.vip.cloud import permissions

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = {p.name.split("-")[0]: json.loads(p.read_text()) for p in FIXTURES.glob("*-output.json")}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOa7mPq9dGvQ0u1c3bW0f3L2yJ8n5sKX4qkz0Zc9R1xT op@ws"


def _handoff_call(cloud: str) -> dict[str, Any]:
    calls: list[dict[str, Any]] = [
        body
        for path in tf_files(module_dir(cloud))
        for entry in parse(path).get("module", [])
        for name, body in entry.items()
        if name == "handoff"
    ]
    assert len(calls) == 1, f"{cloud}: {len(calls)} calls of the shared module"
    return calls[0]


# ------------------------------------------------------------------ provider-free
def test_the_shared_module_declares_no_provider_and_no_resource() -> None:
    files = tf_files(HANDOFF)
    assert {p.name for p in files} >= {"versions.tf", "variables.tf", "outputs.tf", "main.tf"}
    for path in files:
        parsed = parse(path)
        assert not {"resource", "data", "provider", "module"} & set(parsed), (path, set(parsed))
        for block in parsed.get("terraform", []):
            assert "required_providers" not in block, path


# ------------------------------------------------------------------ the stacks' wiring
@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_stack_renders_only_through_the_shared_module(cloud: str) -> None:
    call = _handoff_call(cloud)
    assert (module_dir(cloud) / call["source"]).resolve() == HANDOFF
    assert call["cloud"] == cloud
    assert not (module_dir(cloud) / "templates").exists()
    for path in tf_files(module_dir(cloud)):
        text = path.read_text()
        assert "templatefile(" not in text and "/templates/" not in text, f"{path} renders on its own"
    outputs = {
        name: body
        for entry in parse(module_dir(cloud) / "outputs.tf")["output"]
        for name, body in entry.items()
    }
    assert outputs["ansible_inventory"]["value"] == "${module.handoff.ansible_inventory}"
    assert outputs["inventory_vars"]["value"] == "${module.handoff.inventory_vars}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_stack_passes_the_cloud_variables_it_recorded(cloud: str) -> None:
    """The recorded outputs are the stacks' inventories before the shared module: the stack now
    passes exactly those safekit_cloud_* group and node variables."""
    recorded = RECORDED[cloud]
    group = {k for k in recorded["inventory_vars"]["value"] if k.startswith("safekit_cloud_")}
    assert set(_handoff_call(cloud)["cloud_vars"]) == group
    node_vars = set(
        re.findall(r"\b(safekit_cloud_\w+)\s*=", json.dumps(locals_of(module_dir(cloud))["inventory_nodes"]))
    )
    assert node_vars == {k for node in recorded["nodes"]["value"] for k in node["vars"]}


FIRST_BOOT = {
    "aws": ("aws_instance", "user_data", "${module.handoff.cloud_init[count.index]}"),
    "azure": (
        "azurerm_linux_virtual_machine",
        "custom_data",
        "${base64encode(module.handoff.cloud_init[count.index])}",
    ),
    "gcp": ("google_compute_instance", "metadata", "${module.handoff.startup_script}"),
}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_node_boots_with_the_shared_first_boot_configuration(cloud: str) -> None:
    type_, attribute, expected = FIRST_BOOT[cloud]
    (node,) = [b for b in blocks(module_dir(cloud)) if b.type == type_ and b.name == "node"]
    value = node.body[attribute]
    value = value[0]["startup-script"] if isinstance(value, list) else value
    value = value["startup-script"] if isinstance(value, dict) else value
    assert value == expected
    # one host name per instance, the instance's own name
    assert node.body["count"] == "${var.node_count}"
    hostnames = _handoff_call(cloud)["hostnames"]
    if cloud == "aws":
        assert hostnames == '${[for i in range(var.node_count) : "${var.name}-node${i + 1}"]}'
    else:
        assert hostnames == "${local.node_names}"
        assert node.body["name"] == "${local.node_names[count.index]}"


@pytest.fixture(scope="module")
def terraform_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """terraform/ copied out of the checkout, so that `terraform get` writes no .terraform there."""
    copy = tmp_path_factory.mktemp("tf") / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    return copy


def _get(directory: Path) -> tuple[int, str]:
    code, out, err = terraform(["get", "-no-color"], directory)
    return code, out + err


@pytest.mark.parametrize("example", [f"{c}/examples/{e}" for c in CLOUDS for e in EXAMPLES])
def test_terraform_get_loads_every_example_with_the_shared_module(terraform_copy: Path, example: str) -> None:
    """`terraform get` needs no provider and refuses a module call that misses a required argument
    or passes an unknown one: the offline check of every stack's call of the shared module."""
    code, out = _get(terraform_copy / example)
    assert code == 0, out
    modules = json.loads((terraform_copy / example / ".terraform" / "modules" / "modules.json").read_text())
    assert {m["Key"] for m in modules["Modules"]} == {"", "cluster", "cluster.handoff"}


def test_terraform_get_refuses_a_wrong_call_of_the_shared_module(tmp_path: Path) -> None:
    shutil.copytree(TERRAFORM, tmp_path / "terraform")
    inventory = tmp_path / "terraform" / "gcp" / "modules" / "safekit_cluster" / "inventory.tf"
    text = inventory.read_text()
    inventory.write_text(re.sub(r"\n  health_port +=[^\n]*", "\n  health_prot = 9010", text, count=1))
    code, out = _get(tmp_path / "terraform" / "gcp" / "examples" / "mirror")
    assert code != 0
    assert 'The argument "health_port" is required' in out and 'named "health_prot"' in out


def test_a_stack_fetched_from_git_finds_the_shared_module(tmp_path: Path) -> None:
    """The README's `source = "git::...//terraform/aws/modules/safekit_cluster"`: Terraform
    fetches the whole repository, and the stack's relative path to the shared module stays
    inside it."""
    repo = tmp_path / "repo"
    shutil.copytree(TERRAFORM, repo / "terraform", ignore=shutil.ignore_patterns(".terraform"))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    for args in (["init", "-q"], ["add", "terraform"], ["commit", "-q", "-m", "stacks"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(TERRAFORM / "azure" / "examples" / "farm" / "main.tf", root / "main.tf")
    shutil.copy(TERRAFORM / "azure" / "examples" / "farm" / "variables.tf", root / "variables.tf")
    main = root / "main.tf"
    main.write_text(
        main.read_text().replace(
            '"../../modules/safekit_cluster"',
            f'"git::file://{repo}//terraform/azure/modules/safekit_cluster"',
        )
    )
    code, out = _get(root)
    assert code == 0, out
    modules = {
        m["Key"]: m
        for m in json.loads((root / ".terraform" / "modules" / "modules.json").read_text())["Modules"]
    }
    handoff = root / modules["cluster.handoff"]["Dir"]
    assert (handoff / "templates" / "inventory.yml.tftpl").is_file()
    assert handoff.resolve().is_relative_to((root / ".terraform" / "modules").resolve())


# ------------------------------------------------------------------ graph
def test_instances_take_its_cloud_init_while_its_inventory_takes_the_instances(tmp_path: Path) -> None:
    """The stacks' shape: each instance's user data is an output of the module, and the module's
    inventory reads the instances' addresses. Terraform evaluates a module's outputs one by one,
    so this is no cycle; terraform_data (built in, no provider) stands in for the instances."""
    inputs = handoff_inputs(RECORDED["aws"], KEY)
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    arguments = "".join(f"  {k} = local.inputs.{k}\n" for k in inputs if k != "nodes")
    (tmp_path / "main.tf").write_text(
        'locals {\n  inputs = jsondecode(file("${path.module}/inputs.json"))\n}\n'
        'resource "terraform_data" "node" {\n'
        "  count = length(local.inputs.hostnames)\n"
        "  input = {\n"
        "    user_data = module.handoff.cloud_init[count.index]\n"
        "    node      = local.inputs.nodes[count.index]\n"
        "  }\n"
        "}\n"
        f'module "handoff" {{\n  source = "{os.path.relpath(HANDOFF, tmp_path)}"\n{arguments}'
        "  nodes = [for n in terraform_data.node : n.output.node]\n}\n"
        'output "ansible_inventory" {\n  value = module.handoff.ansible_inventory\n}\n'
        'output "user_data" {\n  value = terraform_data.node[*].output.user_data\n}\n'
    )
    outputs = apply_root(tmp_path)
    assert outputs["ansible_inventory"] == RECORDED["aws"]["ansible_inventory"]["value"]
    assert [yaml.safe_load(u)["hostname"] for u in outputs["user_data"]] == inputs["hostnames"]


# ------------------------------------------------------------------ what it refuses
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "a common variable in cloud_vars": (
        {"cloud_vars": {"safekit_vip": "10.0.0.1"}},
        "cloud_vars: every name",
    ),
    "a replication port the engine would not use": (
        {"replication_port": 4900},
        "replication_port: heartbeat_port + 1",
    ),
    "another cloud's VIP provider": ({"vip_provider": "azure_lb"}, "vip_provider: one of the cloud's"),
    "root as the admin user": ({"ssh_user": "root"}, "ssh_user: a Linux user name, not root"),
    "a node variable outside safekit_cloud_": ({"nodes": "node_var"}, "every per-node variable named"),
    "two nodes of one name": ({"nodes": "same_name"}, "nodes: distinct names"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_the_shared_module_refuses_what_would_break_the_hand_off(case: str) -> None:
    change, message = REFUSED[case]
    inputs = handoff_inputs(RECORDED["aws"], KEY)
    nodes = [dict(n, vars=dict(n["vars"])) for n in inputs["nodes"]]
    if change.get("nodes") == "node_var":
        nodes[0]["vars"]["ansible_become"] = "true"
        change = {"nodes": nodes}
    elif change.get("nodes") == "same_name":
        nodes[1]["name"] = nodes[0]["name"]
        change = {"nodes": nodes}
    with pytest.raises(TerraformFailed, match=re.escape(message)):
        apply_module(HANDOFF, {**inputs, **change}, ["ansible_inventory"])


def test_vip_provider_names_start_with_their_cloud() -> None:
    """The vip_provider rule (<cloud>_...) is the engine's naming of every cloud provider."""
    assert {p.cloud for p in permissions.PROVIDERS.values()} == set(CLOUDS)
    for name, provider in permissions.PROVIDERS.items():
        assert name.startswith(f"{provider.cloud}_"), name


# ------------------------------------------------------------------ GCP's startup script
@pytest.fixture(scope="module")
def first_boot() -> dict[str, Any]:
    inputs = handoff_inputs(RECORDED["gcp"], KEY)
    return apply_module(HANDOFF, inputs, ["cloud_init", "startup_script"])


def test_the_startup_script_passes_shellcheck(first_boot: dict[str, Any], tmp_path: Path) -> None:
    script = tmp_path / "startup.sh"
    script.write_text(first_boot["startup_script"])
    assert first_boot["startup_script"].startswith("#!/bin/bash\n")
    proc = subprocess.run(
        ["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout


def test_the_startup_script_sets_up_what_cloud_init_does(first_boot: dict[str, Any]) -> None:
    script = first_boot["startup_script"]
    config = yaml.safe_load(first_boot["cloud_init"][0])
    (sshd,) = config["write_files"]
    heredoc = re.search(rf"cat >{re.escape(sshd['path'])} <<'SSHD'\n(.*?)\nSSHD\n", script, re.DOTALL)
    assert heredoc, script
    assert heredoc.group(1) + "\n" == sshd["content"]
    install = re.search(r"apt-get install -y -q (.*)\n", script)
    assert install and set(install.group(1).split()) == set(config["packages"])
    assert "systemctl reload-or-restart ssh" in script
