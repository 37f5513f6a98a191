"""bench/farm_ceiling.py's pure parts: the stripped-down variants of a node's `vmac_directed` netdev
rules (built here by the product's own `directed_ruleset`) still send every bucket where the
as-built rules send it, and the reload is one transaction of chain flushes and rules."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from farm_ceiling import FLOOR, one_lookup, ratios, reload_commands, variant, without_flow_tables
from safekit.farm import directed, nft
from safekit.farm.groups import group, group_maps, slots_of

NODES = ("node1", "node2", "node3")
ADDRESSES = {n: ipaddress.IPv4Address(f"198.18.0.{i}") for i, n in enumerate(NODES, start=1)}
GROUPS = (group("web", dict.fromkeys(NODES, 1)),)
SPEC = nft.FarmRules(
    "safekit_farm_m",
    (nft.BalancedAddress(ipaddress.IPv4Address("198.18.0.200"), "eth0", ""),),
    (nft.TrafficRule("tcp", "on_port", 8080, None, "web"),),
    1234,
    "web",
)


def netdev_rules(local: str) -> list[dict[str, Any]]:
    members = set(NODES)
    views = group_maps(GROUPS, members)
    plan = directed.plan(local, views, slots_of(views, local), group_maps(GROUPS, members - {local}))
    payload = directed.directed_ruleset(SPEC, plan, ADDRESSES, create=True)
    return [
        c["add"]["rule"]
        for c in payload["nftables"]
        if c.get("add", {}).get("rule", {}).get("family") == "netdev"
    ]


def verdicts(rule: dict[str, Any]) -> dict[int, str]:
    """bucket -> verdict of a rule's bucket map (ranges unfolded)."""
    (vmap,) = [e["vmap"] for e in rule["expr"] if "vmap" in e]
    found: dict[int, str] = {}
    for key, verdict in vmap["data"]["set"]:
        first, last = key["range"] if isinstance(key, dict) else (key, key)
        for bucket in range(first, last + 1):
            found[bucket] = json.dumps(verdict)
    return found


def text(rules: list[dict[str, Any]]) -> str:
    return json.dumps(rules)


@pytest.mark.parametrize("local", NODES)
def test_without_flow_tables_no_flow_is_looked_up_or_written(local: str) -> None:
    rules = without_flow_tables(netdev_rules(local))
    assert "@mine" not in text(rules) and "@flows_" not in text(rules)
    assert '"set": {"op"' not in text(rules)
    # The relay is still there: marked, counted, sent by `fwd` to the owner's address.
    assert '"fwd": {"dev": "eth0", "family": "ip", "addr"' in text(rules)
    assert "32768" in text(rules)


@pytest.mark.parametrize("local", NODES)
def test_a_connections_later_packets_go_where_its_syn_went(local: str) -> None:
    built = netdev_rules(local)
    vip_rules = [
        r for r in without_flow_tables(built) if r["chain"] == "vip_0" and any("vmap" in e for e in r["expr"])
    ]
    syn, stranger = vip_rules[0], vip_rules[1]  # the `<rule>` for port 8080: its SYNs, its later packets
    for bucket, verdict in verdicts(syn).items():
        expected = verdict.replace('"target": "serve_syn"', "").replace('"target": "open', '"target": "pass')
        if "serve_syn" in verdict:
            assert verdicts(stranger)[bucket] == '{"accept": null}'
        else:
            assert verdicts(stranger)[bucket] == expected
    # As built, a node's own buckets' strangers go to the node that had them before.
    as_built = [r for r in built if r["chain"] == "vip_0" and any("vmap" in e for e in r["expr"])]
    assert '{"accept": null}' not in set(verdicts(as_built[1]).values())


def test_one_lookup_leaves_one_bucket_map_per_frame_and_no_mark() -> None:
    rules = one_lookup(netdev_rules("node1"))
    vip = [r for r in rules if r["chain"] == "vip_0"]
    assert all(any("vmap" in e for e in r["expr"]) for r in vip)
    assert not any("syn" in json.dumps(r["expr"]) for r in vip)
    assert "mangle" not in text(rules)
    assert '"counter": null' not in text(rules)
    # The first map a TCP frame to port 8080 meets sends each bucket where the SYN map did.
    syn = next(
        r for r in without_flow_tables(netdev_rules("node1")) if r["chain"] == "vip_0" and "syn" in text([r])
    )
    relayed = {b for b, v in verdicts(syn).items() if "open_" in v}
    assert {b for b, v in verdicts(vip[0]).items() if "pass_" in v} == relayed


def test_as_built_is_the_rules_as_read_and_an_unknown_variant_is_refused() -> None:
    rules = netdev_rules("node2")
    assert variant(rules, "as_built") == rules
    with pytest.raises(ValueError, match="no variant"):
        variant(rules, "fastest")


def test_the_reload_flushes_every_chain_then_adds_the_rules_without_their_handles() -> None:
    listed = [
        {**r, "handle": 7, "expr": [*r["expr"][:-1], {"counter": {"packets": 3, "bytes": 9}}, r["expr"][-1]]}
        for r in netdev_rules("node1")[:2]
    ]
    payload = reload_commands("safekit_farm_m", ["a", "b"], listed)
    commands = payload["nftables"]
    assert [c["flush"]["chain"]["name"] for c in commands[:2]] == ["a", "b"]
    added = [c["add"]["rule"] for c in commands[2:]]
    assert len(added) == 2 and all("handle" not in r for r in added)
    assert all({"counter": None} in r["expr"] for r in added), "counters start again from zero"


def test_ratios_are_medians_over_the_floors_median() -> None:
    found = ratios({"as_built": [80.0, 90.0, 85.0], FLOOR: [100.0, 100.0, 98.0], "one_lookup": []})
    assert found["over_floor"] == {"as_built": 0.85, FLOOR: 1.0}
    assert found["requests_per_s_median"] == {"as_built": 85, FLOOR: 100}
    assert ratios({"as_built": [1.0]})["over_floor"] == {}
