"""The bucket map: balance by power, stickiness, the same answer everywhere."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.farm.buckets import BUCKETS, BucketMap, apportion, canonical_map, compute_map, ranges

NAMES = [f"node{i}" for i in range(1, 11)]

farms = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 8), min_size=1, max_size=8)


def _effective(powers: dict[str, int], members: set[str]) -> dict[str, int]:
    chosen = {m: powers[m] for m in members}
    return dict.fromkeys(chosen, 1) if sum(chosen.values()) == 0 else chosen


def _assert_balanced(bucket_map: BucketMap, powers: dict[str, int], members: set[str]) -> None:
    weights = _effective(powers, members)
    total = sum(weights.values())
    shares = bucket_map.shares()
    assert sum(shares.values()) == (BUCKETS if members else 0)
    assert set(shares) <= members
    for node, weight in weights.items():
        exact = BUCKETS * weight / total
        assert abs(shares.get(node, 0) - exact) < 1, (node, shares, weights)


@st.composite
def farm_and_members(draw: st.DrawFn) -> tuple[dict[str, int], set[str]]:
    powers = draw(farms)
    members = draw(st.sets(st.sampled_from(sorted(powers))))
    return powers, members


@given(farm_and_members())
@settings(max_examples=300)
def test_every_member_gets_its_weight_share_within_one_bucket(case: tuple[dict[str, int], set[str]]) -> None:
    powers, members = case
    _assert_balanced(compute_map(powers, members), powers, members)


@given(farms)
def test_the_whole_farm_gets_the_canonical_map(powers: dict[str, int]) -> None:
    assert compute_map(powers, powers) == canonical_map(powers)
    _assert_balanced(canonical_map(powers), powers, set(powers))


@given(farms.filter(lambda p: len(p) >= 2), st.data())
@settings(max_examples=300)
def test_a_node_leaving_the_whole_farm_moves_only_its_own_buckets(
    powers: dict[str, int], data: st.DataObject
) -> None:
    leaver = data.draw(st.sampled_from(sorted(powers)))
    full = compute_map(powers, powers)
    without = compute_map(powers, set(powers) - {leaver})
    assert full.moved(without) == full.buckets_of(leaver)
    # ... and coming back moves exactly those buckets back to it.
    assert without.moved(full) == full.buckets_of(leaver)


@given(farm_and_members(), st.data())
@settings(max_examples=300)
def test_any_leave_moves_only_the_leavers_buckets_and_orphans(
    case: tuple[dict[str, int], set[str]], data: st.DataObject
) -> None:
    powers, members = case
    if not members:
        return
    leaver = data.draw(st.sampled_from(sorted(members)))
    before = compute_map(powers, members)
    after = compute_map(powers, members - {leaver})
    canonical = canonical_map(powers)
    orphans = {b for b in range(BUCKETS) if canonical.owners[b] not in members}
    assert before.moved(after) <= before.buckets_of(leaver) | orphans
    # Buckets held by their canonical owner never move while that owner stays.
    for b in range(BUCKETS):
        if canonical.owners[b] in members - {leaver}:
            assert after.owners[b] == canonical.owners[b]


@given(farm_and_members())
def test_same_map_whatever_the_order_of_the_inputs(case: tuple[dict[str, int], set[str]]) -> None:
    powers, members = case
    reordered = dict(reversed(list(powers.items())))
    assert compute_map(powers, sorted(members)) == compute_map(reordered, sorted(members, reverse=True))


def test_three_equal_nodes_share_86_85_85_and_the_survivors_128() -> None:
    powers = {"node1": 1, "node2": 1, "node3": 1}
    full = compute_map(powers, powers)
    assert sorted(full.shares().values()) == [85, 85, 86]
    two = compute_map(powers, {"node1", "node3"})
    assert two.shares() == {"node1": 128, "node3": 128}
    assert full.moved(two) == full.buckets_of("node2")


def test_power_weights_the_shares() -> None:
    shares = compute_map({"a": 3, "b": 1}, {"a", "b"}).shares()
    assert shares == {"a": 192, "b": 64}


def test_buckets_are_interleaved_not_one_block() -> None:
    full = compute_map({"node1": 1, "node2": 1, "node3": 1}, {"node1", "node2", "node3"})
    assert all(len(ranges(full.buckets_of(n))) > 10 for n in ("node1", "node2", "node3"))


def test_no_member_no_owner() -> None:
    assert compute_map({"a": 1}, set()).shares() == {}


def test_members_outside_the_configuration_are_ignored() -> None:
    assert compute_map({"a": 1}, {"a", "stranger"}).shares() == {"a": BUCKETS}


def test_apportion_is_largest_remainder() -> None:
    counts = apportion({"a": 1, "b": 1, "c": 1})
    assert sorted(counts.values()) == [85, 85, 86]
    assert sum(apportion({"a": 7, "b": 2}).values()) == BUCKETS
    assert math.isclose(sum(apportion({"x": 5}).values()), BUCKETS)


def test_ranges() -> None:
    assert ranges({1, 2, 3, 7, 9, 10}) == [(1, 3), (7, 7), (9, 10)]
    assert ranges(set()) == []
