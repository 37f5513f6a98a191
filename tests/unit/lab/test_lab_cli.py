"""Bad input gets one clear line and a non-zero exit, before anything is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from safekit import cli
from safekit.lab import cli as lab_cli
from safekit.lab import system
from safekit.lab.topology import LabError


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse exits on usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_usage_error_is_one_line_naming_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "lab", "up", "--nodes", "two")
    assert code == 2
    assert err.count("\n") == 1
    assert "--nodes" in err and "invalid int value" in err


def test_missing_lab_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "lab")
    assert code == 2
    assert "required" in err


def test_long_lab_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "lab", "status", "--name", "muchtoolongname")
    assert code == 1
    assert err.strip() == (
        "safekit lab: lab name 'muchtoolongname' is too long (15 characters, at most 9: "
        "it becomes part of Linux interface names)"
    )


def test_not_root_is_refused_before_anything_is_created(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(system.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("SAFEKIT_LAB_ROOT", str(tmp_path))
    code, _, err = run_cli(capsys, "lab", "up", "--name", "unit")
    assert code == 1
    assert "must run as root" in err
    assert err.count("\n") == 1


def test_missing_tools_name_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        system.shutil, "which", lambda tool: None if tool in ("nft", "ip") else "/bin/" + tool
    )
    monkeypatch.setattr(system.os, "access", lambda path, mode: False)
    with pytest.raises(LabError, match=r"apt-get install iproute2 nftables openssh-server"):
        system.preflight()


def test_exec_without_a_command_says_how() -> None:
    with pytest.raises(LabError, match="give the command after '--'"):
        lab_cli._command_argv(["--"], "exec")
