"""Fuzz the REST API (safekit.api) through Starlette's in-process ASGI client, over a fake node.

schemathesis generates requests from the published OpenAPI document, inside and outside its
schemas, with an admin token, a monitor token and no credentials at all. Contract: no answer is a
5xx; every answer keeps to the document (a documented status code, its content type, its schema).
Two targeted fuzzers add what schemathesis does not try: configuration files from the config
fuzzers posted to /api/v1/config/validate, and raw request bodies.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from api_env import make_env  # tests/unit/api: the API tests' fake node (conftest.py)
from config_inputs import MODULES, xml_mutation
from fuzz_support import LONG, count, fuzz_settings, run_decoder, timeout_seconds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.timeout(timeout_seconds())

# schemathesis reads the document the app publishes when the tests are collected.
_TMP = Path(tempfile.mkdtemp(prefix="safekit-fuzz-api-"))
_ENVS = make_env(_TMP)
ENV = next(_ENVS)
CHECKS = (status_code_conformance, content_type_conformance, response_schema_conformance)


def _operations(*, coverage: bool) -> schemathesis.schemas.BaseSchema:
    """The document's operations; `coverage`: also schemathesis's coverage phase (hundreds of
    boundary cases per run, the same every run: worth it once per run, not once per role)."""
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", ENV.client.app)
    schema.config.phases.coverage.enabled = coverage
    # /api/v1/events streams until the client goes away: the in-process client would wait forever.
    return schema.exclude(path="/api/v1/events")


operations = _operations(coverage=True)
other_roles = _operations(coverage=LONG)
API_SETTINGS = settings(fuzz_settings(0.05), suppress_health_check=list(HealthCheck))


def shutdown() -> None:
    """Close the test client (its portal thread would keep the interpreter alive) and the files;
    conftest.py calls it too, for a run that collected this module but did not run it."""
    _ENVS.close()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    shutdown()


def _call(case: schemathesis.Case, token: str | None, target: str) -> None:
    count(target)
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    case.headers = headers
    response, _ = run_decoder(f"{case.method} {case.path}", case.call, ())
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    case.validate_response(response, checks=CHECKS)


@operations.parametrize()
@API_SETTINGS
def test_api_with_an_admin_token(case: schemathesis.Case) -> None:
    _call(case, ENV.admin, "api: schemathesis, admin token")


@other_roles.parametrize()
@API_SETTINGS
def test_api_with_a_monitor_token(case: schemathesis.Case) -> None:
    _call(case, ENV.monitor, "api: schemathesis, monitor token")


@other_roles.parametrize()
@API_SETTINGS
def test_api_without_credentials(case: schemathesis.Case) -> None:
    _call(case, None, "api: schemathesis, no credentials")


def _validation_answer(xml: str) -> None:
    response = ENV.client.post("/api/v1/config/validate", json={"xml": xml}, headers=ENV.headers(ENV.admin))
    assert response.status_code in (200, 400, 413), f"{response.status_code} {response.text}"
    if response.status_code != 200:
        return
    answer = response.json()
    assert answer["valid"] is (not answer["errors"])
    for problem in answer["errors"] + answer["warnings"]:
        assert isinstance(problem["line"], int) and problem["line"] >= 0
        assert isinstance(problem["message"], str) and problem["message"].strip()


@given(st.data())
@fuzz_settings(0.5)
def test_validating_mutated_configuration_files(data: st.DataObject) -> None:
    count("api: config/validate with mutated files")
    original = MODULES[data.draw(st.sampled_from(sorted(MODULES)))].encode()
    # What a browser or a JSON client can send: Unicode text without lone surrogates.
    _validation_answer(data.draw(xml_mutation(original)).decode("utf-8", "replace"))


_POSTS = ("/api/v1/session", "/api/v1/control", "/api/v1/config/validate", "/api/v1/modules/web/commands")


@given(
    st.sampled_from(_POSTS),
    st.binary(max_size=300)
    | st.text(max_size=100).map(str.encode)
    | st.sampled_from((b"{}", b"[]", b"null", b'{"xml": ""}', b'{"cmd": null}', b"1e999999", b"\xff")),
    st.sampled_from(("application/json", "text/plain", "application/json; charset=latin-1", "")),
    st.booleans(),
)
@fuzz_settings(0.5)
def test_raw_request_bodies(path: str, body: bytes, content_type: str, authenticated: bool) -> None:
    count("api: raw request bodies")
    headers = {"content-type": content_type}
    if authenticated:
        headers.update(ENV.headers(ENV.admin))
    response = ENV.client.post(path, content=body, headers=headers)
    assert response.status_code < 500, f"POST {path} {body!r}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json")


# --------------------------------------------------------------------------- found by fuzzing
# Inputs that crashed src/safekit/api/app.py (500s), fixed: _json_body maps RecursionError, _xml_of
# refuses text that is not valid Unicode.


def test_a_lone_surrogate_in_the_xml_is_a_400_not_a_500() -> None:
    response = ENV.client.post(
        "/api/v1/config/validate",
        content=b'{"xml": "\\ud800"}',
        headers={**ENV.headers(ENV.admin), "content-type": "application/json"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/api/v1/config/validate", "/api/v1/session"])
def test_json_nested_too_deeply_is_a_400_not_a_crash(path: str) -> None:
    headers = {**ENV.headers(ENV.admin), "content-type": "application/json"}
    response = ENV.client.post(path, content=b"[" * 50_000, headers=headers)
    assert response.status_code == 400
