"""IPv6 farm VIPs (pure parts): the configuration that loads them, the neighbour advertisement the
VIP providers send, the checksum-neutral rewrite of the kernel's advertisements (vmac_invisible),
and the `ip6` rules of both modes."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nft_walk import new_flow_map

from safekit.config import ConfigError, parse_module
from safekit.daemon.farm_module import _farm_rules, _groups
from safekit.daemon.heartbeats import HeartbeatLan
from safekit.farm import directed, nft
from safekit.farm.groups import by_group, group, group_maps, slots_of
from safekit.lab.topology import LAB_RANGE6, SLOTS, plan_lab
from safekit.vip import nd

NODES = ("node1", "node2", "node3")
GROUPS = (group("web", dict.fromkeys(NODES, 1)),)
VIP6 = ipaddress.IPv6Address("fd00:5afe::c8")
VIP4 = ipaddress.IPv4Address("198.18.0.200")
MAC = "02:5b:c6:12:00:01"
LINK = nft.NdLink(MAC, ipaddress.IPv6Address("fd00:5afe::1"))
PEER_MACS = {"node2": "02:5b:c6:12:00:02", "node3": "02:5b:c6:12:00:03"}
ADDRESSES = {n: ipaddress.IPv4Address(f"198.18.0.{i}") for i, n in enumerate(NODES, start=1)}
LANS = [
    HeartbeatLan("default", "198.18.0.1", (("node2", "198.18.0.2"), ("node3", "198.18.0.3")), 4800, 0.1, 0.4)
]


def spec(*vips: ipaddress.IPv4Address | ipaddress.IPv6Address) -> nft.FarmRules:
    return nft.FarmRules(
        "safekit_farm_m",
        tuple(nft.BalancedAddress(v, "eth0", nft.vmac_for(v)) for v in vips),
        (
            nft.TrafficRule("tcp", "on_port", 8080, None, "web"),
            nft.TrafficRule("udp", "on_ipid", 53, None, "web"),
        ),
        1234,
        "web",
        (("eth0", LINK),),
    )


def rules_of(payload: nft.Json, family: str, chain: str | None = None) -> list[str]:
    return [
        json.dumps(c["add"]["rule"]["expr"])
        for c in payload["nftables"]
        if "rule" in c.get("add", {})
        and c["add"]["rule"]["family"] == family
        and (chain is None or c["add"]["rule"]["chain"] == chain)
    ]


# ----------------------------------------------------------------------------- configuration
def _farm_config(address: str, mode: str = "farm") -> str:
    holder = "virtual_interface" if mode == "farm" else "real_interface"
    return f"""<safe><service mode="{mode}"><farm><lan name="default"/></farm>
<vip><interface_list><interface><{holder}>
  <virtual_addr addr="{address}" where="alias"/></{holder}></interface></interface_list>
<loadbalancing_list><group name="web"><rule virtual_addr="{address}" port="80" proto="tcp"/></group>
</loadbalancing_list></vip></service></safe>"""


def test_an_ipv6_farm_vip_loads_with_its_rules() -> None:
    config, _ = parse_module(_farm_config("FD00:5afe:0::c8"), "userconfig.xml", env={})
    groups = _groups("m", config, LANS, "node1")
    rules = _farm_rules("m", config, groups)
    assert [a.vip for a in rules.addresses] == [VIP6]
    assert [r.vip for r in rules.rules] == [VIP6]  # the same address however it is spelt
    assert rules.addresses[0].vmac == "02:5a:fe:00:00:c8"


def test_a_mirror_ipv6_vip_loads_with_the_arp_provider_only() -> None:
    # ADR 0059: neighbour discovery with the arp provider; the cloud providers hold IPv4 only.
    text = """<safe><service mode="mirror"><heart><heartbeat name="default"/></heart>
<vip><interface_list><interface><real_interface>
<virtual_addr addr="fd00:5afe::c8"{provider}/>
</real_interface></interface></interface_list></vip></service></safe>"""
    config, _ = parse_module(text.format(provider=""), "userconfig.xml", env={})
    assert config.vip is not None and config.vip.addresses == ("fd00:5afe::c8",)
    with pytest.raises(ConfigError, match="the gcp_route provider holds IPv4 addresses only"):
        parse_module(text.format(provider=' provider="gcp_route"'), "userconfig.xml", env={})


def test_a_farm_vip_that_is_no_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="'fd00::zz' is not an IP address"):
        parse_module(_farm_config("fd00::zz"), "userconfig.xml", env={})


# ----------------------------------------------------------------------------- advertisements
def _valid(message: bytes, source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address) -> bool:
    pseudo = source.packed + destination.packed + len(message).to_bytes(4, "big") + b"\0\0\0\x3a"
    data = pseudo + message
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_the_unsolicited_advertisement_is_a_valid_override_to_all_nodes() -> None:
    vmac = bytes.fromhex("025afe0000c8")
    frame = nd.advertisement_frame(VIP6, vmac, bytes.fromhex("025bc6120001"), VIP6)
    assert frame[:6] == bytes.fromhex("333300000001") and frame[12:14] == b"\x86\xdd"
    ipv6, icmp = frame[14:54], frame[54:]
    assert ipv6[6] == 58 and ipv6[7] == 255  # ICMPv6, hop limit 255 (or receivers drop it)
    assert ipaddress.IPv6Address(ipv6[24:40]) == nd.ALL_NODES
    assert icmp[0] == 136 and icmp[4] & 0xE0 == 0x20  # advertisement, Override only
    assert ipaddress.IPv6Address(icmp[8:24]) == VIP6 and icmp[24:26] == b"\x02\x01" and icmp[26:32] == vmac
    assert _valid(icmp, VIP6, nd.ALL_NODES)


macs = st.binary(min_size=6, max_size=6)


@given(real=macs, virtual=macs, flags=st.sampled_from([0x40000000, 0x60000000, 0x20000000]))
def test_rewriting_the_advertised_mac_keeps_the_checksum(real: bytes, virtual: bytes, flags: int) -> None:
    """What the `nd_out` rule does to the kernel's solicited advertisement (nft writes raw bytes and
    leaves the checksum alone): the MAC replaced and the reserved half-word set, still valid."""
    client = ipaddress.IPv6Address("fd00:5afe::a0")
    body = flags.to_bytes(4, "big") + VIP6.packed + b"\x02\x01" + real
    message = bytearray(b"\x88\x00\x00\x00" + body)
    pseudo = VIP6.packed + client.packed + len(message).to_bytes(4, "big") + b"\0\0\0\x3a"
    message[2:4] = nd._checksum(pseudo + bytes(message)).to_bytes(2, "big")
    assert _valid(bytes(message), VIP6, client)
    message[26:32] = virtual
    message[6:8] = nft.checksum_neutral(real, virtual).to_bytes(2, "big")
    assert _valid(bytes(message), VIP6, client)


# ----------------------------------------------------------------------------- vmac_invisible
def test_an_ipv4_farm_has_no_ip6_rules() -> None:
    owned = by_group(slots_of(group_maps(GROUPS, set(NODES)), "node1"), ("web",))
    payload = nft.ruleset(spec(VIP4), owned)
    assert rules_of(payload, "ip6") == []
    assert not any(c.get("add", {}).get("table", {}).get("family") == "ip6" for c in payload["nftables"])


def test_invisible_ipv6_rules_hash_the_ipv6_client_and_advertise_the_virtual_mac() -> None:
    owned = by_group(slots_of(group_maps(GROUPS, set(NODES)), "node1"), ("web",))
    payload = nft.ruleset(spec(VIP4, VIP6), owned)
    (dispatch,) = rules_of(payload, "ip6", "buckets")
    assert '"ip6", "field": "daddr"}}' in dispatch and '"fd00:5afe::c8"' in dispatch
    assert all('"ip", ' not in r for r in rules_of(payload, "ip6") if "nd-neighbor" not in r)
    udp = new_flow_map(payload, "ip6", str(VIP6), "udp", 53)
    # on_ipid: IPv6 has no identification field outside fragments: address and port, as on_port.
    assert udp is not None
    assert udp["key"] == {
        "concat": [
            {"payload": {"protocol": "ip6", "field": "saddr"}},
            {"payload": {"protocol": "udp", "field": "sport"}},
        ]
    }
    assert udp["accepted"] == owned["web"]
    # Neighbour discovery to the VIP is every node's: no map decides it.
    assert new_flow_map(payload, "ip6", str(VIP6), "ipv6-icmp", None) is None
    # The ARP rules are the IPv4 VIP's only.
    assert all("fd00" not in r for r in rules_of(payload, "arp"))
    nd_out = rules_of(payload, "ip6", "nd_out")
    assert len(nd_out) == 2
    solicit, advert = nd_out
    assert '"nd-neighbor-solicit"' in solicit and '"value": "fd00:5afe::1"' in solicit
    assert '"nd-neighbor-advert"' in advert and '"0x0201025bc6120001"' in advert
    assert '"value": "0x025afe0000c8"' in advert
    neutral = nft.checksum_neutral(bytes.fromhex("025bc6120001"), bytes.fromhex("025afe0000c8"))
    assert f'"value": {neutral}' in advert
    # The netdev ingress takes frames for the IPv6 VIP's vMAC too.
    assert any("02:5a:fe:00:00:c8" in r for r in rules_of(payload, "netdev"))


def test_invisible_ipv6_without_link_information_is_refused() -> None:
    bare = nft.FarmRules("t", (nft.BalancedAddress(VIP6, "eth0", nft.vmac_for(VIP6)),), (), 1)
    with pytest.raises(ValueError, match="no link information for eth0"):
        nft.ruleset(bare, {})


# ----------------------------------------------------------------------------- vmac_directed
def _plan(local: str, members: set[str]) -> directed.DirectedPlan:
    views = group_maps(GROUPS, members)
    return directed.plan(local, views, slots_of(views, local), group_maps(GROUPS, members - {local}))


def test_directed_ipv6_answers_solicitations_for_its_buckets_only() -> None:
    the_plan = _plan("node1", set(NODES))
    payload = directed.directed_ruleset(spec(VIP6), the_plan, ADDRESSES, create=True, macs=PEER_MACS)
    (nd_in,) = rules_of(payload, "ip6", "nd_in")
    assert '"nd-neighbor-solicit"' in nd_in and '"0xfd005afe0000000000000000000000c8"' in nd_in
    vmap = json.loads(nd_in)[-1]["vmap"]
    assert vmap["key"]["jhash"]["expr"] == {"payload": {"protocol": "ip6", "field": "saddr"}}
    accepted: set[int] = set()
    for key, verdict in vmap["data"]["set"]:
        low, high = key["range"] if isinstance(key, dict) else (key, key)
        if "accept" in verdict:
            accepted |= set(range(low, high + 1))
    assert accepted == the_plan.arp_owned("web") and len(accepted) in (85, 86)
    # Solicitations the node sends for the VIP leave from its own address; no vMAC rewrite.
    (solicit,) = rules_of(payload, "ip6", "nd_out")
    assert '"value": "fd00:5afe::1"' in solicit
    assert rules_of(payload, "arp", "in") == []


def test_directed_ipv6_relays_by_mac_and_knows_relayed_frames_by_their_source() -> None:
    payload = directed.directed_ruleset(
        spec(VIP4, VIP6), _plan("node1", set(NODES)), ADDRESSES, create=True, macs=PEER_MACS
    )
    netdev = {
        c["add"]["rule"]["chain"]: json.dumps(c["add"]["rule"]["expr"])
        for c in payload["nftables"]
        if "rule" in c.get("add", {}) and c["add"]["rule"]["family"] == "netdev"
    }
    relay = netdev["pass6_node2_eth0"]
    assert '"value": "02:5b:c6:12:00:01"' in relay and '"value": "02:5b:c6:12:00:02"' in relay
    assert '{"fwd": {"dev": "eth0"}}' in relay and "frag-off" not in relay
    assert '"family": "ip"' in netdev["pass_node2_eth0"]  # IPv4 still by fwd ip to
    last_hop = netdev["again6_node3_eth0"]
    assert '"field": "hoplimit"}}, "value": 1}' in last_hop
    sets = [c["add"]["set"] for c in payload["nftables"] if "set" in c.get("add", {})]
    assert {s["name"]: s["type"][0] for s in sets} == {
        "mine": "ipv4_addr",
        "flows_node2": "ipv4_addr",
        "flows_node3": "ipv4_addr",
        "mine6": "ipv6_addr",
        "flows6_node2": "ipv6_addr",
        "flows6_node3": "ipv6_addr",
    }
    base = [
        json.dumps(c["add"]["rule"]["expr"])
        for c in payload["nftables"]
        if "rule" in c.get("add", {}) and c["add"]["rule"].get("chain") == "vip6_1"
    ]
    relayed6 = [r for r in base if "relayed6_eth0" in r]
    assert len(relayed6) == 1
    assert (
        '"ether", "field": "saddr"}}, "right": {"set": ["02:5b:c6:12:00:02", "02:5b:c6:12:00:03"]}'
        in (relayed6[0])
    )


def test_directed_ipv6_without_a_peers_mac_is_refused() -> None:
    with pytest.raises(ValueError, match="no MAC known for node3"):
        directed.directed_ruleset(
            spec(VIP6), _plan("node1", set(NODES)), ADDRESSES, create=True, macs={"node2": PEER_MACS["node2"]}
        )


# ----------------------------------------------------------------------------- the lab's IPv6 plan
def test_the_labs_ipv6_networks_are_unique_local_one_per_lan_and_never_shared() -> None:
    """`lab up --ipv6` (the farm's IPv6 lab tests): fd00:5afe:0:N::/64 per LAN, N unique across
    slots, host numbers as in IPv4."""
    seen: set[ipaddress.IPv6Network] = set()
    for slot in (0, 1, SLOTS - 1):
        plan = plan_lab("t", slot=slot, nodes=3, lans=4, client=True)
        for lan in plan.lans:
            assert lan.network6.subnet_of(LAB_RANGE6) and lan.network6.is_private
            assert lan.network6 not in seen
            seen.add(lan.network6)
        first = plan.lans[0]
        assert first.address6(1).ip == first.network6[1]
        assert plan.vips6[0] == first.network6[200] and plan.vips6[0] not in [
            first.network6[1],
            first.network6[100],
        ]
