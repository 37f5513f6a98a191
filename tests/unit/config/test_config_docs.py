"""docs/config.md stays true: its examples load, and it lists exactly the ignored attributes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safekit.config import parse_cluster, parse_module
from safekit.config.compat import IGNORED_ATTRIBUTES
from safekit.config.module import DEFAULT_HEARTBEAT_PULSE, DEFAULT_HEARTBEAT_TIMEOUT

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"
XML_BLOCKS = re.findall(r"```xml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("block", XML_BLOCKS)
def test_every_xml_example_of_the_doc_is_valid(block: str) -> None:
    if "<cluster>" in block.split("\n", 1)[0]:
        parse_cluster(block, "config.md")
    else:
        parse_module(block, "config.md", env={})


def test_the_ignored_attributes_table_matches_the_code() -> None:
    rows = re.findall(r"^\| (?:cluster\.xml )?`<(\w+)>` \| `(\w+)` \|", DOC.read_text(), flags=re.MULTILINE)
    documented = {(("lans/lan" if tag == "lan" else tag), attribute) for tag, attribute in rows}
    in_code = {(key, attribute) for key, attributes in IGNORED_ATTRIBUTES.items() for attribute in attributes}
    assert documented == in_code


def test_the_documented_heartbeat_defaults_are_the_real_ones() -> None:
    text = DOC.read_text()
    assert (DEFAULT_HEARTBEAT_PULSE, DEFAULT_HEARTBEAT_TIMEOUT) == (0.2, 1.5)
    assert "`pulse` (**200ms**); `timeout` (**1500ms**)" in text
