"""Who may be primary: eligibility (rule 1) and the deterministic choice between two nodes.

This module owns the election rules. `elect` is symmetric: both nodes evaluate it on the two
statuses they announce, so they reach the same verdict; a winner also waits until the peer
announces the same verdict (handshake) before it starts, so a stale heartbeat cannot make both
start. Order of the rules, once each node's eligibility is known:

1. eligibility: a node competes (CANDIDATE or SECONDARY, not asked to be `second`), has the
   newest copy of the two (`ReplicaRank`: acknowledged writes at the newest generation, then the
   highest generation number) and `rfs.uptodate` - unless the operator ran `prim`
   on a never-synchronised replica (generation 0) or `primforce`;
2. an operator's `prim` / `primforce` on exactly one node;
3. defaultprim naming a node;
4. the last primary, when both nodes name the same one;
5. the smallest node name.

A node's status *consents* to the peer starting the primary role when it is not primary and
either does not compete or names the peer as its verdict (`consents_to`). Heartbeats take time,
so the peer may act on a consent after it was withdrawn: a node that withdraws its consent
(starts competing again, or changes its verdict to itself) does not act on the peer's consent
before that consent can postdate the withdrawal (see machine.py, `handshake_not_before`).
"""

from __future__ import annotations

from dataclasses import dataclass

from safekit.mirror.states import Intent, NodeStatus, ReplicaRank, Role


@dataclass(frozen=True)
class Eligibility:
    ok: bool
    reason: str


@dataclass(frozen=True)
class Verdict:
    winner: str | None
    reason: str


def replica_eligibility(
    node: str, uptodate: bool, rank: ReplicaRank, top: ReplicaRank, intent: Intent
) -> Eligibility:
    """Whether a node's replica allows it to be primary (rule 1), and why.

    `top` is the newest copy known elsewhere (`ReplicaRank`: the acknowledged writes first, then
    the generation number)."""
    if intent is Intent.PRIMFORCE:
        return Eligibility(True, f"{node}: primforce overrides the replica checks")
    if rank < top:
        return Eligibility(False, f"{node}: replica {_older(rank, top)}")
    if uptodate:
        return Eligibility(True, f"{node}: replica up to date ({rank.describe()})")
    if intent is Intent.PRIM and rank.generation == 0:
        return Eligibility(True, f"{node}: prim on a replica that was never synchronised")
    return Eligibility(False, f"{node}: replica not up to date (rfs.uptodate=false)")


def _older(rank: ReplicaRank, top: ReplicaRank) -> str:
    plain = rank.confirmed == rank.generation and top.confirmed == top.generation
    if rank.confirmed < top.confirmed and not plain:
        return (
            f"{rank.describe()} lacks writes acknowledged at generation {top.confirmed} "
            f"(the newest copy is at {top.describe()})"
        )
    return f"{rank.describe()} is older than {top.describe()}"


def prim_refusal(uptodate: bool, rank: ReplicaRank, peer_seen: ReplicaRank) -> str | None:
    """Why `prim` is refused on this node (SafeKit's prim fails on a stale node), or None."""
    if rank < peer_seen:
        return (
            f"local replica {_older(rank, peer_seen)}, the peer's: "
            "use primforce to accept losing the peer's newer data"
        )
    if not uptodate and rank.generation > 0:
        return (
            "local replica is not up to date (a resynchronisation did not finish): "
            "use primforce to accept losing the data the peer has"
        )
    return None


def consents_to(status: NodeStatus, other: str) -> bool:
    """`status` lets the node `other` start the primary role (if `other` may be primary).

    A primary never consents; a node that does not compete leaves the role to the other one;
    a competing node consents when its election verdict names `other` (handshake).
    """
    if status.role is Role.PRIMARY:
        return False
    return not status.competing or status.verdict == other


def _eligibility(c: NodeStatus, top: ReplicaRank) -> Eligibility:
    if not c.competing:
        why = "asked to be secondary" if c.intent is Intent.SECOND else f"role {c.role}"
        return Eligibility(False, f"{c.node} does not compete ({why})")
    return replica_eligibility(c.node, c.uptodate, c.rank, top, c.intent)


def elect(a: NodeStatus, b: NodeStatus, defaultprim: str) -> Verdict:
    """The node that should be primary among two non-primary nodes, with the rule that decided."""
    first, second = sorted((a, b), key=lambda s: s.node)  # same order on both nodes
    top = max(a.rank, b.rank)
    e1, e2 = _eligibility(first, top), _eligibility(second, top)
    if not e1.ok and not e2.ok:
        return Verdict(None, f"no node may be primary: {e1.reason}; {e2.reason}")
    if not e2.ok:
        return Verdict(first.node, f"{e1.reason}; {e2.reason}")
    if not e1.ok:
        return Verdict(second.node, f"{e2.reason}; {e1.reason}")
    return _tie_break(first, second, defaultprim)


def _tie_break(
    first: NodeStatus, second: NodeStatus, defaultprim: str, both: str = "both eligible"
) -> Verdict:
    """The operator's preference between two nodes; `both` opens the reason (what they share)."""
    forced = [c for c in (first, second) if c.intent in (Intent.PRIM, Intent.PRIMFORCE)]
    if len(forced) == 1:
        chosen = forced[0]
        return Verdict(chosen.node, f"{both}; the operator ran {chosen.intent} on {chosen.node}")
    if defaultprim in (first.node, second.node):
        return Verdict(defaultprim, f"{both}; defaultprim={defaultprim}")
    if first.last_primary == second.last_primary and first.last_primary in (first.node, second.node):
        return Verdict(first.last_primary, f"{both}; {first.last_primary} was the last primary")
    return Verdict(first.node, f"{both}; no defaultprim or agreed last primary: {first.node} sorts first")


def conflict_winner(a: NodeStatus, b: NodeStatus, defaultprim: str) -> Verdict:
    """Both nodes are primary while their heartbeats work (a healed split without witness).

    When exactly one of them acknowledged no write since the copies were last the same, the other
    stays: its copy holds everything acknowledged (ADR 0072). Otherwise both copies may hold
    writes the other lacks, so neither is newer: the generations say only how each side counted
    (a node that took over counts up two, the old primary one: ADR 0034), not which writes
    matter. The operator's preference decides, in `elect`'s order: an operator's prim,
    defaultprim, the agreed last primary, the node name. The loser saves what it wrote since the
    split aside before it resynchronises (rule 4).
    """
    first, second = sorted((a, b), key=lambda s: s.node)
    silent = [x for x, other in ((first, second), (second, first)) if _nothing_since_split(x, other)]
    if len(silent) == 1:
        loser = silent[0]
        winner = second if loser is first else first
        return Verdict(
            winner.node,
            f"both primary; {loser.node} acknowledged no write since the copies were last the same "
            f"(its writes up to generation {loser.rank.confirmed}, {winner.node}'s copy holds every "
            f"write up to generation {winner.shared})",
        )
    return _tie_break(first, second, defaultprim, both="both primary")


def _nothing_since_split(x: NodeStatus, other: NodeStatus) -> bool:
    """`x` acknowledged no write that `other`'s copy lacks (ADR 0072).

    `other.shared` is the newest generation at which the two copies were the same: `other`'s copy
    holds every write acknowledged up to it. Whatever `x` acknowledged after the split is at a
    generation above it (a primary counts up before it acknowledges without its peer; a number
    names one history, ADR 0046): a confirmed generation at or below it says `x` acknowledged
    nothing since."""
    return other.shared is not None and x.rank.confirmed <= other.shared
