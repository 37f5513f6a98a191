"""`<loadbalancing_list>` as SafeKit users write it: groups without `<cluster>`, several groups."""

from __future__ import annotations

import pytest

from safekit.config import ConfigError, LoadBalancing, parse_module

FARM = """<safe><service mode="farm"><farm><lan name="default"/></farm>
<vip><interface_list><interface><virtual_interface type="vmac_invisible">
  <virtual_addr addr="198.18.0.200" where="alias"/></virtual_interface></interface></interface_list>
<loadbalancing_list>{groups}</loadbalancing_list></vip></service></safe>"""


def _groups(groups: str) -> tuple[LoadBalancing, ...]:
    module, _ = parse_module(FARM.format(groups=groups), "userconfig.xml", env={})
    assert module.vip is not None
    return module.vip.loadbalancing


def _errors(groups: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_module(FARM.format(groups=groups), "userconfig.xml", env={})
    return [str(e) for e in caught.value.errors]


def test_a_group_without_cluster_loads_with_no_hosts_meaning_every_node() -> None:
    (web,) = _groups('<group name="web"><rule port="80" proto="tcp" filter="on_port"/></group>')
    assert web.name == "web" and web.hosts == ()


def test_several_groups_with_their_own_hosts_rules_and_filters() -> None:
    web, api = _groups(
        '<group name="web"><rule port="80" proto="tcp" filter="on_addr"/></group>'
        '<group name="api"><cluster><host name="node2"/><host name="node3" power="3"/></cluster>'
        '<rule virtual_addr="198.18.0.200" port="5353" proto="udp" filter="on_ipid"/></group>'
    )
    assert web.hosts == () and [(h.name, h.power) for h in api.hosts] == [("node2", 1), ("node3", 3)]
    assert [(r.port, r.proto, r.filter) for r in api.rules] == [(5353, "udp", "on_ipid")]


def test_an_empty_cluster_and_a_host_listed_twice_are_refused() -> None:
    (error,) = _errors('<group name="g"><cluster></cluster><rule port="80"/></group>')
    assert "no <host" in error and "leave <cluster> out" in error
    (error,) = _errors(
        '<group name="g"><cluster><host name="a"/><host name="a" power="2"/></cluster>'
        '<rule port="80"/></group>'
    )
    assert "'a' is listed twice" in error
