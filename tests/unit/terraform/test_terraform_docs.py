"""The modules' READMEs carry inputs and outputs tables generated from their .tf files by
scripts/terraform_docs.py (the project's stand-in for terraform-docs, which no registry here
ships): every committed README is what the script prints, and the check fails on a stale one."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from terraform_offline import ROOT, TERRAFORM, module_dirs, parse, variables_of


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("terraform_docs", ROOT / "scripts" / "terraform_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("terraform_docs", module)
    spec.loader.exec_module(module)
    return module


docs = _script()


def test_the_script_finds_every_module() -> None:
    found = docs.module_dirs(TERRAFORM)
    assert found == module_dirs()
    assert {p.relative_to(TERRAFORM).as_posix() for p in found} == {
        "aws/modules/safekit_cluster",
        "azure/modules/safekit_cluster",
        "gcp/modules/safekit_cluster",
        "shared/modules/safekit_handoff",
    }


@pytest.mark.parametrize("module", module_dirs(), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_the_committed_readme_is_the_generated_one(module: Path) -> None:
    readme = (module / "README.md").read_text()
    assert docs.updated(readme, docs.tables(module)) == readme, (
        f"{module}/README.md is stale: run scripts/terraform_docs.py"
    )


@pytest.mark.parametrize("module", module_dirs(), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_one_row_per_input_and_output_in_the_order_of_the_files(module: Path) -> None:
    generated = docs.tables(module)
    rows = [
        line.split("|")[1].strip().strip("`") for line in generated.splitlines() if line.startswith("| `")
    ]
    outputs = [
        name for path in sorted(module.glob("*.tf")) for o in parse(path).get("output", []) for name in o
    ]
    assert rows == list(variables_of(module)) + outputs
    required = {n for n, body in variables_of(module).items() if "default" not in body}
    for line in generated.splitlines():
        name = line.split("|")[1].strip().strip("`") if line.startswith("| `") else None
        if name in required:
            assert line.split("|")[3].strip() == "required", line


def test_the_check_fails_on_a_stale_readme_and_the_script_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "terraform"
    for module in ("gcp/modules/safekit_cluster", "shared/modules/safekit_handoff"):
        shutil.copytree(TERRAFORM / module, copy / module)
    variables = copy / "gcp" / "modules" / "safekit_cluster" / "variables.tf"
    text = variables.read_text()
    assert "Admin user that" in text
    variables.write_text(text.replace("Admin user that", "The admin user that", 1))
    args = ["--terraform", str(copy)]
    assert docs.main(["--check", *args]) == 1
    out = capsys.readouterr().out
    assert '+| `ssh_user` | `string` | `"safekit"` | The admin user that' in out
    assert "gcp/modules/safekit_cluster/README.md" in out
    assert docs.main(args) == 0
    assert docs.main(["--check", *args]) == 0
    # a README whose generated part has no markers is an error, not silently skipped
    readme = copy / "shared" / "modules" / "safekit_handoff" / "README.md"
    readme.write_text(readme.read_text().replace(docs.BEGIN, ""))
    assert docs.main(["--check", *args]) == 1


def test_cells_and_defaults() -> None:
    assert docs.cell("a | b\n <x> `<y>` c_*") == "a \\| b \\<x\\> `<y>` c_\\*"
    assert docs.hcl_value(None) == "null"
    assert docs.hcl_value(True) == "true"
    assert docs.hcl_value(['"a"', 1]) == '["a", 1]'
    assert docs.hcl_value({}) == "{}"
    assert docs.hcl_value({'"k:x"': '"v"'}) == '{ "k:x" = "v" }'
