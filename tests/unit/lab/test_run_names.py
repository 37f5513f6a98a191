"""Lab names of a test run (ADR 0066): valid lab names, one set per run, never another run's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from safekit.lab.run_names import (
    PREFIX_ENV,
    forget_run,
    prefix_for_pid,
    register_run,
    run_lab_name,
    run_prefix,
    stale_prefixes,
)
from safekit.lab.topology import MAX_NAME_LEN, LabError, validate_name

INTEGRATION = Path(__file__).resolve().parents[2] / "integration"
NAMED = re.compile(r"""(?:run_lab_name|lab_up|fresh_lab)\(\s*"([a-z0-9]+)["]""")
HARD_CODED = re.compile(
    r"""\bLab\(\s*"[a-z0-9]+"\s*\)"""  # Lab("itvip")
    r"""|^LAB(?:_NAME)?\s*=\s*"[a-z0-9]+"$"""  # LAB = "itvip"
    r"""|"lab",\s*"[a-z]+",\s*"--name",\s*"[a-z0-9]+["]""",  # safekit lab up --name itvip
    re.MULTILINE,
)


def bases_in_the_integration_tests() -> set[str]:
    """Every lab name base the integration tests give (directly, or through their lab helpers)."""
    bases: set[str] = set()
    for path in INTEGRATION.rglob("*.py"):
        bases.update(NAMED.findall(path.read_text(encoding="utf-8")))
    return bases


def test_the_integration_tests_name_their_labs_through_the_helper() -> None:
    bases = bases_in_the_integration_tests()
    assert {"itest", "ip16", "itans", "ansitfarm", "tplmirror", "h24a"} <= bases
    hard_coded = [
        f"{path.name}: {m.group(0)}"
        for path in INTEGRATION.rglob("*.py")
        for m in HARD_CODED.finditer(path.read_text(encoding="utf-8"))
    ]
    assert hard_coded == [], "a lab named without run_lab_name is shared by every run"


@pytest.mark.parametrize("prefix", ["t", "t0zz", "hyg", "a9"])
def test_every_name_fits_and_the_runs_names_stay_distinct(prefix: str) -> None:
    bases = bases_in_the_integration_tests()
    names = {base: run_lab_name(base, prefix) for base in bases}
    for base, name in names.items():
        assert validate_name(name) == name
        assert len(name) <= MAX_NAME_LEN
        assert name.startswith(prefix)
        if len(prefix) + len(base) <= MAX_NAME_LEN:
            assert name == prefix + base, "a base that fits is kept whole (readable in `lab status`)"
    assert len(set(names.values())) == len(bases), "two tests of one run would share a lab"


def test_long_bases_that_share_a_beginning_stay_apart() -> None:
    names = {run_lab_name(base, "t0ab") for base in ("tplmirror", "tplmirrox", "tplmfarm", "ansitfarm")}
    assert len(names) == 4
    assert all(len(n) == MAX_NAME_LEN for n in names)


def test_two_runs_never_share_a_name() -> None:
    bases = bases_in_the_integration_tests()
    first = {run_lab_name(b, prefix_for_pid(4242)) for b in bases}
    second = {run_lab_name(b, prefix_for_pid(4243)) for b in bases}
    assert first.isdisjoint(second)


def test_pid_prefixes_differ_for_pids_closer_than_36_cubed() -> None:
    prefixes = {prefix_for_pid(pid) for pid in range(100_000, 100_000 + 36**3)}
    assert len(prefixes) == 36**3
    assert all(re.fullmatch(r"t[a-z0-9]{3}", p) for p in prefixes)


def test_the_prefix_comes_from_the_environment_else_from_the_pid_and_is_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PREFIX_ENV, "ci7")
    assert run_prefix() == "ci7"
    assert run_lab_name("itvip") == "ci7itvip"
    monkeypatch.delenv(PREFIX_ENV)
    made = run_prefix()
    assert made == prefix_for_pid(__import__("os").getpid())
    child = subprocess.run(
        [sys.executable, "-c", "from safekit.lab.run_names import run_prefix; print(run_prefix())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == made, "a process the run starts names labs with the same prefix"


@pytest.mark.parametrize("prefix", ["", "1ab", "toolong", "a-b", "AB"])
def test_a_bad_prefix_is_refused(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv(PREFIX_ENV, prefix)
    if prefix:
        with pytest.raises(LabError, match=PREFIX_ENV):
            run_prefix()
    with pytest.raises(LabError):
        run_lab_name("itest", prefix or "-")


def test_a_dead_runs_prefix_is_stale_a_live_one_is_not(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    register_run("tdea", pid=gone.pid, runs_dir=tmp_path)
    register_run("tliv", runs_dir=tmp_path)  # this process: alive
    assert stale_prefixes(tmp_path) == ["tdea"]
    forget_run("tdea", tmp_path)
    assert stale_prefixes(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tliv"]
