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


def _bucket_rules(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c["add"]["rule"]
        for c in payload["nftables"]
        if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == "buckets"
    ]


def _vmap(rule: dict[str, Any]) -> tuple[Any, set[str]]:
    vmap = rule["expr"][-1]["vmap"]
    accepted: set[str] = set()
    for key, verdict in vmap["data"]["set"]:
        if "accept" in verdict:
            accepted.add(json.dumps(key))
    return vmap["key"]["jhash"]["expr"], accepted


def _ports(rule: dict[str, Any]) -> list[int]:
    return [
        e["match"]["right"]
        for e in rule["expr"]
        if "match" in e and e["match"]["left"].get("payload", {}).get("field") == "dport"
    ]


def test_each_rule_uses_its_groups_buckets_the_specific_ports_first() -> None:
    rules = _bucket_rules(nft.ruleset(SPEC, OWNED))
    # api's port rules before web's every-port rule, whatever the file's order (and the rule
    # naming this VIP before the one for every VIP).
    assert [_ports(r) for r in rules[:3]] == [[5353], [8081], []]
    api_key, api_accepts = _vmap(rules[1])
    assert api_accepts == {"3", "4"} or api_accepts == {json.dumps({"range": [3, 4]})}
    _, web_accepts = _vmap(rules[2])
    assert web_accepts == {json.dumps({"range": [0, 99]})}
    assert api_key == {"concat": [nft._payload("ip", "saddr"), nft._payload("tcp", "sport")]}


def test_on_ipid_hashes_the_ip_identification_of_udp_and_the_source_port_of_tcp() -> None:
    rules = _bucket_rules(nft.ruleset(SPEC, OWNED))
    key, _ = _vmap(rules[0])
    assert key == {"concat": [nft._payload("ip", "saddr"), nft._payload("ip", "id")]}
    tcp = nft.FarmRules("t", (ADDRESS,), (nft.TrafficRule("tcp", "on_ipid", 80, None, "web"),), 1, "web")
    key, _ = _vmap(_bucket_rules(nft.ruleset(tcp, OWNED))[0])
    assert key == {"concat": [nft._payload("ip", "saddr"), nft._payload("tcp", "sport")]}


def test_traffic_no_rule_names_follows_the_first_group() -> None:
    rules = _bucket_rules(nft.ruleset(SPEC, OWNED))
    key, accepts = _vmap(rules[-1])  # any other packet to the VIP (ICMP, other UDP)
    assert key == nft._payload("ip", "saddr") and accepts == {json.dumps({"range": [0, 99]})}


def test_a_group_owned_nowhere_here_drops_all_its_new_traffic() -> None:
    rules = _bucket_rules(nft.ruleset(SPEC, {"web": frozenset(range(256))}))
    _, accepts = _vmap(rules[0])
    assert accepts == set()


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
    assert "tcp dport 8081" in listed and "jhash ip saddr . tcp sport" in listed
    assert "udp dport 5353 jhash ip saddr . ip id mod 256" in listed
