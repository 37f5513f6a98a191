"""Every mistake is reported with file:line, element and what is allowed, all of them at once."""

from __future__ import annotations

import re

import pytest

from safekit.config import ConfigError, parse_cluster, parse_module

MINIMAL = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart>
    <heartbeat name="default"/>
  </heart>
</service>
</safe>
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_module(text, "userconfig.xml", env={} if env is None else env)
    return [str(e) for e in caught.value.errors]


def test_minimal_mirror_is_valid() -> None:
    module, warnings = parse_module(MINIMAL, "userconfig.xml", env={})
    assert module.heart is not None and warnings == ()


def test_bad_duration_names_file_line_element_attribute_and_the_accepted_forms() -> None:
    text = MINIMAL.replace('<heartbeat name="default"/>', '<heartbeat name="default" pulse="7x"/>')
    assert errors_of(text) == [
        "userconfig.xml:5: <heartbeat>: attribute 'pulse': '7x' is not a duration (use e.g. 700ms, 2s)"
    ]


def test_every_problem_of_the_file_is_reported_in_one_pass() -> None:
    text = MINIMAL.replace('<service mode="mirror">', '<service mode="mirorr" maxloop="many">').replace(
        '<heartbeat name="default"/>', '<heartbeat name="default" timeout="-1"/>\n    <beat/>'
    )
    found = errors_of(text)
    assert len(found) == 4
    assert all(re.match(r"userconfig\.xml:\d+: <\w+>: ", line) for line in found)
    assert (
        "userconfig.xml:3: <service>: attribute 'mode': 'mirorr' is not allowed (use one of: mirror, farm)"
        in found
    )
    assert any(line.startswith("userconfig.xml:3: <service>: attribute 'maxloop'") for line in found)
    assert any(line.startswith("userconfig.xml:6: <heart>: unknown element <beat>") for line in found)


def test_unknown_element_is_an_error_listing_what_is_allowed() -> None:
    text = MINIMAL.replace("</heart>", "</heart>\n  <vhosts/>")
    (message,) = errors_of(text)
    assert message.startswith(
        "userconfig.xml:7: <service>: unknown element <vhosts> (allowed here: <heart>, <farm>"
    )


def test_unknown_attribute_is_an_error_listing_what_is_allowed() -> None:
    text = MINIMAL.replace('name="default"', 'name="default" colour="red"')
    assert errors_of(text) == [
        "userconfig.xml:5: <heartbeat>: unknown attribute 'colour' (allowed: ident, name, pulse, timeout)"
    ]


def test_knowingly_ignored_safekit_attribute_is_a_returned_warning() -> None:
    text = MINIMAL.replace("</heart>", '</heart>\n  <user userlogsize="2048"/>')
    _, warnings = parse_module(text, "userconfig.xml", env={})
    (warning,) = warnings
    assert str(warning).startswith(
        "userconfig.xml:7: <user>: attribute 'userlogsize' is accepted for SafeKit"
    )


def test_macros_then_environment_expand_in_attribute_values() -> None:
    text = MINIMAL.replace("<service", '<macro name="LAN" value="%PREFIX%default"/>\n<service').replace(
        'name="default"', 'name="%LAN%" pulse="%PULSE%"'
    )
    module, _ = parse_module(text, "userconfig.xml", env={"PREFIX": "", "PULSE": "300ms"})
    assert module.heart is not None
    assert (module.heart.heartbeats[0].name, module.heart.heartbeats[0].pulse) == ("default", 0.3)
    assert module.macros == (("LAN", "default"),)


def test_unknown_macro_names_file_line_and_how_to_define_it() -> None:
    text = MINIMAL.replace('name="default"', 'name="%NOPE%"')
    (message,) = errors_of(text, env={})
    assert message.startswith(
        "userconfig.xml:5: <heartbeat>: attribute 'name': %NOPE% is neither a macro nor"
    )
    assert '<macro name="NOPE"' in message


def test_a_lone_percent_sign_is_literal() -> None:
    text = MINIMAL.replace("</heart>", '</heart>\n  <user><var name="LOAD" value="80%"/></user>')
    module, _ = parse_module(text, "userconfig.xml", env={})
    assert module.user is not None and module.user.vars[0].value == "80%"


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ('<service mode="mirror" defaultprim="a b">', "attribute 'defaultprim': 'a b' is not a name"),
        ('<service mode="mirror" failover="maybe">', "use on/off or yes/no"),
        ('<service mode="mirror" boot="sometimes">', "use one of: on, off, auto, ignore"),
        ('<service mode="farm">', "a farm needs <farm>"),
    ],
)
def test_service_values_are_checked(replacement: str, expected: str) -> None:
    found = errors_of(MINIMAL.replace('<service mode="mirror">', replacement))
    assert any(expected in line and line.startswith("userconfig.xml:3: <service>:") for line in found), found


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            '<vip><interface_list><interface><real_interface><virtual_addr addr="10.0.0.300"/>'
            "</real_interface></interface></interface_list></vip>",
            "'10.0.0.300' is not an IP address",
        ),
        (
            '<vip><interface_list><interface><real_interface><virtual_addr addr="2001:db8::10" '
            'provider="aws_route"/></real_interface></interface></interface_list></vip>',
            "2001:db8::10 is IPv6: the aws_route provider holds IPv4 addresses only",
        ),
        (
            '<check><tcp ident="t"><to addr="127.0.0.1" port="70000"/></tcp></check>',
            "is not a port (use 1-65535)",
        ),
        ('<check><tcp ident="t"><to addr="127.0.0.1"/></tcp></check>', "missing required attribute 'port'"),
        ('<rfs><replicated dir="relative/dir"/></rfs>', "must be an absolute path"),
        ('<rfs><replicated dir="/a"/><replicated dir="/a/b"/></rfs>', "'/a/b' overlaps '/a'"),
        ('<rfs async="maybe"><replicated dir="/a"/></rfs>', "use one of: second, none"),
        ('<rfs><replicated dir="/a"><notreplicated path="../etc"/></replicated></rfs>', "without '..'"),
        (
            '<rfs><replicated dir="/a"><notreplicated regexpath="(["/></replicated></rfs>',
            "is not a regular expression",
        ),
        ('<errd><proc name="x" action="restart"/></errd>', "missing required attribute 'class'"),
        ('<errd><proc action="restart" class="prim"/></errd>', "give 'name' (the process or service name)"),
        (
            '<errd><proc name="x" action="restart" class="prim" atleast="3" atmax="1"/></errd>',
            "atmax (1) is smaller",
        ),
        ('<user><var name="1BAD" value="x"/></user>', "is not an environment variable name"),
        ('<check><splitbrain arg="witness..example"/></check>', "neither an IPv4 address nor a host name"),
        (
            '<check><splitbrain exec="arbitrator" arg="198.18.0.9 198.18.0.10"/></check>',
            "takes one arbiter address",
        ),
        (
            '<check><splitbrain exec="arbitrator" arg="198.18.0.9:99999"/></check>',
            "the port must be a number",
        ),
        ('<check><splitbrain exec="quorum" arg="198.18.0.9"/></check>', "ping, arbitrator"),
        (
            '<check><custom ident="a" exec="x"/><custom ident="a" exec="y"/></check>',
            "ident 'a' is already used",
        ),
        (
            "<failover><![CDATA[r: if (tcp.nope == down) then stop();]]></failover>",
            "'tcp.nope' is not declared",
        ),
        (
            "<failover><![CDATA[r: if (disk.x == down) then stop();]]></failover>",
            "unknown resource class 'disk'",
        ),
    ],
)
def test_section_errors_name_file_line_and_element(section: str, expected: str) -> None:
    text = MINIMAL.replace("</heart>", "</heart>\n  " + section)
    found = errors_of(text)
    assert any(expected in line for line in found), found
    assert all(re.match(r"userconfig\.xml:(7|8): <\w+>: ", line) for line in found), found


def test_failover_rule_errors_carry_the_line_of_the_rule() -> None:
    rules = (
        "<failover>\n<![CDATA[\n"
        "  ok: if (heartbeat.default == down) then wait();\n"
        "  bad: if (heartbeat.default = down) then wait();\n"
        "  worse: if (heartbeat.default == down) then explode();\n"
        "]]>\n</failover>"
    )
    found = errors_of(MINIMAL.replace("</heart>", "</heart>\n  " + rules))
    assert found[0].startswith(
        "userconfig.xml:10: <failover>: failover rule: unexpected character '=' (compare with '==')"
    )
    assert found[1].startswith("userconfig.xml:11: <failover>: failover rule: unknown action 'explode'")


def test_duplicate_sections_are_errors() -> None:
    found = errors_of(MINIMAL.replace("</heart>", "</heart>\n  <heart><heartbeat/></heart>"))
    assert "userconfig.xml:7: <heart>: <heart> may appear only once in <service>" in found


def test_root_must_be_safe_and_cluster_must_be_cluster() -> None:
    assert errors_of("<cluster/>") == [
        "userconfig.xml:1: <cluster>: the root element of userconfig.xml must be <safe>"
    ]
    with pytest.raises(
        ConfigError, match=r"^cluster.xml:1: <safe>: the root element of cluster.xml must be <cluster>"
    ):
        parse_cluster("<safe/>", "cluster.xml")


def test_cluster_errors_are_collected_with_lines() -> None:
    text = """<cluster>
  <lans port="0">
    <lan name="default">
      <node name="n1" addr="10.0.0.1"/>
      <node name="n1" addr="10.0.0.2"/>
      <node name="n3" addr="10.0.0.1"/>
      <node name="n4"/>
    </lan>
  </lans>
</cluster>"""
    with pytest.raises(ConfigError) as caught:
        parse_cluster(text, "cluster.xml")
    assert [str(e) for e in caught.value.errors] == [
        "cluster.xml:2: <lans>: attribute 'port': '0' is not a port (use 1-65535)",
        "cluster.xml:5: <node>: node 'n1' appears twice in LAN 'default'",
        "cluster.xml:6: <node>: address 10.0.0.1 is given to both 'n1' and 'n3'",
        "cluster.xml:7: <node>: missing required attribute 'addr'",
    ]


RICH = MINIMAL.replace(
    "</heart>",
    '</heart>\n  <vip><interface_list><interface><real_interface><virtual_addr addr="10.0.0.9"/>'
    "</real_interface></interface></interface_list></vip>\n"
    '  <check><ping ident="gw"><to addr="10.0.0.1"/></ping></check>\n'
    "  <failover><![CDATA[gw: if (ping.gw == down) then wait();]]></failover>",
)


@pytest.mark.parametrize("position", range(len(RICH)))
def test_any_one_character_typo_gives_a_config_error_or_a_valid_module(position: int) -> None:
    text = RICH[:position] + RICH[position + 1 :]
    try:
        parse_module(text, "userconfig.xml", env={})
    except ConfigError as problems:
        assert all(str(e).startswith("userconfig.xml:") for e in problems.errors)


@pytest.mark.parametrize(
    ("arg", "host", "port"),
    [
        ("198.18.0.9", "198.18.0.9", 9455),
        ("198.18.0.9:7000", "198.18.0.9", 7000),
        ("witness", "witness", 9455),
    ],
)
def test_the_arbitrating_witness_takes_one_address_and_an_optional_port(
    arg: str, host: str, port: int
) -> None:
    text = MINIMAL.replace(
        "</service>", f'<check><splitbrain exec="arbitrator" arg="{arg}"/></check></service>'
    )
    module, _ = parse_module(text, "userconfig.xml", env={})
    sb = module.check.splitbrain
    assert sb is not None and (sb.exec, sb.witnesses, sb.port) == ("arbitrator", (host,), port)


@pytest.mark.parametrize(
    ("value", "ok"), [("15%", True), ("2G", True), ("512M", True), ("100%", False), ("lots", False)]
)
def test_the_split_brain_save_keeps_free_space_as_configured(value: str, ok: bool) -> None:
    text = MINIMAL.replace(
        "</service>", f'<rfs splitbrain_keep_free="{value}"><replicated dir="/srv/data"/></rfs></service>'
    )
    if ok:
        module, _ = parse_module(text, "userconfig.xml", env={})
        assert module.rfs is not None and module.rfs.splitbrain_keep_free == value
    else:
        assert any("splitbrain_keep_free" in e for e in errors_of(text))
