"""A two-node world for the mirror state machine: network, witness, scripts, VIP, replication.

Discrete-event simulation with one global clock. It plays the daemon on both nodes: it feeds
events to `step`, executes the actions (VIP, replication, scripts that end later with an
outcome drawn from a seeded random generator) and checks the safety invariants after every
action, recording violations instead of raising so a property test can show them all.

Model (the assumptions the safety rules rely on, see docs/mirror-state-machine.md):
- links are symmetric; heartbeats every PULSE while the link is up, each arriving up to
  LATENCY later with the sender's status at sending time (so a node may act on a stale view);
  membership declares the peer lost HB_TIMEOUT + a per-node jitter after the last heartbeat
  (the difference between the nodes stays below detection_skew);
- the witness answers a subset of the nodes; during a split it answers at most one of them
  (the test's choice), and its answer for the nodes changes at most once per takeover guard;
- each node polls the witness every POLL seconds (< split_brain_bound), out of phase with the
  other node, and on QueryWitness (answered up to 0.5 s later);
- a secondary connected to a primary is resynchronised RESYNC seconds after it connected.

Witness kinds (`Cluster(witness_kind=...)`):
- "ping": the assumptions above (during a split the witness answers at most one side);
- "ping_vip": during a split the ping witness may answer BOTH sides, but the nodes still share
  the VIP's LAN: a node that does not serve sees the other's VIP in each answer (ARP probe);
- "arbitrator": an arbitrating witness with a lease table (ARB_LEASE, granted to one node at a
  time); any subset of the nodes reaches it, during a split too, changing at any moment; a
  request is answered up to ARB_RTT later, or times out after ARB_RTT when it cannot reach it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from safekit.arbiter.leases import LeaseTable, Reason
from safekit.mirror import (
    AcquireVip,
    Action,
    Announce,
    CheckerAction,
    CheckerVerdict,
    Command,
    CommandKind,
    CommandReply,
    Event,
    MirrorSettings,
    MirrorState,
    ModuleState,
    NodeStatus,
    PeerHeartbeat,
    PeerLost,
    PersistedRecord,
    QueryWitness,
    ReleaseVip,
    ReplicaStatus,
    ReplicationRole,
    ResourceUp,
    RunScript,
    ScriptDone,
    ScriptOutcome,
    StartReplication,
    StopReplication,
    Tick,
    WitnessResult,
    announced_status,
    initial_state,
    next_deadline,
    step,
)
from safekit.mirror.actions import KillScript
from safekit.mirror.machine import may_acknowledge_alone, witness_wanted
from safekit.mirror.states import ReplicaRank
from safekit.mirror.witness import WitnessMode

NODES = ("n1", "n2")
NO_RANK = ReplicaRank(0, 0)
PULSE = 1.0
HB_TIMEOUT = 3.0
JITTER = 1.5  # per-node extra detection delay: the skew between the nodes stays < SKEW
LATENCY = 0.3  # heartbeat transit time, up to
POLL = 1.0
RESYNC = 4.0
BOUND = 4.0
SKEW = 2.0
SERVING = (ModuleState.ALONE, ModuleState.PRIM)
ARB_LEASE = 2.0  # < HB_TIMEOUT - SKEW: a dead primary's lease has run out when its peer notices
ARB_POLL = 0.5
ARB_RTT = 0.3
ARB_CLUSTER = b"\x5a" * 8
ARB_MODULE = "mirror"


def other(node: str) -> str:
    return NODES[1] if node == NODES[0] else NODES[0]


def settings_for(
    node: str,
    *,
    witness: bool,
    defaultprim: str = "alone",
    failover: bool = True,
    mode: WitnessMode = WitnessMode.PING,
) -> MirrorSettings:
    return MirrorSettings(
        witness_mode=mode,
        lease_duration=ARB_LEASE,
        local_node=node,
        peer_node=other(node),
        defaultprim=defaultprim,
        failover=failover,
        maxloop=3,
        loop_interval=60.0,
        witness_configured=witness,
        split_brain_bound=BOUND,
        detection_skew=SKEW,
        peer_timeout=5.0,
    )


@dataclass
class SimNode:
    name: str
    cfg: MirrorSettings
    state: MirrorState
    status: NodeStatus
    jitter: float
    vip: bool = False
    repl: ReplicationRole = ReplicationRole.NONE
    sync_since: float | None = None
    last_hb: float | None = None  # membership: last heartbeat received
    lost_at: float | None = None  # when PeerLost was delivered (None while heartbeats flow)
    max_peer_rank: ReplicaRank = NO_RANK
    # whether this node's copy holds the writes of `Cluster.acked_alone` (its own, or resynced
    # from the node that acknowledged them): a generation number alone cannot tell two histories
    # apart when both sides of a split counted up to the same number
    holds_acked: bool = True
    override: bool = False  # an accepted prim/primforce not yet consumed
    killed: set[int] = field(default_factory=set)
    log: list[str] = field(default_factory=list)


class Cluster:
    def __init__(
        self,
        *,
        witness: bool,
        seed: int,
        defaultprim: str = "alone",
        failover: bool = True,
        fail_rate: float = 0.1,
        persisted: dict[str, PersistedRecord] | None = None,
        witness_kind: str = "ping",
    ) -> None:
        self.rng = random.Random(seed)
        self.witness = witness
        self.kind = witness_kind
        self.vip_visible = True  # ping_vip: the nodes still share the VIP's LAN during a split
        # the arbitrator: the product's own lease table (its rules, not a copy of them)
        self.arbiter = LeaseTable(started_at=0.0, max_lease=ARB_LEASE, grace=0.0)
        # (d) the highest generation whose writes a node acknowledged without its peer, and who
        self.acked_alone: tuple[int, str] | None = None
        # An operator's prim/primforce promoted a copy on what this node knew: the other node may
        # hold writes it acknowledged that this copy lacks (even while this node was present but
        # stale), and from then on this copy's writes are acknowledged too. Two histories exist
        # until one node resynchronises from the other (an operator-made split brain; whichever
        # copy serves later, one history is lost: docs/mirror.md, primforce).
        self.operator_split = False
        self.witness_sides: set[str] = set()
        self.fail_rate = fail_rate
        self.now = 0.0
        self.link_up = True
        self.ever_cut = False
        self.witness_set: frozenset[str] = frozenset(NODES)
        self.witness_changed_at = -math.inf
        self.witness_lost_at: dict[str, float] = {n: -math.inf for n in NODES}
        self.violations: list[str] = []
        self.trace: list[str] = []
        self._queue: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self.nodes: dict[str, SimNode] = {}
        for n in NODES:
            mode = WitnessMode.ARBITRATOR if witness_kind == "arbitrator" else WitnessMode.PING
            cfg = settings_for(n, witness=witness, defaultprim=defaultprim, failover=failover, mode=mode)
            st = initial_state(cfg, (persisted or {}).get(n))
            self.nodes[n] = SimNode(n, cfg, st, announced_status(cfg, st), self.rng.uniform(0, JITTER))
        self._at(PULSE, "pulse", None)
        if witness:
            for n in NODES:
                self._at(self.rng.uniform(0, POLL), "poll", n)

    # --- scheduling ----------------------------------------------------------------------------

    def _at(self, when: float, kind: str, payload: Any) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), kind, payload))

    def run_until(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, kind, payload = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            self._check_fence_bound()
            self._dispatch(kind, payload)
        self.now = max(self.now, until)
        self._check_fence_bound()

    def advance(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def _dispatch(self, kind: str, payload: Any) -> None:
        if kind == "pulse":
            self._pulse()
        elif kind == "event":
            node, event = payload
            self.feed(node, event)
        elif kind == "tick":
            node, due = payload
            if next_deadline(self.nodes[node].cfg, self.nodes[node].state) == due:
                self.feed(node, Tick(self.now))
        elif kind == "script":
            node, run = payload
            self._script_ends(node, run)
        elif kind == "heartbeat":
            self._heartbeat_arrives(*payload)
        elif kind == "lostcheck":
            self._lost_check(*payload)
        elif kind == "poll":
            node = self.nodes[payload]
            if witness_wanted(node.cfg, node.state):
                self._ask_witness(payload)
            self._at(self.now + (ARB_POLL if self.kind == "arbitrator" else POLL), "poll", payload)
        elif kind == "arbiter":
            self._arbiter_decides(*payload)

    # --- the witness ---------------------------------------------------------------------------

    def _ask_witness(self, name: str) -> None:
        if self.kind == "arbitrator":
            rtt = self.rng.uniform(0, ARB_RTT)
            if name in self.witness_set:
                rank = self.nodes[name].state.rank
                self._at(self.now + rtt / 2, "arbiter", (name, self.now, rank))
            else:
                timeout = WitnessResult(False, self.now + ARB_RTT, sent_at=self.now)
                self._at(self.now + ARB_RTT, "event", (name, timeout))
            return
        other_vip: str | None = None
        peer = self.nodes[other(name)]
        if (
            self.kind == "ping_vip"
            and self.vip_visible
            and peer.vip
            and not self.nodes[name].state.claims_primary
        ):
            other_vip = f"mac-of-{peer.name}"
        self._at(
            self.now, "event", (name, WitnessResult(name in self.witness_set, self.now, other=other_vip))
        )

    def _arbiter_decides(self, name: str, sent_at: float, rank: ReplicaRank) -> None:
        before = self.arbiter.holder_session(ARB_CLUSTER, ARB_MODULE, self.now)
        decision = self.arbiter.request(
            ARB_CLUSTER, ARB_MODULE, name, ARB_LEASE, rank.generation, self.now, confirmed=rank.confirmed
        )
        answer = WitnessResult(
            False,
            self.now,
            sent_at=sent_at,
            known_generation=decision.generation,
            known_confirmed=decision.confirmed,
        )
        if decision.reason is Reason.OUTDATED:  # an older copy than one it granted
            answer = replace(answer, other="a newer copy")
        elif decision.granted:
            if before is None or before[0] != name:
                self.trace.append(f"{self.now:8.2f} arbiter: lease to {name} at {rank}")
            answer = replace(answer, reachable=True, generation=rank.generation, confirmed=rank.confirmed)
            node, peer = self.nodes[name], self.nodes[other(name)]
            if node.state.peer is None and not node.state.claims_primary:
                # the daemon's VIP owner probe comes with the answer (what the clients' LAN shows)
                owner = f"mac-of-{peer.name}" if peer.vip and self.vip_visible else None
                answer = replace(answer, vip_checked=True, vip_owner=owner)
        else:
            answer = replace(answer, other=decision.holder)
        back = self.now + self.rng.uniform(0, ARB_RTT / 2)
        self._at(back, "event", (name, replace(answer, now=back)))

    # --- the world ---------------------------------------------------------------------------

    def _pulse(self) -> None:
        if self.link_up:
            for n in NODES:
                status = self.nodes[other(n)].status  # as sent now, received a little later
                self._at(self.now + self.rng.uniform(0, LATENCY), "heartbeat", (n, status))
        self._replicate()
        self._at(self.now + PULSE, "pulse", None)

    def _heartbeat_arrives(self, name: str, status: NodeStatus) -> None:
        node = self.nodes[name]
        node.last_hb = self.now
        node.lost_at = None
        node.max_peer_rank = max(node.max_peer_rank, status.rank)
        self.feed(name, PeerHeartbeat(status, self.now))
        self._at(self.now + HB_TIMEOUT + node.jitter, "lostcheck", (name, self.now))

    def _lost_check(self, name: str, heard_at: float) -> None:
        node = self.nodes[name]
        if node.last_hb == heard_at and node.lost_at is None:
            node.lost_at = self.now
            self.feed(name, PeerLost(self.now))

    def _replicate(self) -> None:
        for n in NODES:
            node, peer = self.nodes[n], self.nodes[other(n)]
            connected = (
                self.link_up
                and node.repl is ReplicationRole.SECONDARY
                and peer.repl is ReplicationRole.PRIMARY
            )
            if not connected:
                node.sync_since = None
                continue
            if node.sync_since is None:
                node.sync_since = self.now
            in_sync = node.state.uptodate and node.state.generation == peer.state.generation
            if not in_sync and self.now - node.sync_since >= RESYNC:
                node.holds_acked = peer.holds_acked  # resynchronised from the primary's copy
                self.operator_split = False  # one history again
                self.feed(n, ReplicaStatus(True, self.now, peer.state.generation))

    def cut(self, witness_side: str | None = None) -> None:
        """Cut every LAN; with a witness, it then answers at most `witness_side` (if it did)."""
        if self.link_up:  # a new split (a cut while cut goes on with the same one)
            self.witness_sides = set()
        self.link_up = False
        self.ever_cut = True
        if self.witness and self.kind == "ping":
            keep = self.witness_set & frozenset({witness_side} if witness_side else ())
            self._change_witness(keep)
        elif self.witness and witness_side in NODES:
            self._change_witness(frozenset({witness_side}))
        self.witness_sides |= self.witness_set  # who reached the witness during this split
        self.trace.append(f"{self.now:8.2f} world: link cut, witness answers {sorted(self.witness_set)}")

    def heal(self) -> None:
        self.link_up = True
        self.trace.append(f"{self.now:8.2f} world: link healed")

    def set_witness(self, reachable_from: frozenset[str]) -> bool:
        """Change who reaches the witness, within the model's assumptions (else False).

        During a split the witness answers at most one node, and a node only gains the witness
        once the previous change is older than the takeover guard (no faster flapping).
        """
        if not self.witness:
            return False
        if self.kind == "ping" and not self.link_up and len(reachable_from) > 1:
            return False
        gains = reachable_from - self.witness_set
        if self.kind != "arbitrator" and gains and self.now - self.witness_changed_at < BOUND + SKEW:
            return False
        self._change_witness(reachable_from)
        self.trace.append(f"{self.now:8.2f} world: witness answers {sorted(reachable_from)}")
        return True

    def _change_witness(self, reachable_from: frozenset[str]) -> None:
        if reachable_from == self.witness_set:
            return
        for n in NODES:
            if n in self.witness_set and n not in reachable_from:
                self.witness_lost_at[n] = self.now
        self.witness_set = reachable_from
        self.witness_changed_at = self.now
        if not self.link_up:
            self.witness_sides |= reachable_from

    def command(self, node: str, kind: CommandKind) -> None:
        self.feed(node, Command(kind, self.now))

    def checker(self, node: str, action: CheckerAction) -> None:
        self.feed(node, CheckerVerdict(action, "custom.app", self.now))

    def resource_up(self, node: str) -> None:
        self.feed(node, ResourceUp("custom.app", self.now))

    def replica_fault(self, node: str) -> None:
        self.feed(node, ReplicaStatus(False, self.now))

    # --- one node's daemon ---------------------------------------------------------------------

    def feed(self, name: str, event: Event) -> None:
        node = self.nodes[name]
        before = node.state
        tr = step(node.cfg, before, event)
        node.state = tr.state
        if not isinstance(event, PeerHeartbeat | WitnessResult | Tick) or tr.actions:
            self.trace.append(f"{self.now:8.2f} {name} <- {type(event).__name__}: {_short(event)}")
        for action in tr.actions:
            self._execute(node, before, action)
        st = node.state
        alone = node.vip and st.peer is None and may_acknowledge_alone(node.cfg, st)[0]
        newest = self.acked_alone is None or st.generation >= self.acked_alone[0]
        if alone and newest and self.acked_alone != (st.generation, name):
            self.acked_alone = (st.generation, name)
            for n in NODES:
                self.nodes[n].holds_acked = n == name
        due = next_deadline(node.cfg, node.state)
        if due is not None:
            self._at(due, "tick", (name, due))

    def _execute(self, node: SimNode, before: MirrorState, action: Action) -> None:
        if not isinstance(action, Announce):
            self.trace.append(f"{self.now:8.2f} {node.name} -> {_short(action)}")
        match action:
            case Announce():
                node.status = action.status
            case CommandReply():
                if action.accepted and action.command in ("prim", "primforce"):
                    node.override = True
            case RunScript():
                self._at(self.now + self.rng.uniform(0.05, 2.0), "script", (node.name, action))
            case KillScript():
                node.killed.add(action.run_id)
            case AcquireVip():
                self._check_stale_promotion(node, before)
                if node.override:
                    # prim/primforce: the operator made this copy the reference, accepting the
                    # loss of what the other node acknowledged alone (the machine logs it); later
                    # epochs of this node start from it
                    self.operator_split = True
                    node.holds_acked = True
                node.override = False
                node.vip = True
            case ReleaseVip():
                node.vip = False
            case StartReplication():
                node.repl = action.role
            case StopReplication():
                node.repl = ReplicationRole.NONE
            case QueryWitness():
                self._ask_witness(node.name)
            case _:
                pass
        self._check_exclusive()

    def _script_ends(self, name: str, run: RunScript) -> None:
        node = self.nodes[name]
        if run.run_id in node.killed:
            return
        draw = self.rng.random()
        if draw < self.fail_rate / 2:
            outcome = ScriptOutcome.FAILED
        elif draw < self.fail_rate:
            outcome = ScriptOutcome.TIMED_OUT
        else:
            outcome = ScriptOutcome.OK
        self.feed(name, ScriptDone(run.run_id, run.script, outcome, self.now))

    # --- invariants ----------------------------------------------------------------------------

    def _check_exclusive(self) -> None:
        if not self.witness and self.ever_cut:
            return  # without a witness a split may give two primaries (documented limit)
        a, b = (self.nodes[n] for n in NODES)
        if a.vip and b.vip:
            self._violation("both nodes hold the VIP")
        if a.state.module_state in SERVING and b.state.module_state in SERVING:
            self._violation(f"both nodes show {a.state.module_state}/{b.state.module_state}")

    def _check_stale_promotion(self, node: SimNode, before: MirrorState) -> None:
        if node.override:
            return
        acked = self.acked_alone
        # A ping witness that answers one side of a split, then the other, cannot protect what the
        # first acknowledged alone: the second cannot know of it (documented limit of the ping
        # witness, docs/mirror.md). The arbitrator can: it refuses the older copy.
        ping_turned = self.kind != "arbitrator" and len(self.witness_sides) > 1
        # Which copy holds the writes acknowledged alone is tracked (`holds_acked`), whatever the
        # generation numbers say: a copy can reach a higher number without them (an epoch started
        # on a stale view just as the link was cut, then claimed one up at the loss; ADR 0045).
        if (
            self.witness
            and acked is not None
            and not node.holds_acked
            and not ping_turned
            and not self.operator_split
        ):
            self._violation(
                f"{node.name} became primary with generation {before.generation}: {acked[1]} acknowledged "
                f"writes alone at generation {acked[0]} (lost)"
            )
        if not before.uptodate:
            self._violation(f"{node.name} became primary with rfs.uptodate=false")
        if before.rank < node.max_peer_rank:
            self._violation(
                f"{node.name} became primary at {before.rank} after seeing the peer at {node.max_peer_rank}"
            )

    def _check_fence_bound(self) -> None:
        if not self.witness or self.kind != "ping":
            return
        for n in NODES:
            node = self.nodes[n]
            if not node.vip or self.link_up or n in self.witness_set:
                continue
            if node.last_hb is None:
                lost = -math.inf  # never heard the peer: only the witness loss counts
            elif node.lost_at is None:
                continue  # heartbeats not yet declared lost: the bound has not started
            else:
                lost = node.lost_at
            deadline = max(lost, self.witness_lost_at[n]) + BOUND
            if self.now > deadline + 1e-9:
                self._violation(f"{n} still holds the VIP {self.now - deadline:.2f}s after the bound")

    def _violation(self, what: str) -> None:
        self.violations.append(f"t={self.now:.2f}: {what}")

    def dump(self, last: int = 80) -> str:
        return "\n".join(self.trace[-last:])

    def serving(self) -> list[str]:
        return [n for n in NODES if self.nodes[n].state.module_state in SERVING]


# --- replaying a sequence of operations (property tests and their regressions) ------------------


@dataclass(frozen=True)
class Op:
    """One step of a scenario: wait `delay` seconds, then do `kind` (on `node`, with `arg`)."""

    delay: float
    kind: str  # cmd, start, cut, heal, witness, checker, resource_up, replica_fault
    node: str = "n1"
    arg: object = None


def persisted_for(history: str) -> dict[str, PersistedRecord] | None:
    """What both nodes load: fresh, synced, or one node a replica generation ahead."""
    if history == "fresh":
        return None
    synced = PersistedRecord(ModuleState.STOP, "n1", 3, True, 3)
    if history == "synced":
        return {"n1": synced, "n2": synced}
    behind = PersistedRecord(ModuleState.STOP, "n1", 2, True, 2)
    ahead, late = ("n1", "n2") if history == "n1_ahead" else ("n2", "n1")
    return {ahead: synced, late: behind}


def play(cluster: Cluster, sequence: list[Op]) -> None:
    """Start both nodes, apply `sequence` (stop at the first violation), then run 40 s more."""
    for n in NODES:
        cluster.command(n, CommandKind.START)
    for op in sequence:
        cluster.advance(op.delay)
        if op.kind == "cmd":
            assert isinstance(op.arg, CommandKind)
            cluster.command(op.node, op.arg)
        elif op.kind == "start":
            cluster.command(op.node, CommandKind.START)
        elif op.kind == "cut":
            cluster.cut(op.node or None)
        elif op.kind == "heal":
            cluster.heal()
        elif op.kind == "witness":
            side = frozenset(NODES) if op.node == "both" else frozenset({op.node} & set(NODES))
            cluster.set_witness(side)
        elif op.kind == "checker":
            assert isinstance(op.arg, CheckerAction)
            cluster.checker(op.node, op.arg)
        elif op.kind == "resource_up":
            cluster.resource_up(op.node)
        else:
            cluster.replica_fault(op.node)
        if cluster.violations:
            break
    cluster.advance(40.0)


def _short(obj: object) -> str:
    text = repr(obj)
    return text if len(text) < 220 else text[:217] + "..."
