"""A farm module whose VIP sits on an interface that carries none of the farm's LANs is told about
at start: its heartbeats would not cross the network its clients use (`vip_network_warning`)."""

from __future__ import annotations

import ipaddress

from safekit.daemon.farm_module import vip_network_warning

VIP = ipaddress.IPv4Address("198.18.0.200")
FRONT = {ipaddress.IPv4Address("198.18.0.1")}
ADMIN = {"admin": ipaddress.IPv4Address("198.19.1.1")}


def test_no_warning_when_a_farm_lan_is_on_the_vips_interface() -> None:
    both = {**ADMIN, "default": ipaddress.IPv4Address("198.18.0.1")}
    assert vip_network_warning(VIP, "eth0", FRONT, both, "vmac_invisible") is None
    assert (
        vip_network_warning(
            VIP, "eth0", FRONT, {"default": ipaddress.IPv4Address("198.18.0.1")}, "vmac_directed"
        )
        is None
    )


def test_a_vip_away_from_every_farm_lan_is_explained_with_the_fix() -> None:
    warning = vip_network_warning(VIP, "eth0", FRONT, ADMIN, "vmac_invisible")
    assert warning is not None
    assert "198.18.0.200 is on eth0" in warning
    assert "admin (198.19.1.1)" in warning
    assert "every node serve every client" in warning
    assert "add the LAN of eth0 to <farm>" in warning
    assert "relay" not in warning


def test_vmac_directed_is_also_told_its_relay_cannot_reach_the_nodes() -> None:
    warning = vip_network_warning(VIP, "eth0", FRONT, ADMIN, "vmac_directed")
    assert warning is not None and "relays on eth0 to the nodes' addresses on admin" in warning


def test_nothing_to_compare_with_is_no_warning() -> None:
    assert vip_network_warning(VIP, "eth0", FRONT, {}, "vmac_invisible") is None
