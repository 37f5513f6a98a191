"""Safe XML reading: SafeKit's bare DOCTYPE is fine, entities and external references are refused."""

from __future__ import annotations

import pytest

from safekit.config import ConfigError, parse_cluster, parse_module
from safekit.config.xmlread import read_xml

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE safe [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<safe><service mode="&lol3;"/></safe>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE cluster [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<cluster><lans><lan name="&secret;"/></lans></cluster>
"""


def test_a_bare_doctype_is_accepted_and_lines_are_those_of_start_tags() -> None:
    root = read_xml('<!DOCTYPE safe>\n<safe>\n  <service\n    mode="farm"/>\n</safe>\n', "u.xml")
    assert root.tag == "safe"
    assert root.line == 2
    assert root.children[0].line == 3
    assert dict(root.children[0].attributes) == {"mode": "farm"}


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    with pytest.raises(ConfigError, match="entity declarations and external references are not allowed"):
        parse_module(BILLION_LAUGHS, "userconfig.xml", env={})


def test_external_entity_is_refused() -> None:
    with pytest.raises(ConfigError, match="not allowed") as caught:
        parse_cluster(EXTERNAL_ENTITY, "cluster.xml")
    assert str(caught.value).startswith("cluster.xml:")


def test_external_dtd_is_refused() -> None:
    with pytest.raises(ConfigError, match="not allowed"):
        read_xml('<!DOCTYPE safe SYSTEM "http://example.invalid/safe.dtd">\n<safe/>', "u.xml")


def test_malformed_xml_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        read_xml("<safe>\n<service mode='mirror'>\n</safe>\n", "userconfig.xml")
    assert str(caught.value).startswith("userconfig.xml:3: not well-formed XML")


def test_bytes_honour_the_encoding_declaration() -> None:
    data = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<safe v="é"/>'.encode("latin-1")
    assert read_xml(data, "u.xml").attributes["v"] == "é"


def test_text_offsets_map_back_to_file_lines() -> None:
    root = read_xml("<f>\nline2\n<![CDATA[line3\nline4]]></f>", "u.xml")
    assert root.line_at(root.text.index("line2")) == 2
    assert root.line_at(root.text.index("line4")) == 4
