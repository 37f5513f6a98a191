"""vmac_directed decisions (pure): who answers ARP for which client, where each bucket's traffic
goes from each node, where a connection a node does not know is sent on, and the nftables that
carry it out."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.farm import directed, nft
from safekit.farm.buckets import BUCKETS
from safekit.farm.groups import group, group_maps, slots_of

NODES = ("node1", "node2", "node3")
ADDRESSES = {n: ipaddress.IPv4Address(f"198.18.0.{i}") for i, n in enumerate(NODES, start=1)}
GROUPS = (group("web", dict.fromkeys(NODES, 1)),)
VIP = ipaddress.IPv4Address("198.18.0.200")
SPEC = nft.FarmRules(
    "safekit_farm_m",
    (nft.BalancedAddress(VIP, "eth0", ""),),
    (nft.TrafficRule("tcp", "on_port", 8080, None, "web"),),
    1234,
    "web",
)


def plan_of(local: str, members: set[str], *, taken: bool = True) -> directed.DirectedPlan:
    views = group_maps(GROUPS, members)
    owned = slots_of(views, local) if taken else frozenset()
    return directed.plan(local, views, owned, group_maps(GROUPS, members - {local}))


def test_every_bucket_is_served_here_or_relayed_to_its_owner() -> None:
    views = group_maps(GROUPS, set(NODES))
    owners = views[0][1].owners
    for node in NODES:
        plan = plan_of(node, set(NODES))
        for bucket in range(BUCKETS):
            expected = directed.HERE if owners[bucket] == node else owners[bucket]
            assert plan.target("web", bucket) == expected
        # ARP is answered for the clients whose bucket is served here, and only those.
        assert plan.arp_owned("web") == views[0][1].buckets_of(node)


def test_buckets_waiting_for_the_handover_are_a_gap_nobody_answers_arp_for() -> None:
    plan = plan_of("node3", set(NODES), taken=False)
    mine = group_maps(GROUPS, set(NODES))[0][1].buckets_of("node3")
    assert {b for b in range(BUCKETS) if plan.target("web", b) == directed.GAP} == mine
    assert plan.arp_owned("web") == frozenset()


def test_a_joiner_knows_who_had_each_of_its_buckets() -> None:
    before = group_maps(GROUPS, {"node1", "node2"})[0][1]
    plan = plan_of("node3", set(NODES))
    mine = group_maps(GROUPS, set(NODES))[0][1].buckets_of("node3")
    assert dict(plan.previous) == {("web", b): before.owners[b] for b in mine}
    assert set(dict(plan.previous).values()) == {"node1", "node2"}


@settings(max_examples=60, deadline=None)
@given(
    powers=st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=5),
    present=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_a_connection_is_sent_on_at_most_twice_and_never_back(powers: list[int], present: list[bool]) -> None:
    """A stranger reaches a node R from a client: R sends it to the owner O (or, owner itself, to
    the previous owner P); O sends it on to P only for its own buckets; P, which does not own the
    bucket, never sends it further: no loop for any membership."""
    nodes = [f"n{i}" for i in range(len(powers))]
    groups = (group("g", dict(zip(nodes, powers, strict=True))),)
    members = {n for n, here in zip(nodes, present, strict=False) if here} or {nodes[0]}
    views = group_maps(groups, members)
    plans = {
        n: directed.plan(n, views, slots_of(views, n), group_maps(groups, members - {n})) for n in members
    }
    for bucket in range(BUCKETS):
        owner = views[0][1].owners[bucket]
        assert owner is not None  # every bucket has an owner while a member is left
        previous = plans[owner].previous_owner(("g", bucket))
        for node, plan in plans.items():
            assert plan.target("g", bucket) == (directed.HERE if node == owner else owner)
        if previous is not None:
            assert previous != owner
            assert plans.get(previous) is None or plans[previous].target("g", bucket) == owner


def test_the_first_remaining_member_announces_after_a_leave_only() -> None:
    assert directed.takeover_announcer({"node1", "node2", "node3"}, {"node2", "node3"}) == "node2"
    assert directed.takeover_announcer({"node1", "node2"}, {"node1", "node2", "node3"}) is None
    assert directed.takeover_announcer(set(), {"node1"}) is None
    assert directed.takeover_announcer({"node1"}, set()) is None


def test_relay_addresses_are_on_the_vips_interface() -> None:
    admin = {"node1": ipaddress.IPv4Address("10.0.0.1"), "node2": ipaddress.IPv4Address("10.0.0.2")}
    lan = {"node1": ipaddress.IPv4Address("198.18.0.1"), "node2": ipaddress.IPv4Address("198.18.0.2")}
    lans = [("admin", admin), ("default", lan)]
    assert directed.relay_addresses(lans, {ipaddress.IPv4Address("198.18.0.1")}) == lan
    assert directed.relay_addresses(lans, set()) == admin


def _rules(payload: dict[str, object]) -> list[dict[str, object]]:
    commands = payload["nftables"]
    assert isinstance(commands, list)
    return [c["add"]["rule"] for c in commands if "rule" in c.get("add", {})]


def _chain_rules(payload: dict[str, object], chain: str, family: str = "netdev") -> list[str]:
    return [json.dumps(r["expr"]) for r in _rules(payload) if r["chain"] == chain and r["family"] == family]


def test_the_ruleset_relays_at_layer_2_and_marks_what_it_relays() -> None:
    payload = directed.directed_ruleset(SPEC, plan_of("node1", set(NODES)), ADDRESSES, create=True)
    opened = _chain_rules(payload, "open_node2_eth0")
    assert len(opened) == 1
    assert '"fwd": {"dev": "eth0", "family": "ip", "addr": "198.18.0.2"}' in opened[0]
    assert '"set": "@flows_node2"' in opened[0] and '"|"' in opened[0] and "32768" in opened[0]
    again = _chain_rules(payload, "again_node3_eth0")
    assert '"field": "ttl"' in again[0] and '"value": 2' in again[0]
    # The interface's chain has one rule: a lookup of the destination sends a VIP's frames to the
    # VIP's chain (any other frame leaves at once).
    (dispatch,) = _chain_rules(payload, "in_eth0")
    assert '"198.18.0.200", {"goto": {"target": "vip_0"}}' in dispatch
    base = _chain_rules(payload, "vip_0")
    # Frames another node relayed come first, then known flows, then the buckets.
    assert '"goto": {"target": "relayed_eth0"}' in base[0]
    assert all('"@mine"' in rule for rule in base[2:4])
    assert '"op": "delete"' in base[2] and '["fin", "rst"]' in base[2], "a closing flow must leave @mine"
    assert all("@flows_" in rule for rule in base[4:8])
    arp = _chain_rules(payload, "in", "arp")
    assert len(arp) == 1 and '"arp", "field": "saddr ip"' in arp[0]
    dropped = _chain_rules(payload, "connections", "ip")
    assert dropped[-1].endswith('{"drop": null}]')


def test_a_reload_keeps_the_flow_tables() -> None:
    first = directed.directed_ruleset(SPEC, plan_of("node1", set(NODES)), ADDRESSES, create=True)
    later = directed.directed_ruleset(SPEC, plan_of("node1", {"node1", "node2"}), ADDRESSES, create=False)
    created = [c for c in first["nftables"] if "set" in c.get("add", {})]
    assert {c["add"]["set"]["name"] for c in created} == {"mine", "flows_node2", "flows_node3"}
    netdev = [c for c in later["nftables"] if "netdev" in json.dumps(c)[:80]]
    assert not [c for c in netdev if "delete" in c or "set" in c.get("add", {})], "a reload dropped flows"
    assert {"flush": {"chain": {"family": "netdev", "table": SPEC.table, "name": "in_eth0"}}} in netdev


def test_a_node_without_an_address_cannot_be_relayed_to() -> None:
    with pytest.raises(ValueError, match="no address to relay to for node2, node3"):
        directed.directed_ruleset(
            SPEC, plan_of("node1", set(NODES)), {"node1": ADDRESSES["node1"]}, create=True
        )


def test_relay_counters_are_read_from_the_listing() -> None:
    listed = {
        "nftables": [
            {"counter": {"name": "clients", "packets": 90}},
            {"counter": {"name": "relayed", "packets": 60}},
        ]
    }
    assert directed.relay_counters(listed) == (90, 60)


@settings(max_examples=40, deadline=None)
@given(
    powers=st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=5),
    local_index=st.integers(min_value=0, max_value=4),
)
def test_a_prepared_takeover_moves_only_the_leavers_buckets(powers: list[int], local_index: int) -> None:
    """The ruleset a node prepares for "member X is lost": X's buckets are served (here, at once:
    not a gap) or relayed to a survivor, and every other bucket keeps the target it has now."""
    nodes = [f"n{i}" for i in range(len(powers))]
    local = nodes[local_index % len(nodes)]
    groups = (group("g", dict(zip(nodes, powers, strict=True))),)
    views = group_maps(groups, set(nodes))
    now = directed.plan(local, views, slots_of(views, local), group_maps(groups, set(nodes) - {local}))
    prepared = directed.takeover_plans(local, groups, nodes)
    assert set(prepared) == set(nodes) - {local}
    for leaver, after in prepared.items():
        for bucket in range(BUCKETS):
            before_target, after_target = now.target("g", bucket), after.target("g", bucket)
            assert after_target not in (leaver, directed.GAP)
            if before_target != leaver:
                assert after_target == before_target, (leaver, bucket)
