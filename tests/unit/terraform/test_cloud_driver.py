"""`safekit cloud up|down` against a fake `terraform` on PATH: a script that records its
arguments and prints recorded outputs (Terraform's -json UI stream, `terraform output -json`).
No real Terraform, no cloud."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from safekit import cli, cloud_driver, deploy

FIXTURES = Path(__file__).parent / "fixtures"
FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_TF_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "automation": os.environ.get("TF_IN_AUTOMATION")}}) + "\\n")
sub = next(a for a in args if not a.startswith("-"))
recordings = os.environ["FAKE_TF_RECORDINGS"]
out = os.path.join(recordings, sub + ".out")
if os.path.exists(out):
    sys.stdout.write(open(out).read())
for a in args:
    if a.startswith("-out="):
        chdir = next(x for x in args if x.startswith("-chdir="))[len("-chdir="):]
        open(os.path.join(chdir, a[len("-out="):]), "w").write("plan")
rc = os.path.join(recordings, sub + ".rc")
sys.exit(int(open(rc).read()) if os.path.exists(rc) else 0)
"""


@pytest.fixture
def fake_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "plan.out").write_text((FIXTURES / "plan.jsonl").read_text())
    (recordings / "apply.out").write_text((FIXTURES / "apply.jsonl").read_text())
    (recordings / "output.out").write_text((FIXTURES / "aws-mirror-output.json").read_text())
    log = tmp_path / "calls.jsonl"
    # a throw-away copy of the example, so the state files never land in the checkout
    example = tmp_path / "terraform" / "aws" / "examples" / "mirror"
    example.mkdir(parents=True)
    (example / "main.tf").write_text("# fake\n")
    monkeypatch.setattr(
        cloud_driver, "example_dir", lambda cloud, kind: tmp_path / "terraform" / cloud / "examples" / kind
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SAFEKIT_TERRAFORM", raising=False)
    monkeypatch.setenv("FAKE_TF_LOG", str(log))
    monkeypatch.setenv("FAKE_TF_RECORDINGS", str(recordings))
    return {"log": log, "recordings": recordings, "example": example}


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line)["args"] for line in log.read_text().splitlines()]


def test_up_runs_init_plan_apply_output_and_writes_the_inventory(
    fake_terraform: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "cloud",
            "up",
            "--cloud",
            "aws",
            "--example",
            "mirror",
            "--yes",
            "--no-deploy",
            "-v",
            'admin_cidrs=["203.0.113.7/32"]',
        ]
    )
    assert code == 0
    example = fake_terraform["example"]
    calls = _calls(fake_terraform["log"])
    chdir = f"-chdir={example}"
    assert [c[1] for c in calls] == ["init", "plan", "apply", "output"]
    assert all(c[0] == chdir for c in calls)
    assert calls[1] == [
        chdir,
        "plan",
        "-input=false",
        "-json",
        "-out=safekit.tfplan",
        '-var=admin_cidrs=["203.0.113.7/32"]',
    ]
    assert calls[2] == [chdir, "apply", "-input=false", "-json", "safekit.tfplan"]
    assert calls[3] == [chdir, "output", "-json"]
    assert all(
        json.loads(line)["automation"] == "1" for line in fake_terraform["log"].read_text().splitlines()
    )
    assert not (example / "safekit.tfplan").exists()
    inventory = yaml.safe_load((example / "inventory.yml").read_text())
    assert sorted(inventory["all"]["children"]["safekit_nodes"]["hosts"]) == [
        "skmirror-node1",
        "skmirror-node2",
    ]
    out = capsys.readouterr().out
    assert "module.cluster.aws_route.vip[0]: Plan to create" in out
    assert "Creation complete after 13s" in out
    assert "warning: Argument is deprecated (../../modules/safekit_cluster/iam.tf:31)" in out
    assert "Still creating" not in out  # progress ticks are not shown
    assert f"inventory: {example / 'inventory.yml'}" in out


def test_up_runs_the_playbook_on_the_inventory(
    fake_terraform: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_deploy(args: Any) -> int:
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(deploy, "run", fake_deploy)
    code = cli.main(
        [
            "cloud",
            "up",
            "--cloud",
            "aws",
            "--example",
            "mirror",
            "--yes",
            "-e",
            "safekit_web_port=8081",
            "-v",
            "name=sk1",
        ]
    )
    assert code == 0
    assert seen == {
        "kind": "mirror",
        "inventory": str(fake_terraform["example"] / "inventory.yml"),
        "extra_vars": ["safekit_web_port=8081"],
        "check": False,
    }


def test_down_reuses_the_variables_of_up_and_destroys(fake_terraform: dict[str, Path]) -> None:
    assert (
        cli.main(
            ["cloud", "up", "--cloud", "aws", "--example", "mirror", "--yes", "--no-deploy", "-v", "name=sk1"]
        )
        == 0
    )
    fake_terraform["log"].unlink()
    assert cli.main(["cloud", "down", "--cloud", "aws", "--example", "mirror", "--yes"]) == 0
    calls = _calls(fake_terraform["log"])
    assert [c[1] for c in calls] == ["init", "plan", "apply"]
    assert calls[1][1:] == [
        "plan",
        "-destroy",
        "-input=false",
        "-json",
        "-out=safekit.tfplan",
        "-var=name=sk1",
    ]
    assert not (fake_terraform["example"] / "inventory.yml").exists()


def test_a_failed_apply_is_one_error_line_and_no_inventory(
    fake_terraform: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_terraform["recordings"] / "apply.out").write_text((FIXTURES / "apply-error.jsonl").read_text())
    (fake_terraform["recordings"] / "apply.rc").write_text("1")
    code = cli.main(["cloud", "up", "--cloud", "aws", "--example", "mirror", "--yes", "--no-deploy"])
    assert code == 1
    captured = capsys.readouterr()
    assert "RouteAlreadyExists" in captured.out
    assert "(../../modules/safekit_cluster/vip.tf:5)" in captured.out
    assert captured.err.startswith("safekit cloud up: terraform apply failed")
    assert not (fake_terraform["example"] / "inventory.yml").exists()
    assert [c[1] for c in _calls(fake_terraform["log"])] == ["init", "plan", "apply"]


def test_without_yes_and_without_a_terminal_nothing_is_applied(
    fake_terraform: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - closed with the test
    code = cli.main(["cloud", "up", "--cloud", "aws", "--example", "mirror", "--no-deploy"])
    assert code == 1
    assert "add --yes" in capsys.readouterr().err
    assert [c[1] for c in _calls(fake_terraform["log"])] == ["init", "plan"]


def test_no_terraform_on_path_says_what_to_install(
    fake_terraform: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(fake_terraform["example"]))
    assert cli.main(["cloud", "down", "--cloud", "aws", "--example", "mirror", "--yes"]) == 1
    assert "terraform is not on PATH" in capsys.readouterr().err


def test_a_bad_variable_is_refused_before_terraform_runs(
    fake_terraform: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["cloud", "up", "--cloud", "aws", "--example", "mirror", "-v", "novalue"]) == 1
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert not fake_terraform["log"].exists()


def test_inventory_from_outputs_names_what_is_missing() -> None:
    with pytest.raises(cloud_driver.CloudError, match="no ansible_inventory"):
        cloud_driver.inventory_from_outputs({})
    with pytest.raises(cloud_driver.CloudError, match="no ansible_host for n2"):
        cloud_driver.inventory_from_outputs(
            {
                "ansible_inventory": {
                    "value": "all:\n  children:\n    safekit_nodes:\n      hosts:\n"
                    "        n1: {ansible_host: 1.2.3.4}\n        n2: {}\n"
                }
            }
        )


def test_ui_line_shows_changes_and_diagnostics_only() -> None:
    lines = [json.loads(x) for x in (FIXTURES / "apply.jsonl").read_text().splitlines()]
    shown = [cloud_driver.ui_line(m) for m in lines]
    assert shown == [
        None,
        "  module.cluster.aws_instance.node[0]: Creating...",
        None,
        "  module.cluster.aws_instance.node[0]: Creation complete after 13s [id=i-0a1b2c3d4e5f60718]",
        "  Apply complete! Resources: 31 added, 0 changed, 0 destroyed.",
        None,
    ]
    assert cloud_driver.change_summary(lines) == {"add": 31, "change": 0, "remove": 0}
