"""schemathesis against the published OpenAPI document: no input makes the API answer 5xx, and
answers keep to the document (status codes, content types, schemas)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from api_env import make_env
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from safekit.api import openapi

# The app must exist when the tests are collected: schemathesis reads the document it publishes.
_TMP = Path(tempfile.mkdtemp(prefix="safekit-schemathesis-"))
_ENVS = make_env(_TMP)
ENV = next(_ENVS)
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", ENV.client.app)


def shutdown() -> None:
    """Close the test client (its portal thread would keep the interpreter alive) and the files.
    Also called by conftest.py at the end of the session: collected but deselected, or collected
    only, this module never reaches its fixture's teardown."""
    _ENVS.close()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    shutdown()


def test_the_app_publishes_the_document() -> None:
    assert schema.raw_schema == openapi.document(schema.raw_schema["info"]["version"])


@schema.exclude(path="/api/v1/events").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error(case: schemathesis.Case) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ENV.admin}"}
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    case.validate_response(
        response,
        checks=(status_code_conformance, content_type_conformance, response_schema_conformance),
    )
