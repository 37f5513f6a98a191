"""The API over a fake node, with real users, tokens, sessions and audit log in a temporary
/etc/safekit/api."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_env import Env, make_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def pytest_unconfigure(config: pytest.Config) -> None:
    module = sys.modules.get("test_api_schemathesis")
    if module is not None:
        module.shutdown()
