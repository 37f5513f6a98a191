"""The farm's bucket map: which node serves which of the 256 hash buckets of client traffic.

Pure and deterministic: every node computes the map from the same inputs (the configured farm
nodes with their `power`, and the set of members now in the balancing set), so all nodes agree
without talking. Two rules shape it:

- **Balance**: a member's share is within one bucket of its weight share, `256 * power / total`
  (largest remainder apportionment; a member with power 0 gets nothing unless every member has 0).
- **Stickiness**: the map of the whole configured farm is the *canonical* map; in the map of any
  membership, a bucket whose canonical owner is a member stays with it. Only buckets whose canonical
  owner is absent ("orphans") are dealt out, to the members below their share.

So when one node leaves a complete farm (or returns to it), exactly its buckets move and nothing
else; with several nodes away, a change moves the leaving node's buckets and at most some orphans.
(A stateless map cannot be both exactly balanced and minimal for every pair of memberships; see
docs/adr for why this trade was chosen.)
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

BUCKETS = 256


@functools.lru_cache(maxsize=65536)
def _rank(bucket: int, node: str) -> int:
    """A node's preference for a bucket: a stable hash, the same on every node and every run."""
    digest = hashlib.sha256(f"safekit-farm:{bucket}:{node}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@functools.lru_cache(maxsize=4096)
def _tiebreak(node: str) -> int:
    return int.from_bytes(hashlib.sha256(f"safekit-farm-tie:{node}".encode()).digest()[:8], "big")


def weights_of(powers: Mapping[str, int], members: Iterable[str]) -> dict[str, int]:
    """Effective weights of `members`: their power, or 1 each when every member has power 0."""
    chosen = {m: powers[m] for m in members}
    if chosen and sum(chosen.values()) == 0:
        return dict.fromkeys(chosen, 1)
    return chosen


def exact_shares(weights: Mapping[str, int], total: int = BUCKETS) -> dict[str, Fraction]:
    whole = sum(weights.values())
    if whole <= 0:
        return {}
    return {node: Fraction(total * w, whole) for node, w in weights.items()}


def apportion(weights: Mapping[str, int], total: int = BUCKETS) -> dict[str, int]:
    """Largest-remainder apportionment of `total` buckets; ties broken by a hash of the name."""
    shares = exact_shares(weights, total)
    counts = {node: math.floor(share) for node, share in shares.items()}
    left = total - sum(counts.values())
    order = sorted(shares, key=lambda n: (-(shares[n] - counts[n]), _tiebreak(n), n))
    for node in order[:left]:
        counts[node] += 1
    return counts


@dataclass(frozen=True, slots=True)
class BucketMap:
    """Owner of each bucket (None: no member, the farm is empty)."""

    owners: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if len(self.owners) != BUCKETS:
            raise ValueError(f"a bucket map has {BUCKETS} buckets, not {len(self.owners)}")

    def buckets_of(self, node: str) -> frozenset[int]:
        return frozenset(b for b, owner in enumerate(self.owners) if owner == node)

    def shares(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for owner in self.owners:
            if owner is not None:
                counts[owner] = counts.get(owner, 0) + 1
        return dict(sorted(counts.items()))

    def moved(self, other: BucketMap) -> frozenset[int]:
        """Buckets whose owner differs between the two maps."""
        return frozenset(b for b in range(BUCKETS) if self.owners[b] != other.owners[b])

    def to_json(self) -> dict[str, object]:
        nodes = sorted({o for o in self.owners if o is not None})
        return {
            "buckets": BUCKETS,
            "owners": list(self.owners),
            "shares": self.shares(),
            "ranges": {n: ranges(self.buckets_of(n)) for n in nodes},
        }


def ranges(buckets: Collection[int]) -> list[tuple[int, int]]:
    """Sorted buckets as inclusive (first, last) runs: {1,2,3,7} -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for b in sorted(buckets):
        if runs and runs[-1][1] == b - 1:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((b, b))
    return runs


def _deal(base: tuple[str | None, ...], weights: Mapping[str, int]) -> tuple[str | None, ...]:
    """Keep every bucket whose `base` owner is a member; deal the others to members below share."""
    if not weights:
        return (None,) * BUCKETS
    shares = exact_shares(weights)
    owners: list[str | None] = [o if o in weights else None for o in base]
    kept = {node: 0 for node in weights}
    for owner in owners:
        if owner is not None:
            kept[owner] += 1
    targets = {node: max(math.floor(shares[node]), kept[node]) for node in weights}
    # Trim anyone kept above the ceiling of its share (cannot happen when `base` is the canonical
    # map of a superset of the members, since shares only grow; kept for any other base).
    while sum(targets.values()) > BUCKETS:
        node = max(targets, key=lambda n: (targets[n] - shares[n], _tiebreak(n), n))
        victim = min((b for b, o in enumerate(owners) if o == node), key=lambda b: _rank(b, node))
        owners[victim] = None
        targets[node] -= 1
    left = BUCKETS - sum(targets.values())
    candidates = sorted(
        (n for n in weights if targets[n] < shares[n]),
        key=lambda n: (-(shares[n] - targets[n]), _tiebreak(n), n),
    )
    for node in candidates[:left]:
        targets[node] += 1
    counts = {node: sum(1 for o in owners if o == node) for node in weights}
    for bucket, owner in enumerate(owners):
        if owner is not None:
            continue
        hungry = [n for n in weights if counts[n] < targets[n]]
        chosen = max(hungry, key=lambda n: (_rank(bucket, n), n))
        owners[bucket] = chosen
        counts[chosen] += 1
    return tuple(owners)


def canonical_map(powers: Mapping[str, int]) -> BucketMap:
    """The map of the whole configured farm."""
    return _map(tuple(sorted(powers.items())), frozenset(powers))


def compute_map(powers: Mapping[str, int], members: Iterable[str]) -> BucketMap:
    """The map for the members now in the balancing set (`powers`: every configured farm node).

    Members not configured are ignored (they cannot be agreed on by the others).
    """
    return _map(tuple(sorted(powers.items())), frozenset(members) & frozenset(powers))


@functools.lru_cache(maxsize=256)
def _map(powers: tuple[tuple[str, int], ...], present: frozenset[str]) -> BucketMap:
    universe = dict(powers)
    canonical = _deal((None,) * BUCKETS, weights_of(universe, sorted(universe)))
    if len(present) == len(universe):
        return BucketMap(canonical)
    return BucketMap(_deal(canonical, weights_of(universe, sorted(present))))
