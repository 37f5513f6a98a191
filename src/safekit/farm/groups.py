"""The farm's balancing groups: which nodes share which traffic, with what power (pure).

A SafeKit farm module lists `<group>`s in `<loadbalancing_list>`; each names its nodes and their
power in `<cluster><host name power/></cluster>` and the traffic it shares in `<rule>`s. Each group
has its own bucket map (`buckets.compute_map` of its nodes and powers, restricted to the balancing
set), so two groups on different ports can be served by different nodes with different weights.

- A `<group>` without `<cluster>` is, as in SafeKit, every node of the farm with power 1.
- No `<loadbalancing_list>` at all: one group, `default`, of every farm node with power 1.

A node that is not in a group serves none of its traffic; a node in no group at all is refused at
load (it would hold the VIP and answer nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from safekit.farm.buckets import BucketMap, compute_map

DEFAULT_GROUP = "default"

Slot = tuple[str, int]
"""A bucket of a group: (group name, bucket 0..255). What a node owns is a set of slots."""

GroupMaps = tuple[tuple[str, BucketMap], ...]
"""Each group's bucket map, in the groups' order."""


class GroupError(ValueError):
    """The groups cannot be balanced as written (the message says why and what to write)."""


@dataclass(frozen=True, slots=True)
class BalancingGroup:
    name: str
    powers: tuple[tuple[str, int], ...]
    """Every node of the group and its power, sorted by node."""
    every_node: bool = False
    """The group had no `<cluster>`: every farm node, power 1."""

    @property
    def power_map(self) -> dict[str, int]:
        return dict(self.powers)

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(node for node, _ in self.powers)

    def describe(self) -> str:
        """How the load message shows it: `web: node1 (power 1), node2 (power 2)`."""
        hosts = ", ".join(f"{node} (power {power})" for node, power in self.powers)
        origin = " - no <cluster>: every farm node, power 1" if self.every_node else ""
        return f"{self.name}: {hosts}{origin}"


def group(name: str, powers: Mapping[str, int], *, every_node: bool = False) -> BalancingGroup:
    return BalancingGroup(name, tuple(sorted(powers.items())), every_node)


def resolve_groups(
    declared: Sequence[tuple[str, Sequence[tuple[str, int]]]],
    farm_nodes: Iterable[str],
    local_node: str,
) -> tuple[BalancingGroup, ...]:
    """The groups of a module: `declared` is each `<group>`'s name and hosts (empty: no `<cluster>`),
    in file order; `farm_nodes` every node of the farm's LANs (this one included).

    Raises `GroupError` for a group named twice, or when this node is in no group.
    """
    everyone = {node: 1 for node in sorted({*farm_nodes, local_node})}
    if not declared:
        return (group(DEFAULT_GROUP, everyone, every_node=True),)
    groups: list[BalancingGroup] = []
    for name, hosts in declared:
        if any(g.name == name for g in groups):
            raise GroupError(f"<group name={name!r}> is declared twice; give each group its own name")
        if hosts:
            groups.append(group(name, dict(hosts)))
        else:
            groups.append(group(name, everyone, every_node=True))
    if not any(local_node in g.nodes for g in groups):
        names = ", ".join(g.name for g in groups)
        raise GroupError(
            f"this node ({local_node}) is not a <host> of any <group> ({names}): it would serve nothing"
        )
    return tuple(groups)


def farm_nodes_of(groups: Iterable[BalancingGroup]) -> frozenset[str]:
    """Every node some group balances to (the nodes whose membership matters)."""
    return frozenset(node for g in groups for node in g.nodes)


def group_maps(groups: Iterable[BalancingGroup], members: Iterable[str]) -> GroupMaps:
    """Each group's map for the balancing set `members` (nodes outside a group are ignored by it)."""
    present = frozenset(members)
    return tuple((g.name, compute_map(g.power_map, present)) for g in groups)


def slots_of(maps: GroupMaps, node: str) -> frozenset[Slot]:
    """Every (group, bucket) `node` owns in `maps`."""
    return frozenset((name, b) for name, view in maps for b in view.buckets_of(node))


def owner_of(maps: GroupMaps, slot: Slot) -> str | None:
    name, bucket = slot
    for group_name, view in maps:
        if group_name == name:
            return view.owners[bucket]
    return None


def by_group(slots: Iterable[Slot], groups: Iterable[str]) -> dict[str, frozenset[int]]:
    """The buckets of each group in `slots` (every group named, empty when none)."""
    found: dict[str, set[int]] = {name: set() for name in groups}
    for name, bucket in slots:
        found.setdefault(name, set()).add(bucket)
    return {name: frozenset(buckets) for name, buckets in found.items()}
