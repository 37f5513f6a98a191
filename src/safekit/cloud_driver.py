"""`safekit cloud up|down`: build a cluster in a cloud with the Terraform examples, then configure
it with the same playbooks as on premises.

Owns the command line of `safekit cloud`, running the `terraform` binary (a plain subprocess with
its machine-readable `-json` output: docs/adr/0008-terraform-driver.md), turning that output into
progress lines (`ui_line`, pure), and the hand-off: the `ansible_inventory` output written to a
file (`inventory_from_outputs`, pure) that `safekit deploy` then runs the playbook on. Nothing here
talks to a cloud: Terraform does, with the user's own credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safekit import deploy

EXIT_ERROR = 1
CLOUDS = ("aws", "azure", "gcp")
EXAMPLES = ("mirror", "farm")
PLAN_FILE = "safekit.tfplan"
# What `up` remembers for `down` (the variables: destroy needs the same ones), beside the state.
SETTINGS_FILE = ".safekit-cloud.json"
INVENTORY_FILE = "inventory.yml"
NODES_GROUP = "safekit_nodes"
_VAR = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$", re.DOTALL)
# Messages of Terraform's machine-readable UI worth a line of their own.
_SHOWN = {"planned_change", "change_summary", "apply_start", "apply_complete", "apply_errored"}


class CloudError(Exception):
    """A cloud command that cannot go on: what is wrong and what to do, in one line."""


# ------------------------------------------------------------------ Terraform's output (pure)
def ui_line(message: Mapping[str, Any]) -> str | None:
    """One line of `terraform plan|apply -json` as a progress line, or None for the silent ones.

    Diagnostics (errors and warnings) carry their file:line and detail, since they are what the
    user has to act on.
    """
    kind = message.get("type")
    if kind in _SHOWN:
        return f"  {message.get('@message', '')}"
    if kind == "diagnostic":
        diag = message.get("diagnostic") or {}
        where = ""
        rng = diag.get("range") or {}
        if rng.get("filename"):
            where = f" ({rng['filename']}:{(rng.get('start') or {}).get('line', '?')})"
        detail = " ".join(str(diag.get("detail") or "").split())
        text = f"{diag.get('severity', 'error')}: {diag.get('summary', '')}{where}"
        return f"{text}: {detail}" if detail else text
    return None


def change_summary(messages: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """The add/change/remove counts of the plan's `change_summary` message, if it sent one."""
    for message in messages:
        if message.get("type") == "change_summary":
            changes = message.get("changes") or {}
            return {key: int(changes.get(key, 0)) for key in ("add", "change", "remove")}
    return None


def inventory_from_outputs(outputs: Mapping[str, Any]) -> str:
    """The Ansible inventory from `terraform output -json`, checked: every node of the
    `safekit_nodes` group has an `ansible_host`. Raises CloudError naming what is missing."""
    value = (outputs.get("ansible_inventory") or {}).get("value")
    if not isinstance(value, str) or not value.strip():
        raise CloudError(
            "terraform output has no ansible_inventory: is this one of terraform/*/examples, applied?"
        )
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise CloudError(f"the ansible_inventory output is not YAML: {exc}") from exc
    hosts = (((parsed or {}).get("all") or {}).get("children") or {}).get(NODES_GROUP, {}).get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise CloudError(f"the ansible_inventory output has no host in group {NODES_GROUP}")
    missing = sorted(name for name, host in hosts.items() if not (host or {}).get("ansible_host"))
    if missing:
        raise CloudError(f"the ansible_inventory output has no ansible_host for {', '.join(missing)}")
    return value


def parse_vars(pairs: Sequence[str]) -> list[str]:
    """`-v KEY=VALUE` pairs as Terraform's `-var` arguments (a value in HCL syntax for lists:
    -v 'admin_cidrs=["203.0.113.7/32"]')."""
    out: list[str] = []
    for pair in pairs:
        if not _VAR.match(pair):
            raise CloudError(f"-v {pair!r}: expected NAME=VALUE, e.g. -v 'admin_cidrs=[\"203.0.113.7/32\"]'")
        out.append(f"-var={pair}")
    return out


# ------------------------------------------------------------------ running terraform
@dataclass
class Terraform:
    """The `terraform` binary run in one root configuration (`-chdir`)."""

    binary: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    echo: Callable[[str], None] = print

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [self.binary, f"-chdir={self.workdir}", *args]

    def _env(self) -> dict[str, str]:
        # TF_IN_AUTOMATION: no "run terraform apply next" hints; no update check from the driver.
        return {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", **self.env}

    def stream(self, args: Sequence[str]) -> tuple[int, list[dict[str, Any]]]:
        """Run a `-json` command, printing its progress; (exit code, the JSON messages)."""
        messages: list[dict[str, Any]] = []
        with subprocess.Popen(
            self._argv(args), stdout=subprocess.PIPE, text=True, env=self._env(), bufsize=1
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    if line.strip():
                        self.echo(line)
                    continue
                if not isinstance(message, dict):
                    continue
                messages.append(message)
                shown = ui_line(message)
                if shown is not None:
                    self.echo(shown)
        return proc.returncode, messages

    def call(self, args: Sequence[str], *, capture: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._argv(args),
            env=self._env(),
            text=True,
            stdout=subprocess.PIPE if capture else None,
            check=False,
        )


def find_terraform() -> str:
    explicit = os.environ.get("SAFEKIT_TERRAFORM")
    found = explicit or shutil.which("terraform")
    if not found:
        raise CloudError(
            "terraform is not on PATH: install Terraform >= 1.9 (or OpenTofu, with "
            "SAFEKIT_TERRAFORM=/path/to/tofu)"
        )
    return found


def example_dir(cloud: str, example: str) -> Path:
    path = deploy.project_root() / "terraform" / cloud / "examples" / example
    if not (path / "main.tf").is_file():
        raise CloudError(f"{path}: no such Terraform example")
    return path


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CloudError("no terminal to confirm on: add --yes to apply without asking")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _plan_and_apply(tf: Terraform, tf_vars: list[str], *, destroy: bool, yes: bool) -> bool:
    """init, plan (saved), confirm, apply the saved plan. False when the user said no."""
    if tf.call(["init", "-input=false", "-no-color"]).returncode != 0:
        raise CloudError(f"terraform init failed in {tf.workdir} (its errors are above)")
    plan_args = ["plan", "-input=false", "-json", f"-out={PLAN_FILE}", *tf_vars]
    if destroy:
        plan_args.insert(1, "-destroy")
    rc, messages = tf.stream(plan_args)
    if rc != 0:
        raise CloudError(f"terraform plan failed in {tf.workdir} (its errors are above)")
    counts = change_summary(messages) or {"add": 0, "change": 0, "remove": 0}
    verb = "destroy" if destroy else "apply"
    summary = f"{counts['add']} to add, {counts['change']} to change, {counts['remove']} to destroy"
    if not _confirm(f"{verb} this plan ({summary})?", yes):
        print("nothing changed")
        return False
    rc, _ = tf.stream(["apply", "-input=false", "-json", PLAN_FILE])
    (tf.workdir / PLAN_FILE).unlink(missing_ok=True)
    if rc != 0:
        raise CloudError(f"terraform apply failed in {tf.workdir} (its errors are above)")
    return True


def _settings(workdir: Path) -> dict[str, Any]:
    path = workdir / SETTINGS_FILE
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def _tf_vars(args: argparse.Namespace, remembered: Mapping[str, Any]) -> tuple[list[str], list[str], str]:
    """(terraform -var/-var-file arguments, the -v pairs, the var file) from the command line,
    or from what `up` remembered when the command line gives none."""
    pairs = list(args.var) or list(remembered.get("vars", []))
    var_file = args.var_file or remembered.get("var_file") or ""
    out = parse_vars(pairs)
    if var_file:
        out.append(f"-var-file={Path(var_file).resolve()}")
    return out, pairs, var_file


def up(args: argparse.Namespace) -> int:
    workdir = example_dir(args.cloud, args.example)
    tf = Terraform(find_terraform(), workdir)
    tf_vars, pairs, var_file = _tf_vars(args, _settings(workdir))
    print(f"safekit cloud up: terraform/{args.cloud}/examples/{args.example}", flush=True)
    (workdir / SETTINGS_FILE).write_text(json.dumps({"vars": pairs, "var_file": var_file}, indent=2) + "\n")
    if not _plan_and_apply(tf, tf_vars, destroy=False, yes=args.yes):
        return 0
    out = tf.call(["output", "-json"], capture=True)
    if out.returncode != 0:
        raise CloudError("terraform output -json failed (its errors are above)")
    try:
        outputs = json.loads(out.stdout)
    except json.JSONDecodeError as exc:
        raise CloudError(f"terraform output -json did not print JSON: {exc}") from exc
    inventory = Path(args.inventory) if args.inventory else workdir / INVENTORY_FILE
    inventory.write_text(inventory_from_outputs(outputs))
    print(f"inventory: {inventory}", flush=True)
    if args.no_deploy:
        print(f"next: safekit deploy {args.example} -i {inventory}")
        return 0
    return deploy.run(
        argparse.Namespace(
            kind=args.example, inventory=str(inventory), extra_vars=args.extra_vars, check=False
        )
    )


def down(args: argparse.Namespace) -> int:
    workdir = example_dir(args.cloud, args.example)
    tf = Terraform(find_terraform(), workdir)
    tf_vars, _, _ = _tf_vars(args, _settings(workdir))
    print(f"safekit cloud down: terraform/{args.cloud}/examples/{args.example}", flush=True)
    if not _plan_and_apply(tf, tf_vars, destroy=True, yes=args.yes):
        return 0
    (workdir / INVENTORY_FILE).unlink(missing_ok=True)
    print("destroyed")
    return 0


# ------------------------------------------------------------------ the command
def add_parser(subparsers: Any) -> None:
    cloud = subparsers.add_parser(
        "cloud",
        help="build (up) or destroy (down) a cluster in AWS, Azure or GCP with Terraform",
        description="safekit cloud up: terraform init, plan and apply of terraform/CLOUD/examples/"
        "EXAMPLE, then the playbook of that kind on the inventory Terraform wrote. safekit cloud "
        "down: destroy it. Terraform uses your cloud credentials (aws configure, az login, gcloud "
        "auth application-default login). See docs/cloud-aws.md, cloud-azure.md, cloud-gcp.md.",
    )
    actions = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)
    for name, text in (("up", "build the cluster and deploy safekit on it"), ("down", "destroy it")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--cloud", required=True, choices=CLOUDS)
        sub.add_argument("--example", required=True, choices=EXAMPLES, help="the kind of cluster")
        sub.add_argument(
            "-v",
            "--var",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a Terraform variable (repeatable); `down` reuses those of `up` when none is given",
        )
        sub.add_argument("--var-file", help="a .tfvars file")
        sub.add_argument("--yes", action="store_true", help="apply the plan without asking")
        if name == "up":
            sub.add_argument("--inventory", help="where to write the inventory (default: beside the state)")
            sub.add_argument("--no-deploy", action="store_true", help="stop after writing the inventory")
            sub.add_argument(
                "-e",
                "--extra-vars",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="a playbook variable for the deployment (repeatable)",
            )


def run(args: argparse.Namespace) -> int:
    try:
        return up(args) if args.cloud_command == "up" else down(args)
    except (CloudError, deploy.DeployError) as exc:
        print(f"safekit cloud {args.cloud_command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
