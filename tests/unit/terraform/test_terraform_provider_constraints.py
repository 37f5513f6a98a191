"""Reusable modules set lower-bound provider constraints only (`>= 5.70`), never `~>` or an upper
bound: a module that caps the provider's major version refuses every root module that has moved
to the next one (AWS provider 6, Google provider 7). Capping is the root module's business: the
examples under terraform/<cloud>/examples pin with `~>` (test_terraform_static.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from terraform_offline import (
    CLOUDS,
    TERRAFORM,
    constraint_clauses,
    is_lower_bound_only,
    lower_bound,
    module_dir,
    parse,
    tf_files,
)


def reusable_modules(root: Path = TERRAFORM) -> list[Path]:
    """Every reusable module: each directory under a `modules/` folder that holds .tf files, and
    each local directory a `module` block calls."""
    found = {path.parent for path in tf_files(root) if "modules" in path.relative_to(root).parts[:-1]}
    for path in tf_files(root):
        for entry in parse(path).get("module", []):
            for body in entry.values():
                source = str(body.get("source", ""))
                if source.startswith(("./", "../")):
                    found.add((path.parent / source).resolve())
    return sorted(found)


def provider_constraints(directory: Path) -> list[tuple[Path, str, Any]]:
    """(file, provider, version) for every required_providers entry of the directory's .tf files;
    the version is None when an entry gives none."""
    constraints = []
    for path in sorted(directory.glob("*.tf")):
        for block in parse(path).get("terraform", []):
            for providers in block.get("required_providers", []) or []:
                entries = providers if isinstance(providers, dict) else {}
                for name, spec in entries.items():
                    version = spec.get("version") if isinstance(spec, dict) else spec
                    constraints.append((path, name, version))
    return constraints


def offending(directory: Path) -> list[str]:
    """What a reusable module must not do: require a provider with `~>`, an upper bound or an
    exact version, or without a version at all."""
    problems = []
    for path, name, version in provider_constraints(directory):
        if not version:
            problems.append(f"{path}: provider {name} has no version constraint (give a `>=` floor)")
        elif "~>" in version or not is_lower_bound_only(version):
            problems.append(f"{path}: provider {name} version {version!r} is not a lower bound only")
    return problems


def test_the_reusable_modules_are_found() -> None:
    modules = reusable_modules()
    assert set(modules) >= {module_dir(cloud).resolve() for cloud in CLOUDS}, modules
    assert all(TERRAFORM.resolve() in m.parents for m in modules), modules


@pytest.mark.parametrize("module", reusable_modules(), ids=lambda p: str(p.relative_to(TERRAFORM.resolve())))
def test_reusable_module_sets_lower_bound_provider_constraints_only(module: Path) -> None:
    # a module with resources or data sources names its providers; a provider-free one (the
    # shared hand-off module, ADR 0040) names none
    assert bool(provider_constraints(module)) == uses_providers(module), module
    assert offending(module) == []


def uses_providers(directory: Path) -> bool:
    return any(parse(path).get(kind) for path in tf_files(directory) for kind in ("resource", "data"))


@pytest.mark.parametrize("cloud", CLOUDS)
def test_no_tilde_arrow_anywhere_under_a_modules_folder(cloud: str) -> None:
    """The same rule, read off the text: no `~>` constraint in a module, whatever file or block
    it is in (the parser-based test above only reads required_providers)."""
    for path in tf_files(TERRAFORM / cloud / "modules") + tf_files(TERRAFORM / "shared"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert "~>" not in code, f"{path}:{number}: {line.strip()}"


def _module(tmp_path: Path, version: str | None) -> Path:
    module = tmp_path / "terraform" / "aws" / "modules" / "m"
    module.mkdir(parents=True)
    entry = f'      version = "{version}"\n' if version is not None else ""
    (module / "versions.tf").write_text(
        "terraform {\n  required_providers {\n    aws = {\n"
        f'      source  = "hashicorp/aws"\n{entry}'
        "    }\n  }\n}\n"
    )
    return module


@pytest.mark.parametrize("version", ["~> 5.70", ">= 5.70, < 6.0", "5.70.0", "~>6", None])
def test_the_check_rejects_a_capped_or_missing_constraint(tmp_path: Path, version: str | None) -> None:
    module = _module(tmp_path, version)
    assert module.resolve() in reusable_modules(tmp_path / "terraform")
    assert offending(module), version


@pytest.mark.parametrize("version", [">= 5.70", ">=5.70.1", "> 5.0, >= 5.70"])
def test_the_check_accepts_a_lower_bound(tmp_path: Path, version: str) -> None:
    assert offending(_module(tmp_path, version)) == []


def test_constraint_helpers() -> None:
    assert constraint_clauses("~> 5.70") == [("~>", (5, 70))]
    assert constraint_clauses(">= 1.9.0, < 2.0.0") == [(">=", (1, 9, 0)), ("<", (2, 0, 0))]
    assert lower_bound("~> 5.70") == (5, 70, 0)
    assert lower_bound(">= 6.10") == (6, 10, 0)
    assert lower_bound("< 7") is None
    with pytest.raises(ValueError):
        constraint_clauses(">= five")
