"""Balancing groups: SafeKit's `<group>` shapes, each group's own map, and the machine over several."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit import farm as fm
from safekit.farm.buckets import BUCKETS, compute_map
from safekit.farm.groups import GroupError, by_group, group_maps, resolve_groups, slots_of

FARM = ("node1", "node2", "node3")
WEB = fm.BalancingGroup("web", (("node1", 1), ("node2", 1), ("node3", 1)), every_node=True)
API = fm.BalancingGroup("api", (("node2", 1), ("node3", 3)))
GROUPS = (WEB, API)
JOIN = 0.4
HANDOVER = 0.3


def test_a_group_without_cluster_is_every_farm_node_with_power_1() -> None:
    groups = resolve_groups([("web", []), ("api", [("node2", 1), ("node3", 3)])], FARM, "node1")
    assert groups == (WEB, API)
    assert "no <cluster>: every farm node, power 1" in groups[0].describe()
    assert groups[1].describe() == "api: node2 (power 1), node3 (power 3)"


def test_no_loadbalancing_list_is_one_default_group_of_every_node() -> None:
    (only,) = resolve_groups([], ["node2", "node3"], "node1")
    assert only.name == "default" and only.power_map == dict.fromkeys(FARM, 1)


def test_a_node_in_no_group_and_a_group_named_twice_are_refused() -> None:
    with pytest.raises(GroupError, match=r"node1\) is not a <host> of any <group> \(api\)"):
        resolve_groups([("api", [("node2", 1)])], FARM, "node1")
    with pytest.raises(GroupError, match="declared twice"):
        resolve_groups([("web", []), ("web", [("node1", 1)])], FARM, "node1")
    # In one group of two is fine: node1 serves the web traffic only.
    assert resolve_groups([("web", []), ("api", [("node2", 1)])], FARM, "node1")[1].nodes == {"node2"}


def test_each_group_has_its_own_map_with_its_own_nodes_and_powers() -> None:
    maps = dict(group_maps(GROUPS, FARM))
    assert sorted(maps["web"].shares().values()) == [85, 85, 86]
    assert maps["api"].shares() == {"node2": 64, "node3": 192}
    assert slots_of(group_maps(GROUPS, FARM), "node1") == {
        ("web", b) for b in maps["web"].buckets_of("node1")
    }
    # node3 leaves: in each group, exactly its buckets move.
    after = dict(group_maps(GROUPS, ["node1", "node2"]))
    assert maps["web"].moved(after["web"]) == maps["web"].buckets_of("node3")
    assert maps["api"].moved(after["api"]) == maps["api"].buckets_of("node3")
    assert after["api"].shares() == {"node2": BUCKETS}


def test_by_group_names_every_group() -> None:
    assert by_group({("web", 1), ("web", 2)}, ["web", "api"]) == {"web": {1, 2}, "api": frozenset()}


def _settings(node: str) -> fm.FarmSettings:
    return fm.settings_for(node, GROUPS, join_after=JOIN, handover_delay=HANDOVER)


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.settings = _settings(name)
        self.state = fm.initial_state(0.0)
        self.slots: frozenset[fm.Slot] | None = None
        self.logs: list[str] = []

    def feed(self, event: fm.Event) -> None:
        pending: list[fm.Event] = [event]
        while pending:
            t = fm.step(self.settings, self.state, pending.pop(0))
            self.state = t.state
            for action in t.actions:
                match action:
                    case fm.Program(owned=owned):
                        self.slots = owned
                    case fm.Log(reason=message):
                        self.logs.append(message)
                    case fm.RunScript(run_id=run_id, script=script):
                        pending.append(fm.ScriptDone(run_id, script, fm.ScriptOutcome.OK, event.now))


def _up(node: str, now: float) -> fm.PeerStatus:
    return fm.PeerStatus(node, fm.FarmState.UP, fm.Readiness.READY, now)


def test_a_node_serves_each_group_by_that_groups_map_and_logs_each() -> None:
    n = Node("node2")
    n.feed(fm.Command(fm.CommandKind.START, 0.0))
    n.feed(_up("node1", 0.1))
    n.feed(_up("node3", 0.1))
    n.feed(fm.Tick(JOIN))
    assert n.slots == frozenset(), "every bucket is a live member's: taken after the handover"
    n.feed(fm.Tick(JOIN + HANDOVER))
    assert n.slots == slots_of(group_maps(GROUPS, FARM), "node2")
    assert len(by_group(n.slots, ["web", "api"])["api"]) == 64
    n.feed(fm.PeerLost("node3", 1.0))
    owned = by_group(n.slots, ["web", "api"])
    assert len(owned["api"]) == BUCKETS and len(owned["web"]) == 128
    assert [line for line in n.logs if line.startswith("buckets: ")][-1] == (
        "buckets: web 128 of 256 (+43 -0), api 256 of 256 (+192 -0); balancing set node1, node2"
    )


def test_a_node_outside_a_group_never_owns_its_buckets() -> None:
    n = Node("node1")
    n.feed(fm.Command(fm.CommandKind.START, 0.0))
    n.feed(fm.Tick(JOIN))
    assert n.slots is not None
    assert by_group(n.slots, ["web", "api"]) == {"web": frozenset(range(BUCKETS)), "api": frozenset()}


def test_one_group_keeps_the_single_group_log_line() -> None:
    settings_ = fm.settings_for("node1", {"node1": 1, "node2": 1}, join_after=JOIN, handover_delay=HANDOVER)
    assert settings_.group_names == ("default",)
    t = fm.step(settings_, fm.initial_state(0.0), fm.Command(fm.CommandKind.START, 0.0))
    assert t.state.phase is fm.Phase.PRESTART


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(FARM), st.sampled_from(["stop", "start", "lost", "heard"])), max_size=12
    )
)
def test_no_slot_of_any_group_is_ever_served_twice_and_all_are_served_once_settled(
    script: list[tuple[str, str]],
) -> None:
    """Three machines with two groups; random stops, starts, losses; heartbeats delivered at once
    (when not lost), checked after every tick and every exchange. No (group, bucket) is ever owned
    by two nodes - also when nodes end their listening in the same instant, before hearing each
    other as Ready; once quiet, every bucket of a group with a live member is owned exactly once,
    by the map of the live members."""
    nodes = {name: Node(name) for name in FARM}
    now = 0.0
    running = set(FARM)
    for node in nodes.values():
        node.feed(fm.Command(fm.CommandKind.START, now))

    def gossip(t: float) -> None:
        for a in FARM:
            for b in FARM:
                if a != b and a in running:
                    s = nodes[a].state
                    nodes[b].feed(fm.PeerStatus(a, s.state, s.readiness, t))

    def check() -> None:
        seen: dict[fm.Slot, str] = {}
        for node in (nodes[n] for n in FARM if n in running):
            for slot in node.slots or ():
                assert slot not in seen, f"{slot} owned by {seen[slot]} and {node.name} ({script})"
                seen[slot] = node.name

    def settle() -> None:
        nonlocal now
        for _ in range(6):
            now += 0.2
            for node in nodes.values():
                node.feed(fm.Tick(now))
            check()
            gossip(now)
            check()

    settle()
    for name, what in script:
        now += 0.05
        node = nodes[name]
        if what == "stop" and name in running:
            node.feed(fm.Command(fm.CommandKind.STOP, now))
        elif what == "start" and name in running and node.state.phase is fm.Phase.STOPPED:
            node.feed(fm.Command(fm.CommandKind.START, now))
        elif what == "lost" and name in running:  # the node dies: the others stop hearing it
            running.discard(name)
            nodes[name] = Node(name)
            for other in FARM:
                if other != name:
                    nodes[other].feed(fm.PeerLost(name, now))
        elif what == "heard" and name not in running:  # it reboots and starts again
            running.add(name)
            nodes[name] = node = Node(name)
            node.state = fm.initial_state(now)
            node.feed(fm.Command(fm.CommandKind.START, now))
        check()
        settle()
    members = {n for n in FARM if n in running and nodes[n].state.member}
    expected = group_maps(GROUPS, members)
    for name in members:
        assert nodes[name].slots == slots_of(expected, name)
    for group_name, view in expected:
        owned = [s for n in members for s in nodes[n].slots or () if s[0] == group_name]
        if any(m in dict(GROUPS_BY_NAME[group_name].powers) for m in members):
            assert len(owned) == BUCKETS == len(set(owned)), group_name
        assert view == compute_map(GROUPS_BY_NAME[group_name].power_map, members)


GROUPS_BY_NAME = {g.name: g for g in GROUPS}
