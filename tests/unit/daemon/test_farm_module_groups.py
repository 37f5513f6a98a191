"""What a farm module makes of SafeKit's `<loadbalancing_list>` at load: its groups and its rules,
and the clear refusals (a node in no group, two groups for the same traffic, two vMAC types)."""

from __future__ import annotations

import pytest

from safekit.config import ModuleConfig, parse_module
from safekit.daemon.farm_module import _farm_rules, _groups, _vmac_mode
from safekit.daemon.heartbeats import HeartbeatLan
from safekit.daemon.module_executor import ModuleError

LANS = [
    HeartbeatLan("default", "198.18.0.1", (("node2", "198.18.0.2"), ("node3", "198.18.0.3")), 4800, 0.1, 0.4)
]


def _config(groups: str, vmac: str = "vmac_invisible") -> ModuleConfig:
    text = f"""<safe><service mode="farm"><farm><lan name="default"/></farm>
<vip><interface_list><interface><virtual_interface type="{vmac}">
  <virtual_addr addr="198.18.0.200" where="alias"/></virtual_interface></interface></interface_list>
<loadbalancing_list>{groups}</loadbalancing_list></vip></service></safe>"""
    module, _ = parse_module(text, "userconfig.xml", env={})
    return module


SHAPE = (
    '<group name="web"><rule port="80" proto="tcp" filter="on_port"/></group>'
    '<group name="api"><cluster><host name="node2"/><host name="node3" power="2"/></cluster>'
    '<rule port="5353" proto="udp" filter="on_ipid"/><rule proto="arp"/></group>'
)


def test_safekit_shaped_groups_and_rules() -> None:
    config = _config(SHAPE)
    web, api = _groups("m", config, LANS, "node1")
    assert web.every_node and web.power_map == {"node1": 1, "node2": 1, "node3": 1}
    assert api.power_map == {"node2": 1, "node3": 2}
    rules = _farm_rules("m", config, (web, api))
    assert [(r.group, r.proto, r.port, r.filter) for r in rules.rules] == [
        ("web", "tcp", 80, "on_port"),
        ("api", "udp", 5353, "on_ipid"),
    ]
    assert rules.default_group == "web"


def test_a_node_in_no_group_is_refused() -> None:
    config = _config('<group name="api"><cluster><host name="node2"/></cluster><rule port="80"/></group>')
    with pytest.raises(ModuleError, match=r"this node \(node1\) is not a <host> of any <group>"):
        _groups("m", config, LANS, "node1")


def test_two_groups_for_the_same_traffic_are_refused() -> None:
    config = _config(
        '<group name="a"><rule port="80" proto="tcp"/></group>'
        '<group name="b"><cluster><host name="node1"/></cluster><rule port="80" proto="tcp"/></group>'
    )
    groups = _groups("m", config, LANS, "node1")
    with pytest.raises(ModuleError, match="groups a and b both balance tcp port 80"):
        _farm_rules("m", config, groups)


def test_vmac_directed_loads_in_safekit_shape() -> None:
    config = _config(SHAPE, vmac="vmac_directed")
    assert _vmac_mode("m", config) == "vmac_directed"
    rules = _farm_rules("m", config, _groups("m", config, LANS, "node1"))
    assert [str(a.vip) for a in rules.addresses] == ["198.18.0.200"]
    assert _vmac_mode("m", _config(SHAPE)) == "vmac_invisible"


def test_two_vmac_types_in_one_module_are_refused() -> None:
    text = """<safe><service mode="farm"><farm><lan name="default"/></farm>
<vip><interface_list>
<interface><virtual_interface type="vmac_directed">
  <virtual_addr addr="198.18.0.200"/></virtual_interface></interface>
<interface><virtual_interface type="vmac_invisible">
  <virtual_addr addr="198.18.0.201"/></virtual_interface></interface>
</interface_list></vip></service></safe>"""
    config, _ = parse_module(text, "userconfig.xml", env={})
    with pytest.raises(ModuleError, match="must have the same type"):
        _vmac_mode("m", config)
