"""docs/api.md documents every endpoint the OpenAPI document lists, with each of its methods."""

from __future__ import annotations

import re
from pathlib import Path

from safekit.api import openapi

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def endpoint_rows() -> list[str]:
    text = DOC.read_text()
    table = text[text.index("## Endpoints") :]
    return [line for line in table.splitlines() if line.startswith("| `")]


def test_every_openapi_path_and_method_is_in_the_endpoints_table() -> None:
    rows = endpoint_rows()
    missing = []
    for path, operations in openapi.document("test")["paths"].items():
        shown = path.replace("{module}", "AM")
        # the path itself, not one it is the start of (`/modules/AM` against `/modules/AM/log`)
        pattern = re.compile(re.escape(shown) + r"(?![\w/])")
        found = [row for row in rows if pattern.search(row)]
        for method in operations:
            if not any(method.upper() in row for row in found):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"docs/api.md does not document: {missing}"


def test_the_openapi_document_is_listed_too() -> None:
    assert any("GET /api/v1/openapi.json" in row for row in endpoint_rows())
