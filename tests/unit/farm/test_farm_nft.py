"""The farm's nftables rules: each group's rules dispatch with that group's buckets, filters hash
what SafeKit's filters name, and the kernel here accepts the whole ruleset (a scratch netns)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from typing import Any

import pytest
from nft_walk import chains, new_flow_map

from safekit.farm import nft

VIP = ipaddress.IPv4Address("198.18.0.200")
ADDRESS = nft.BalancedAddress(VIP, "lo", nft.vmac_for(VIP))
RULES = (
    nft.TrafficRule("tcp", "on_addr", None, None, "web"),
    nft.TrafficRule("tcp", "on_port", 8081, None, "api"),
    nft.TrafficRule("udp", "on_ipid", 5353, VIP, "api"),
)
SPEC = nft.FarmRules("safekit_farm_t", (ADDRESS,), RULES, nft.seed_for("t"), "web")
OWNED = {"web": frozenset(range(100)), "api": frozenset({3, 4})}


def _decides(payload: dict[str, Any], proto: str, port: int | None) -> tuple[Any, set[int]]:
    decision = new_flow_map(payload, "ip", str(VIP), proto, port)
    assert decision is not None, (proto, port)
    return decision["key"], decision["accepted"]


def test_each_rule_uses_its_groups_buckets_the_specific_ports_first() -> None:
    payload = nft.ruleset(SPEC, OWNED)
    # api's port rule before web's every-port rule, whatever the file's order.
    api_key, api_accepts = _decides(payload, "tcp", 8081)
    assert api_accepts == {3, 4}
    assert api_key == {"concat": [nft._payload("ip", "saddr"), nft._payload("tcp", "sport")]}
    web_key, web_accepts = _decides(payload, "tcp", 80)
    assert web_accepts == set(range(100)) and web_key == nft._payload("ip", "saddr")


def test_the_rule_naming_the_address_decides_before_the_one_for_every_vip() -> None:
    every = nft.TrafficRule("udp", "on_addr", 5353, None, "web")
    payload = nft.ruleset(nft.FarmRules("t", (ADDRESS,), (every, *RULES), 1, "web"), OWNED)
    key, accepts = _decides(payload, "udp", 5353)
    assert accepts == {3, 4} and key == {"concat": [nft._payload("ip", "saddr"), nft._payload("ip", "id")]}


def test_on_ipid_hashes_the_ip_identification_of_udp_and_the_source_port_of_tcp() -> None:
    key, _ = _decides(nft.ruleset(SPEC, OWNED), "udp", 5353)
    assert key == {"concat": [nft._payload("ip", "saddr"), nft._payload("ip", "id")]}
    tcp = nft.FarmRules("t", (ADDRESS,), (nft.TrafficRule("tcp", "on_ipid", 80, None, "web"),), 1, "web")
    key, _ = _decides(nft.ruleset(tcp, OWNED), "tcp", 80)
    assert key == {"concat": [nft._payload("ip", "saddr"), nft._payload("tcp", "sport")]}


def test_traffic_no_rule_names_follows_the_first_group() -> None:
    payload = nft.ruleset(SPEC, OWNED)
    for proto, port in (("icmp", None), ("udp", 9999)):
        key, accepts = _decides(payload, proto, port)  # any other packet to the VIP
        assert key == nft._payload("ip", "saddr") and accepts == set(range(100))


def test_a_group_owned_nowhere_here_drops_all_its_new_traffic() -> None:
    _, accepts = _decides(nft.ruleset(SPEC, {"web": frozenset(range(256))}), "udp", 5353)
    assert accepts == set()


def test_a_packet_costs_few_rules() -> None:
    """Traffic to no VIP meets one rule before conntrack; a TCP packet of a connection two (the
    destination lookup, the VIP chain's first rule), whatever the number of rules and VIPs."""
    table = chains(nft.ruleset(SPEC, OWNED), "ip")
    assert len(table["buckets"]) == 1
    first = json.dumps(table["vip_0"][0])
    assert '"op": "!="' in first and '"syn"' in first and first.endswith('{"accept": null}]')
    # After conntrack: a known connection leaves with the first rule.
    assert json.dumps(table["connections"][0]).startswith('[{"match": {"op": "in", "left": {"ct"')
    assert len(table["connections"]) == 2


def test_a_new_flow_costs_one_hashed_lookup_among_the_owned_buckets() -> None:
    payload = nft.ruleset(SPEC, OWNED)
    table = chains(payload, "ip")
    # No interval set (a search among bucket runs): each bucket chain is one rule whose set holds
    # this node's buckets (a hash table in the kernel).
    assert '"range"' not in json.dumps(table)
    api = new_flow_map(payload, "ip", str(VIP), "tcp", 8081)
    assert api is not None and api["accepted"] == {3, 4}
    chain = next(
        rules for name, rules in table.items() if name.startswith("rule_") and "[3, 4]" in json.dumps(rules)
    )
    (only,) = (json.dumps(rule) for rule in chain)
    assert '"op": "!="' in only and only.endswith('{"drop": null}]')
    # Owning every bucket of a group: its chains are empty (everything goes on).
    everything = frozenset(range(256))
    whole = chains(nft.ruleset(SPEC, {"web": everything, "api": everything}), "ip")
    assert whole["default"] == [] and whole["default_tcp"] == []


def test_a_udp_fragment_without_ports_falls_back_to_the_address() -> None:
    by_port = nft.FarmRules("t", (ADDRESS,), (nft.TrafficRule("udp", "on_port", 53, None, "web"),), 1, "web")
    table = chains(nft.ruleset(by_port, OWNED), "ip")
    (name,) = [n for n in table if n.startswith("rule_")]
    owned, readable, fallback = (json.dumps(r) for r in table[name])
    assert '"sport"' in owned and owned.endswith('{"accept": null}]')
    assert '"op": "<="' in readable and readable.endswith('{"drop": null}]')
    assert fallback == '[{"goto": {"target": "default"}}]'


def test_two_groups_naming_the_same_traffic_overlap() -> None:
    same = nft.TrafficRule("tcp", "on_port", 8081, None, "web")
    assert nft.overlaps([*RULES, same]) == [(RULES[1], same)]
    assert nft.overlaps(RULES) == []
    # The same traffic twice in one group is harmless (one map decides).
    assert nft.overlaps([RULES[1], nft.TrafficRule("tcp", "on_addr", 8081, None, "api")]) == []


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_the_kernel_accepts_the_ruleset_of_several_groups() -> None:
    payload = json.dumps(nft.ruleset(SPEC, OWNED))
    listed = subprocess.run(
        ["unshare", "-n", "sh", "-c", "nft -j -f - && nft list table ip safekit_farm_t"],
        input=payload,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "tcp . 8081 : goto rule_" in listed and "jhash ip saddr . tcp sport" in listed
    assert "udp . 5353 : goto rule_" in listed and "jhash ip saddr . ip id mod 256" in listed
