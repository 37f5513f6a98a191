"""`<virtual_addr check="on">`: as in SafeKit, the module gets an `<ip>` checker on that address
(resource `ip.ADDRESS`, action stopstart), so the module reacts when the VIP leaves the interface."""

from __future__ import annotations

import pytest

from safekit.checkers.icmp import Pinger
from safekit.config import ConfigError, IpCheck, parse_module
from safekit.daemon.checker_tasks import checker_specs
from safekit.daemon.module_executor import check_actions


def mirror(addresses: str, check: str = "", failover: str = "") -> str:
    return f"""<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <vip><interface_list><interface check="on"><real_interface>
    {addresses}
  </real_interface></interface></interface_list></vip>
  {check}
  {failover}
</service>
</safe>
"""


def farm(addresses: str) -> str:
    return f"""<!DOCTYPE safe>
<safe>
<service mode="farm">
  <farm><lan name="default"/></farm>
  <vip><interface_list><interface><virtual_interface type="vmac_directed">
    {addresses}
  </virtual_interface></interface></interface_list></vip>
</service>
</safe>
"""


def ip_checks(text: str) -> tuple[IpCheck, ...]:
    config, _ = parse_module(text, "userconfig.xml", env={})
    return config.check.ip


def test_checked_virtual_address_gets_an_ip_checker_named_after_it() -> None:
    [check] = ip_checks(mirror('<virtual_addr addr="192.168.1.222" where="one_side_alias" check="on"/>'))
    assert (check.ident, check.when, check.action, check.vip) == ("192.168.1.222", "prim", "stopstart", True)
    assert [t.addr for t in check.targets] == ["192.168.1.222"]


def test_check_defaults_to_on_and_off_adds_none() -> None:
    both = mirror('<virtual_addr addr="10.0.0.1"/><virtual_addr addr="10.0.0.2" check="off"/>')
    assert [c.ident for c in ip_checks(both)] == ["10.0.0.1"]
    assert ip_checks(mirror('<virtual_addr addr="10.0.0.2" check="off"/>')) == ()


def test_farm_checks_on_every_node_serving() -> None:
    [v4, v6] = ip_checks(farm('<virtual_addr addr="10.0.0.100"/><virtual_addr addr="fd00:5afe::10"/>'))
    assert (v4.ident, v4.when, v6.ident, v6.when) == ("10.0.0.100", "both", "fd00:5afe::10", "both")


def test_the_user_s_own_ip_checker_on_the_vip_wins() -> None:
    user = '<check><ip ident="vip" action="stop"><to addr="10.0.0.1"/></ip></check>'
    checks = ip_checks(mirror('<virtual_addr addr="10.0.0.1"/><virtual_addr addr="10.0.0.9"/>', user))
    assert [(c.ident, c.action, c.vip) for c in checks] == [
        ("vip", "stop", False),
        ("10.0.0.9", "stopstart", True),
    ]


def test_cloud_provider_address_gets_no_local_ip_checker() -> None:
    cloud = (
        '<virtual_addr addr="10.0.0.1" provider="aws_route">'
        '<option name="route_tables" value="rtb-1"/></virtual_addr>'
    )
    assert ip_checks(mirror(cloud)) == ()


def test_failover_rules_may_name_the_implicit_checker() -> None:
    rule = "<failover><![CDATA[vip_lost: if (ip.10.0.0.1 == down) then stop();]]></failover>"
    config, _ = parse_module(mirror('<virtual_addr addr="10.0.0.1"/>', failover=rule), env={})
    assert "ip.10.0.0.1" in config.check.resource_names()
    with pytest.raises(ConfigError, match=r"resource 'ip\.10\.0\.0\.1' is not declared"):
        parse_module(mirror('<virtual_addr addr="10.0.0.1" check="off"/>', failover=rule), env={})


def test_the_daemon_probes_it_every_10s_with_its_action() -> None:
    config, _ = parse_module(mirror('<virtual_addr addr="10.0.0.1"/>'), env={})
    pinger = Pinger()  # opens no socket until it pings; an ip checker never does
    # (the <interface check="on"> of the helper adds an intf checker too: test_config_interface_check)
    [spec] = [s for s in checker_specs(config.check, pinger) if s.resource.startswith("ip.")]
    assert (spec.resource, spec.when, spec.action, spec.interval) == (
        "ip.10.0.0.1",
        "prim",
        "stopstart",
        10.0,
    )
    assert check_actions(config, [spec]) == {"ip.10.0.0.1": ("prim", "stopstart")}
