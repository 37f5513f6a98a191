"""Farm modules and cloud VIP providers in the collection's userconfig.xml renderer and parser: what
safekit.ha.app_module renders for `mode: farm` (membership, shared VIPs, load balancing) and for a VIP
with a cloud provider passes the engine's validator, the engine reads the values that were given,
and safekit.ha.node_info gives back the same parameters (round trip)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from safekit_collection import MODULES

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.decisions import command_changes, reached
from ansible_collections.safekit.ha.plugins.module_utils.userconfig import (
    NotStructured,
    canonical_params,
    param_problems,
    parse_userconfig,
    render_userconfig,
)
from ansible_collections.safekit.ha.plugins.modules import app_module as module_plugin
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.config import parse_module

SPEC_VALIDATOR = ArgumentSpecValidator(
    module_plugin.ARGUMENT_SPEC,
    mutually_exclusive=[["userconfig", key] for key in module_plugin.STRUCTURED],
)


def engine_reads(xml: str) -> Any:
    return parse_module(xml, "userconfig.xml", env={}).config


def as_ansible_gives_them(params: dict[str, Any]) -> dict[str, Any]:
    result = SPEC_VALIDATOR.validate(dict(params, name="am"))
    assert not result.error_messages, result.error_messages
    validated = dict(result.validated_parameters)
    return {key: validated[key] for key in module_plugin.STRUCTURED}


names = st.from_regex(r"[a-z][a-z0-9_-]{0,7}", fullmatch=True)
ipv4 = st.tuples(st.integers(18, 19), st.integers(0, 255), st.integers(1, 254)).map(
    lambda t: "198.{}.{}.{}".format(*t)
)
option_values = st.sampled_from(["rtb-1", "a b", 'x"<&>', ""]) | st.booleans() | st.integers(0, 9)
providers = st.fixed_dictionaries(
    {},
    optional={
        "provider": st.sampled_from(["aws_route", "azure_route", "gcp_route", "gcp_ilb"]),
    },
).flatmap(
    lambda p: (
        st.just(p)
        if not p
        else st.fixed_dictionaries(
            {"provider": st.just(p["provider"])},
            optional={
                "options": st.dictionaries(names, option_values | st.lists(names, max_size=2), max_size=3)
            },
        )
    )
)
farm_vips = st.lists(
    st.tuples(
        st.fixed_dictionaries(
            {"addr": ipv4},
            optional={
                "netmask": st.sampled_from(["24", "32"]),
                "interface": names,
                "type": st.just("vmac_invisible"),
            },
        ),
        providers,
    ).map(lambda t: {**t[0], **t[1]}),
    max_size=3,
    unique_by=lambda v: v["addr"],
)


@st.composite
def farm_params(draw: st.DrawFn) -> dict[str, Any]:
    lans = draw(
        st.lists(
            st.fixed_dictionaries({"name": names}, optional={"power": st.integers(0, 3)}),
            min_size=1,
            max_size=2,
            unique_by=lambda lan: lan["name"],
        )
    )
    params: dict[str, Any] = {"mode": "farm"}
    if draw(st.booleans()):
        params["farm"] = draw(
            st.fixed_dictionaries(
                {"lans": st.just(lans)},
                optional={
                    "pulse": st.sampled_from(["100ms", "50", "1s"]),
                    "mlost_count": st.integers(2, 20),
                    "slost_count": st.integers(1, 10),
                    "port": st.integers(1024, 65535),
                },
            )
        )
    vips = draw(farm_vips)
    if vips:
        params["vip"] = vips
        hosts = draw(
            st.lists(
                st.fixed_dictionaries({"name": names}, optional={"power": st.integers(0, 4)}),
                min_size=1,
                max_size=4,
                unique_by=lambda h: h["name"],
            )
        )
        targets = st.sampled_from(["*", *[v["addr"] for v in vips]])
        rule = st.fixed_dictionaries(
            {"port": st.integers(1, 65535)},
            optional={"virtual_addr": targets, "proto": st.sampled_from(["tcp", "udp"])},
        ).flatmap(
            lambda r: st.fixed_dictionaries(
                {k: st.just(v) for k, v in r.items()},
                optional={"filter": st.sampled_from(["on_addr", "on_port"])},
            )
        )
        if draw(st.booleans()):
            params["loadbalancing"] = [
                {"name": draw(names), "hosts": hosts, "rules": draw(st.lists(rule, min_size=1, max_size=3))}
            ]
    for key, strategy in {
        "boot": st.sampled_from(["on", "off", "auto", "ignore"]),
        "maxloop": st.integers(0, 10),
        "user": st.just({"nicestoptimeout": "5s"}),
        "errd": st.just({"procs": [{"name": "nginx", "class": "both", "action": "restart"}]}),
        "checkers": st.just({"tcp": [{"ident": "web", "addr": "127.0.0.1", "port": 80, "when": "both"}]}),
    }.items():
        if draw(st.booleans()):
            params[key] = draw(strategy)
    return params


@settings(max_examples=150, deadline=None)
@given(farm_params())
def test_a_farm_renders_valid_xml_that_parses_back_to_the_same_parameters(params: dict[str, Any]) -> None:
    given_by_ansible = as_ansible_gives_them(params)
    assert param_problems(given_by_ansible) == []
    xml = render_userconfig(given_by_ansible)
    config = engine_reads(xml)
    assert config.service.mode == "farm" and config.heart is None
    back = parse_userconfig(xml)
    assert back == canonical_params(params)
    assert render_userconfig(back) == xml
    assert as_ansible_gives_them(back) is not None
    # The values the engine reads are those given.
    wanted_lans = (params.get("farm") or {}).get("lans") or [{"name": "default"}]
    assert [lan.name for lan in config.farm.lans] == [lan["name"] for lan in wanted_lans]
    addresses = [a for i in (config.vip.interfaces if config.vip else ()) for a in i.addresses]
    assert [a.addr for a in addresses] == [v["addr"] for v in params.get("vip", [])]
    for address, vip in zip(addresses, params.get("vip", []), strict=True):
        assert address.provider == vip.get("provider", "arp")
        assert dict(address.options) == canonical_params({"vip": [vip]})["vip"][0].get("options", {})
    if config.vip is not None and config.vip.interfaces:
        assert {i.vmac_type for i in config.vip.interfaces} == {"vmac_invisible"}
    for group, wanted in zip(
        config.vip.loadbalancing if config.vip else (), params.get("loadbalancing", []), strict=True
    ):
        assert [(h.name, h.power) for h in group.hosts] == [
            (h["name"], h.get("power", 1)) for h in wanted["hosts"]
        ]
        assert [r.port for r in group.rules] == [r["port"] for r in wanted["rules"]]


def test_the_documented_farm_example_renders_a_valid_farm() -> None:
    example = next(
        task["safekit.ha.app_module"]
        for task in yaml.safe_load(module_plugin.EXAMPLES)
        if task["safekit.ha.app_module"].get("mode") == "farm"
    )
    structured = {k: v for k, v in example.items() if k in module_plugin.STRUCTURED}
    xml = render_userconfig(as_ansible_gives_them(structured))
    config = engine_reads(xml)
    assert [(h.name, h.power) for h in config.vip.loadbalancing[0].hosts] == [
        ("web1", 1),
        ("web2", 1),
        ("web3", 2),
    ]
    assert config.vip.loadbalancing[0].rules[0].filter == "on_port"
    assert parse_userconfig(xml) == canonical_params(as_ansible_gives_them(structured))


def test_a_cloud_vip_of_a_mirror_carries_its_provider_and_options() -> None:
    params = {
        "vip": [
            {"addr": "10.99.0.10", "provider": "aws_route", "options": {"route_tables": ["rtb-1", "rtb-2"]}}
        ]
    }
    xml = render_userconfig(as_ansible_gives_them(params))
    address = engine_reads(xml).vip.interfaces[0].addresses[0]
    assert (address.provider, address.options) == ("aws_route", (("route_tables", "rtb-1,rtb-2"),))
    assert parse_userconfig(xml)["vip"] == [
        {"addr": "10.99.0.10", "provider": "aws_route", "options": {"route_tables": "rtb-1,rtb-2"}}
    ]


def test_a_minimal_farm_is_one_lan_and_the_vip_type_the_engine_runs() -> None:
    xml = render_userconfig({"mode": "farm", "vip": [{"addr": "198.18.0.200"}]})
    config = engine_reads(xml)
    assert [lan.name for lan in config.farm.lans] == ["default"]
    assert config.vip.interfaces[0].vmac_type == "vmac_invisible"
    assert parse_userconfig(xml) == {
        "mode": "farm",
        "farm": {"lans": [{"name": "default"}]},
        "vip": [{"addr": "198.18.0.200", "type": "vmac_invisible"}],
    }


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"mode": "farm", "heartbeats": [{"name": "default"}]}, "heartbeats: for mirror"),
        ({"mode": "farm", "heart_port": 4800}, "heart_port"),
        ({"mode": "farm", "defaultprim": "n1"}, "defaultprim"),
        ({"mode": "farm", "replication": {"dirs": [{"path": "/srv/www"}]}}, "replication"),
        ({"farm": {"lans": [{"name": "default"}]}}, "farm: for farm modules"),
        ({"mode": "mirror", "loadbalancing": [{"name": "g"}]}, "loadbalancing"),
        ({"vip": [{"addr": "198.18.0.9", "type": "vmac_invisible"}]}, "vip[].type"),
    ],
)
def test_parameters_of_the_other_kind_are_refused(params: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in param_problems(params))


def test_a_farm_file_without_vip_type_means_the_engines_default() -> None:
    xml = (
        '<safe><service mode="farm"><farm><lan name="default"/></farm><vip><interface_list><interface>'
        '<virtual_interface><virtual_addr addr="198.18.0.9"/></virtual_interface></interface>'
        '</interface_list><loadbalancing_list><group name="g"><cluster><host name="a"/></cluster>'
        '<rule port="*" proto="tcp"/></group></loadbalancing_list></vip></service></safe>'
    )
    back = parse_userconfig(xml)
    assert back["vip"] == [{"addr": "198.18.0.9", "type": "vmac_directed"}]
    assert back["loadbalancing"] == [{"name": "g", "hosts": [{"name": "a"}], "rules": [{"proto": "tcp"}]}]


@pytest.mark.parametrize(
    ("xml", "why"),
    [
        (
            '<safe><service mode="farm"><farm><lan name="d"/></farm><vip><interface_list><interface>'
            '<virtual_interface type="vmac_invisible"><virtual_addr addr="198.18.0.9" where="alias"/>'
            "</virtual_interface></interface></interface_list></vip></service></safe>",
            "where",
        ),
        ('<safe><service mode="farm"><heart><heartbeat name="d"/></heart></service></safe>', "no <farm>"),
        (
            '<safe><service mode="mirror"><heart><heartbeat name="d"/></heart>'
            '<farm><lan name="d"/></farm></service></safe>',
            "<farm> in a mirror",
        ),
    ],
)
def test_what_the_farm_parameters_cannot_say_is_refused(xml: str, why: str) -> None:
    with pytest.raises(NotStructured, match=why):
        parse_userconfig(xml)


def test_a_farm_node_up_is_started_and_up_ready_is_reached() -> None:
    assert not command_changes("start", "UP")
    assert command_changes("stop", "UP")
    assert reached({"state": "UP", "readiness": "Ready"}, ["UP"], ready=True)
    assert not reached({"state": "UP", "readiness": "Transient"}, ["UP"], ready=True)


def test_the_module_documents_farm_and_cloud_options() -> None:
    doc = yaml.safe_load(module_plugin.DOCUMENTATION)["options"]
    assert doc["mode"]["choices"] == ["mirror", "farm"]
    assert {"farm", "loadbalancing", "boot"} <= set(doc)
    assert {"type", "provider", "options"} <= set(doc["vip"]["suboptions"])
    assert (MODULES / "app_module.py").is_file()
