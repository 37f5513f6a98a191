"""`<interface check="on">`: as in SafeKit, the module gets an `<intf>` checker on the interface that
carries its VIP (resource `intf.NAME`, or `intf.ADDRESS` when the interface is not named; action
wait), so the module reacts when that link goes down."""

from __future__ import annotations

import pytest

from safekit.checkers.icmp import Pinger
from safekit.config import ConfigError, IntfCheck, parse_module
from safekit.daemon.checker_tasks import checker_specs
from safekit.daemon.module_executor import check_actions


def mirror(interface: str, addresses: str = '<virtual_addr addr="10.0.0.1"/>', extra: str = "") -> str:
    return f"""<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <vip><interface_list>{interface}<real_interface>
    {addresses}
  </real_interface></interface></interface_list></vip>
  {extra}
</service>
</safe>
"""


def farm(interface: str, address: str) -> str:
    return f"""<!DOCTYPE safe>
<safe>
<service mode="farm">
  <farm><lan name="default"/></farm>
  <vip><interface_list>{interface}<virtual_interface type="vmac_directed">
    <virtual_addr addr="{address}"/>
  </virtual_interface></interface></interface_list></vip>
</service>
</safe>
"""


def implicit(text: str) -> list[IntfCheck]:
    config, _ = parse_module(text, env={})
    return [c for c in config.check.intf if c.vip]


def test_a_named_interface_gets_an_intf_checker_with_the_intf_defaults() -> None:
    [check] = implicit(mirror('<interface name="eth1" check="on">'))
    assert (check.ident, check.when, check.action) == ("eth1", "prim", "wait")
    assert [(t.interface, t.addr, t.interval) for t in check.targets] == [("eth1", None, 10.0)]


def test_an_unnamed_interface_is_named_after_its_first_address_and_found_from_it() -> None:
    [check] = implicit(
        mirror('<interface check="on">', '<virtual_addr addr="10.0.0.1"/><virtual_addr addr="10.0.0.2"/>')
    )
    assert check.ident == "10.0.0.1"
    assert [(t.interface, t.addr) for t in check.targets] == [(None, "10.0.0.1")]


def test_a_farm_checks_on_both_and_an_unnamed_ipv6_interface_gets_none() -> None:
    [check] = implicit(farm('<interface name="eth1" check="on">', "198.18.0.100"))
    assert (check.ident, check.when) == ("eth1", "both")
    assert implicit(farm('<interface check="on">', "fd00::10")) == []
    assert [c.ident for c in implicit(farm('<interface name="eth1" check="on">', "fd00::10"))] == ["eth1"]


@pytest.mark.parametrize("interface", ['<interface check="off">', "<interface>", '<interface name="eth1">'])
def test_none_without_check_on(interface: str) -> None:
    assert implicit(mirror(interface)) == []


def test_none_for_an_interface_the_user_already_checks() -> None:
    mine = '<check><intf ident="lan"><to name="eth1"/></intf></check>'
    config, _ = parse_module(mirror('<interface name="eth1" check="on">', extra=mine), env={})
    assert [(c.ident, c.vip) for c in config.check.intf] == [("lan", False)]


def test_none_for_a_cloud_providers_address() -> None:
    cloud = (
        '<virtual_addr addr="10.0.0.1" provider="aws_route">'
        '<option name="route_tables" value="rtb-1"/></virtual_addr>'
    )
    assert implicit(mirror('<interface check="on">', cloud)) == []


def test_failover_rules_may_name_it() -> None:
    rule = "<failover><![CDATA[link: if (intf.eth1 == down) then stop();]]></failover>"
    config, _ = parse_module(mirror('<interface name="eth1" check="on">', extra=rule), env={})
    assert "intf.eth1" in config.check.resource_names()
    with pytest.raises(ConfigError, match=r"resource 'intf\.eth1' is not declared"):
        parse_module(mirror('<interface name="eth1" check="off">', extra=rule), env={})


def test_the_daemon_probes_it_with_its_action() -> None:
    config, _ = parse_module(mirror('<interface name="eth1" check="on">'), env={})
    specs = [s for s in checker_specs(config.check, Pinger()) if s.resource.startswith("intf.")]
    assert [(s.resource, s.when, s.action, s.interval) for s in specs] == [
        ("intf.eth1", "prim", "wait", 10.0)
    ]
    assert check_actions(config, specs) == {"intf.eth1": ("prim", "wait")}
