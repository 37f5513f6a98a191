"""The rfs integration tests' engine (rfs_engines.py): native_missing marks become strict xfails
when they run on the native engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from rfs_engines import ENGINE

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "native_missing(what): needs a feature the native replication programs lack (strict xfail there)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENGINE != "native":
        return
    for item in items:
        if Path(str(item.fspath)).parent != HERE:
            continue
        mark = item.get_closest_marker("native_missing")
        if mark is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"native engine: {mark.args[0]}"))
