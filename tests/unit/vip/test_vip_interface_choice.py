"""Which interface holds a VIP when the configuration names none: the one whose network contains it."""

from __future__ import annotations

import ipaddress

import pytest

from safekit.vip import VipError, VipSpec
from safekit.vip.arp import Address, ArpProvider, Link, choose_interface

VIP = ipaddress.IPv4Address("198.18.0.200")


def nets(*pairs: tuple[str, str]) -> list[tuple[str, ipaddress.IPv4Interface]]:
    return [(name, ipaddress.IPv4Interface(text)) for name, text in pairs]


def test_the_interface_whose_network_contains_the_address() -> None:
    networks = nets(("lo", "127.0.0.1/8"), ("eth0", "198.18.0.1/24"), ("eth1", "198.18.1.1/24"))
    assert choose_interface(VIP, networks) == ("eth0", 24)
    assert choose_interface(ipaddress.IPv4Address("198.18.1.9"), networks) == ("eth1", 24)


def test_the_vip_itself_does_not_count_so_the_choice_is_stable_while_held() -> None:
    held = nets(("eth0", "198.18.0.1/24"), ("eth0", "198.18.0.200/24"), ("eth1", "198.18.1.1/24"))
    assert choose_interface(VIP, held) == ("eth0", 24)
    only_the_vip = nets(("eth0", "198.18.0.200/24"))
    with pytest.raises(VipError, match="no interface has a network"):
        choose_interface(VIP, only_the_vip)


def test_the_narrowest_network_of_the_interface_gives_the_prefix() -> None:
    networks = nets(("eth0", "198.18.0.1/16"), ("eth0", "198.18.0.2/24"))
    assert choose_interface(VIP, networks) == ("eth0", 24)


def test_no_connected_network_names_the_networks_seen() -> None:
    with pytest.raises(VipError) as info:
        choose_interface(ipaddress.IPv4Address("198.19.5.5"), nets(("eth0", "198.18.0.1/24")))
    message = str(info.value)
    assert "198.19.5.5" in message
    assert "eth0 198.18.0.0/24" in message
    assert "name the interface" in message


def test_two_interfaces_on_the_network_is_ambiguous() -> None:
    with pytest.raises(VipError, match=r"several interfaces \(eth0, eth1\): name one"):
        choose_interface(VIP, nets(("eth0", "198.18.0.1/24"), ("eth1", "198.18.0.2/24")))


LINKS = [
    Link(1, "lo", "00:00:00:00:00:00", True, True),
    Link(2, "eth0", "02:5b:c6:12:00:01", True, True),
    Link(3, "eth1", "02:5b:c6:12:01:01", True, True),
]
ADDRESSES = [
    Address(1, ipaddress.IPv4Interface("127.0.0.1/8"), "lo"),
    Address(2, ipaddress.IPv4Interface("198.18.0.1/24"), "eth0"),
    Address(3, ipaddress.IPv4Interface("198.18.1.1/24"), "eth1"),
]


def test_placement_auto_named_and_explicit_prefix() -> None:
    link, prefix = ArpProvider(VipSpec(VIP))._place(LINKS, ADDRESSES)
    assert (link.name, prefix) == ("eth0", 24)
    link, prefix = ArpProvider(VipSpec(VIP, prefixlen=32))._place(LINKS, ADDRESSES)
    assert (link.name, prefix) == ("eth0", 32)
    # A named interface outside the VIP's network: the address is added as a host address.
    link, prefix = ArpProvider(VipSpec(VIP, interface="eth1"))._place(LINKS, ADDRESSES)
    assert (link.name, prefix) == ("eth1", 32)
    with pytest.raises(
        VipError, match=r"interface eth7 does not exist on this node \(interfaces: eth0, eth1, lo\)"
    ):
        ArpProvider(VipSpec(VIP, interface="eth7"))._place(LINKS, ADDRESSES)
