"""A mirror's IPv6 VIP with the arp provider (ADR 0059): the spec and the configuration accept it,
the netlink calls add it without duplicate address detection and deprecated (never the node's own
source address), the announcement is an unsolicited neighbour advertisement, and the owner probe's
neighbour solicitation and the frames that name a holder, byte by byte (malformed ones: never a
crash, never a false holder). The kernel side runs on lab hosts (tests/integration/vip)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.config import ConfigError, parse_module
from safekit.vip import VipError, VipSpec, nd, parse_vip_address
from safekit.vip import arp as arp_module
from safekit.vip.arp import Address, ArpProvider, Link, choose_interface, lifetime_arguments
from safekit.vip.owner import (
    PACKET_OUTGOING,
    OwnerSightings,
    claimed_owner_nd,
    conflicting_prober_nd,
    question,
)
from safekit.vip.provider import create_provider

VIP = ipaddress.IPv6Address("fd00:5afe:0:0::c8")
OTHER = ipaddress.IPv6Address("fd00:5afe:0:0::7")
PROBER_LL = ipaddress.IPv6Address("fe80::5b:c6ff:fe12:2")
HOLDER = bytes.fromhex("025bc6120001")
PROBER = bytes.fromhex("025bc6120002")
HOLDER_TEXT = "02:5b:c6:12:00:01"
ETH0 = Link(2, "eth0", "02:5b:c6:12:00:02", True, True)
REAL = Address(2, ipaddress.IPv6Interface("fd00:5afe::2/64"), "")
HELD = Address(2, ipaddress.IPv6Interface(f"{VIP}/64"), "", valid_lft=3)


def icmp6_checksum_ok(frame: bytes) -> bool:
    """The ICMPv6 checksum of an Ethernet/IPv6 frame verifies (RFC 4443, 2.3)."""
    source, destination = frame[22:38], frame[38:54]
    (length,) = struct.unpack_from("!H", frame, 18)
    message = frame[54 : 54 + length]
    pseudo = source + destination + struct.pack("!I3xB", length, 58)
    data = pseudo + message + (b"\x00" if len(message) % 2 else b"")
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


# ----------------------------------------------------------------------------- spec and config
def test_the_spec_takes_an_ipv6_vip_and_its_prefix() -> None:
    assert parse_vip_address("fd00:5afe::c8/64") == (VIP, 64)
    assert VipSpec(VIP, prefixlen=128).prefixlen == 128
    with pytest.raises(VipError, match="give 1 to 128"):
        VipSpec(VIP, prefixlen=129)
    with pytest.raises(VipError, match="not an IPv6 prefix length"):
        parse_vip_address("fd00:5afe::c8/ffff::")


@pytest.mark.parametrize("text", ["fe80::1", "ff02::1", "::1", "::", "::ffff:198.18.0.200"])
def test_ipv6_addresses_that_cannot_be_a_vip_are_refused(text: str) -> None:
    with pytest.raises(VipError, match="cannot be a virtual IP"):
        VipSpec(ipaddress.IPv6Address(text))


def test_only_providers_that_can_hold_ipv6_take_it() -> None:
    assert isinstance(create_provider(VipSpec(VIP)), ArpProvider)
    with pytest.raises(VipError, match="IPv4 virtual IPs only"):
        create_provider(VipSpec(VIP, provider="aws_route", options={"route_tables": "rtb-1"}))


def test_garp_form_is_refused_on_an_ipv6_vip() -> None:
    with pytest.raises(VipError, match="neighbour advertisements"):
        ArpProvider(VipSpec(VIP, options={"garp_form": "both"}))


MIRROR = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <vip><interface_list><interface>
    <real_interface><virtual_addr addr="{addr}" {extra}/></real_interface>
  </interface></interface_list></vip>
</service>
</safe>
"""


def test_a_mirror_takes_an_ipv6_vip_with_its_prefix_length() -> None:
    config, _ = parse_module(
        MIRROR.format(addr="FD00:5AFE::C8", extra='netmask="64"'), "userconfig.xml", env={}
    )
    assert config.vip is not None
    (address,) = config.vip.interfaces[0].addresses
    assert (address.addr, address.prefix_length) == ("fd00:5afe::c8", 64)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('netmask="255.255.255.0"', "not an IPv6 prefix length"),
        ('netmask="129"', "not an IPv6 prefix length"),
        ('provider="aws_route"', "holds IPv4 addresses only"),
    ],
)
def test_a_mirror_ipv6_vip_refused_at_load_says_why(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_module(MIRROR.format(addr="fd00:5afe::c8", extra=extra), "userconfig.xml", env={})


# ----------------------------------------------------------------------------- netlink
def test_the_interface_is_chosen_among_networks_of_the_vips_family() -> None:
    networks = [
        ("eth0", ipaddress.IPv4Interface("198.18.0.2/24")),
        ("eth1", ipaddress.IPv6Interface("fd00:5afe:0:1::2/64")),
        ("eth0", ipaddress.IPv6Interface("fd00:5afe::2/64")),
        ("eth0", ipaddress.IPv6Interface("fe80::1/64")),
    ]
    assert choose_interface(VIP, networks) == ("eth0", 64)
    # An IPv4 address whose integer falls in an IPv6 network is not in it (ipaddress compares ints).
    assert choose_interface(ipaddress.IPv4Address("198.18.0.200"), networks) == ("eth0", 24)


def test_ipv6_lifetime_arguments_skip_dad_and_deprecate() -> None:
    assert lifetime_arguments(None, ipv6=True) == {
        "valid_lft": 0xFFFFFFFF,
        "preferred_lft": 0,
        "flags": nd.IFA_F_NODAD,
    }
    assert lifetime_arguments(5, ipv6=True) == {"valid_lft": 5, "preferred_lft": 0, "flags": nd.IFA_F_NODAD}


class FakeIPRoute:
    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node

    async def __aenter__(self) -> FakeIPRoute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def addr(self, command: str, **kwargs: Any) -> None:
        self.node["calls"].append((command, kwargs))


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"addresses": [REAL], "calls": [], "families": [], "sent": []}

    async def snapshot(ipr: object, family: int = socket.AF_INET) -> tuple[list[Link], list[Address]]:
        state["families"].append(family)
        return [ETH0], state["addresses"]

    async def send_round(interface: str, frames: list[bytes], *, ipv6: bool = False) -> None:
        state["sent"].append((interface, frames, ipv6))

    monkeypatch.setattr(arp_module, "AsyncIPRoute", lambda: FakeIPRoute(state))
    monkeypatch.setattr(arp_module, "_snapshot", snapshot)
    monkeypatch.setattr(arp_module, "_send_round", send_round)
    return state


def test_acquire_adds_an_ipv6_vip_without_dad_deprecated_and_announces_it(node: dict[str, Any]) -> None:
    provider = ArpProvider(VipSpec(VIP, garp_count=1, options={"lifetime": "3"}))
    assert asyncio.run(provider.acquire(1.0)) is True
    assert node["families"] == [socket.AF_INET6]
    assert node["calls"] == [
        (
            "add",
            {
                "index": 2,
                "address": str(VIP),
                "prefixlen": 64,
                "valid_lft": 3,
                "preferred_lft": 0,
                "flags": nd.IFA_F_NODAD,
            },
        )
    ]
    ((interface, (frame,), ipv6),) = node["sent"]
    assert (interface, ipv6) == ("eth0", True)
    packet = nd.parse_nd_frame(frame)
    assert packet is not None and packet.kind == nd.ND_NEIGHBOR_ADVERT
    assert (packet.target, packet.source, packet.lladdr) == (VIP, VIP, bytes.fromhex("025bc6120002"))
    assert packet.flags == nd.OVERRIDE
    assert icmp6_checksum_ok(frame)


def test_renew_keeps_an_ipv6_vip_deprecated_and_without_dad(node: dict[str, Any]) -> None:
    node["addresses"] = [REAL, HELD]
    assert asyncio.run(ArpProvider(VipSpec(VIP, options={"lifetime": "4"})).renew()) is True
    ((command, kwargs),) = node["calls"]
    assert command == "replace"
    assert (kwargs["valid_lft"], kwargs["preferred_lft"], kwargs["flags"]) == (4, 0, nd.IFA_F_NODAD)


# ----------------------------------------------------------------------------- frames
def test_solicitation_from_a_link_local_address_carries_the_probers_mac() -> None:
    frame = nd.solicitation_frame(VIP, PROBER, PROBER_LL)
    group = ipaddress.IPv6Address("ff02::1:ff00:c8")
    assert nd.solicited_node(VIP) == group
    assert frame[0:6] == bytes.fromhex("3333ff0000c8") and frame[6:12] == PROBER
    assert frame[20] == 58 and frame[21] == 255  # ICMPv6, hop limit 255
    assert ipaddress.IPv6Address(frame[38:54]) == group
    assert icmp6_checksum_ok(frame)
    packet = nd.parse_nd_frame(frame)
    assert packet is not None
    assert (packet.kind, packet.source, packet.target, packet.lladdr) == (
        nd.ND_NEIGHBOR_SOLICIT,
        PROBER_LL,
        VIP,
        PROBER,
    )


def test_without_a_link_local_address_the_probe_is_the_dad_form() -> None:
    frame = nd.solicitation_frame(VIP, PROBER)
    packet = nd.parse_nd_frame(frame)
    assert packet is not None and packet.source.is_unspecified and packet.lladdr is None
    assert icmp6_checksum_ok(frame)
    # ... and another host's DAD probe for the VIP is a prober, not a holder.
    assert conflicting_prober_nd(packet, VIP) == "02:5b:c6:12:00:02"
    assert claimed_owner_nd(packet, VIP) is None


IF_INET6 = (
    "fd005afe000000000000000000000002 02 40 00 80     eth0\n"
    "fe80000000000000005bc6fffe120009 03 40 20 c0     eth1\n"  # tentative
    "fe80000000000000005bc6fffe120002 02 40 20 80     eth0\n"
    "00000000000000000000000000000001 01 80 10 80       lo\n"
)


def test_the_probe_source_is_a_usable_link_local_address() -> None:
    assert nd.link_local_source(IF_INET6, "eth0") == PROBER_LL
    assert nd.link_local_source(IF_INET6, "eth1") == nd.UNSPECIFIED  # tentative: not usable
    assert nd.link_local_source(IF_INET6, "eth9") == nd.UNSPECIFIED
    assert nd.link_local_source("garbage\nzz 1 2 3 4 eth0\n", "eth0") == nd.UNSPECIFIED
    frame = question(VIP, PROBER, "eth0", IF_INET6)
    packet = nd.parse_nd_frame(frame)
    assert packet is not None and packet.source == PROBER_LL


def advert(
    target: ipaddress.IPv6Address, lladdr: bytes | None, source_mac: bytes = HOLDER, flags: int = 0
) -> bytes:
    """An advertisement as a holder's kernel sends it (solicited: unicast)."""
    body = struct.pack("!I", flags) + target.packed
    if lladdr is not None:
        body += bytes([nd.TARGET_LINK_LAYER, 1]) + lladdr
    icmp = nd._icmp6(nd.ND_NEIGHBOR_ADVERT, target, PROBER_LL, body)
    return nd._ipv6_frame(PROBER, source_mac, target, PROBER_LL, icmp)


def test_holders_are_named_by_advertisements_and_solicitations_from_the_vip() -> None:
    sightings = OwnerSightings(VIP, frozenset({"02:5b:c6:12:00:02"}))
    assert sightings.see(advert(VIP, HOLDER, flags=nd.SOLICITED | nd.OVERRIDE)) is True
    assert sightings.see(advert(VIP, HOLDER)) is False  # seen already
    third = bytes.fromhex("025bc6120003")
    # No target link-layer option: the Ethernet source is the holder.
    assert sightings.see(advert(VIP, None, source_mac=third)) is True
    # The holder resolving another host from the VIP.
    fourth = bytes.fromhex("025bc6120004")
    assert sightings.see(nd.solicitation_frame(OTHER, fourth, VIP)) is True
    assert sightings.owners == {HOLDER_TEXT, "02:5b:c6:12:00:03", "02:5b:c6:12:00:04"}
    assert sightings.frames == 4


def test_frames_that_name_no_other_holder() -> None:
    sightings = OwnerSightings(VIP, frozenset({"02:5b:c6:12:00:02"}))
    assert not sightings.see(advert(OTHER, HOLDER))  # another address
    assert not sightings.see(advert(VIP, PROBER))  # this node's own MAC
    assert not sightings.see(advert(VIP, HOLDER), PACKET_OUTGOING)  # sent by this host
    assert not sightings.see(advert(VIP, bytes.fromhex("333300000001")))  # multicast names no one
    assert not sightings.see(nd.solicitation_frame(VIP, HOLDER, PROBER_LL))  # a question, not an answer
    assert not sightings.see(nd.advertisement_frame(VIP, HOLDER, HOLDER, VIP)[:-1])  # option cut short
    assert sightings.owners == set()


def test_the_nd_filter_is_a_valid_classic_bpf_program() -> None:
    # Every jump lands inside the program, and both exits are returns.
    for index, (code, jt, jf, _) in enumerate(nd.ND_FILTER):
        if code & 0x07 == 0x05:  # BPF_JMP
            assert index + 1 + max(jt, jf) < len(nd.ND_FILTER)
    assert nd.ND_FILTER[-1][0] == nd.ND_FILTER[-2][0] == 0x06


@given(st.binary(max_size=200))
def test_parsing_never_raises_and_never_invents_a_holder(data: bytes) -> None:
    frame = bytes(12) + b"\x86\xdd" + data
    packet = nd.parse_nd_frame(frame)
    sightings = OwnerSightings(VIP)
    sightings.see(frame)
    if packet is None:
        assert sightings.owners == set()


@given(st.integers(min_value=0, max_value=2**16 - 1), st.integers(min_value=14, max_value=90))
def test_a_corrupted_advertisement_never_raises(flip: int, cut: int) -> None:
    frame = bytearray(advert(VIP, HOLDER))
    frame[flip % len(frame)] ^= 0xFF
    nd.parse_nd_frame(bytes(frame[:cut]))
    OwnerSightings(VIP).see(bytes(frame))
