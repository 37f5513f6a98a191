"""Integration tests build real lab hosts: they need root, and they fail (not skip) without it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.lab import Lab


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
    lab = Lab("itest")
    lab.down()  # leftovers of an interrupted earlier run
    lab.up(nodes=2, witness=True, client=True)
    try:
        yield lab
    finally:
        lab.down()
