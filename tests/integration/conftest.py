"""Integration tests build real lab hosts: they need root, and they fail (not skip) without it.

Every test names its lab with `run_lab_name(base)` (safekit.lab.run_names): the name carries this
run's prefix, so two runs on one machine never take down each other's labs. The prefix is
$SAFEKIT_TEST_LAB_PREFIX, or made from this process's pid; in that case the run is recorded, and a
later run takes down the labs of a recorded run whose process died without doing it (ADR 0066).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab, LabError
from safekit.lab.lab import lab_root
from safekit.lab.run_names import (
    PREFIX_ENV,
    forget_run,
    register_run,
    run_lab_name,
    run_prefix,
    stale_prefixes,
)

_OWN_PREFIX: list[str] = []
"""The prefix this process made from its pid and recorded (empty when the environment gave one)."""


def pytest_configure(config: pytest.Config) -> None:
    made_here = not os.environ.get(PREFIX_ENV)
    prefix = run_prefix()
    if os.geteuid() != 0:
        return
    for stale in stale_prefixes():
        _down_labs_of(stale)
        forget_run(stale)
    if made_here:
        register_run(prefix)
        _OWN_PREFIX.append(prefix)


def pytest_unconfigure(config: pytest.Config) -> None:
    for prefix in _OWN_PREFIX:
        forget_run(prefix)


def pytest_report_header(config: pytest.Config) -> str:
    return f"lab names: prefix {run_prefix()} (${PREFIX_ENV})"


def _down_labs_of(prefix: str) -> None:
    root = lab_root()
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.name.startswith(prefix) and (path / "state.json").exists():
                with contextlib.suppress(LabError):  # a sweep must not stop this run
                    Lab(path.name).down()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests build network namespaces: run them as root (make test does)")


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    """A 2-node lab with witness and client, removed at the end of the module."""
    lab = Lab(run_lab_name("itest"))
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()
