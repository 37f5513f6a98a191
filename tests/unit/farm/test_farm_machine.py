"""The farm state machine: life cycle, checkers, and the buckets it programs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from safekit import farm as fm
from safekit.farm.buckets import BUCKETS, compute_map

POWERS = {"node1": 1, "node2": 1, "node3": 1}
JOIN = 0.4
HANDOVER = 0.3


def _settings(node: str = "node1") -> fm.FarmSettings:
    return fm.settings_for(
        node, POWERS, join_after=JOIN, handover_delay=HANDOVER, maxloop=2, loop_interval=100
    )


class Node:
    """One node's machine, with the scripts answered at once and the kernel state tracked."""

    def __init__(self, name: str = "node1", now: float = 0.0) -> None:
        self.settings = _settings(name)
        self.state = fm.initial_state(now)
        self.owned: frozenset[int] | None = None  # the buckets of the one group
        self.slots: frozenset[fm.Slot] | None = None
        self.vip = False
        self.announced: tuple[fm.FarmState, fm.Readiness] | None = None
        self.replies: list[fm.CommandReply] = []
        self.scripts: list[str] = []

    def feed(self, event: fm.Event, *, run_scripts: bool = True) -> None:
        pending: list[fm.Event] = [event]
        while pending:
            t = fm.step(self.settings, self.state, pending.pop(0))
            self.state = t.state
            for action in t.actions:
                match action:
                    case fm.Program(owned=owned):
                        self.slots = owned
                        self.owned = None if owned is None else frozenset(b for _, b in owned)
                    case fm.HoldVip(held=held):
                        self.vip = held
                    case fm.Announce(state=s, readiness=r):
                        self.announced = (s, r)
                    case fm.CommandReply():
                        self.replies.append(action)
                    case fm.RunScript(run_id=run_id, script=script):
                        self.scripts.append(str(script))
                        if run_scripts:
                            pending.append(fm.ScriptDone(run_id, script, fm.ScriptOutcome.OK, event.now))

    def tick(self, now: float) -> None:
        self.feed(fm.Tick(now))

    def start(self, now: float) -> None:
        self.feed(fm.Command(fm.CommandKind.START, now))
        self.tick(now + JOIN)


def _peer_up(node: str, now: float) -> fm.PeerStatus:
    return fm.PeerStatus(node, fm.FarmState.UP, fm.Readiness.READY, now)


def test_start_runs_prestart_and_start_both_then_joins_after_listening() -> None:
    n = Node()
    n.feed(fm.Command(fm.CommandKind.START, 0.0))
    assert n.scripts == ["prestart", "start_both"]
    assert (n.state.state, n.state.readiness) == (fm.FarmState.UP, fm.Readiness.TRANSIENT)
    assert n.owned is None and not n.vip, "no bucket before the farm has been heard"
    assert fm.next_deadline(n.settings, n.state) == JOIN
    n.tick(JOIN)
    assert (n.state.state, n.state.readiness) == (fm.FarmState.UP, fm.Readiness.READY)
    assert n.owned == frozenset(range(BUCKETS)) and n.vip
    assert n.announced == (fm.FarmState.UP, fm.Readiness.READY)


def test_a_lost_peers_buckets_are_taken_at_once() -> None:
    n = Node()
    n.feed(_peer_up("node2", 0.0))
    n.start(0.0)
    n.tick(JOIN + HANDOVER)
    assert n.owned == compute_map(POWERS, {"node1", "node2"}).buckets_of("node1")
    n.feed(fm.PeerLost("node2", 5.0))
    assert n.owned == frozenset(range(BUCKETS))
    assert n.state.pending == frozenset()


def test_buckets_go_to_a_joining_peer_at_once_but_are_taken_back_only_after_the_handover() -> None:
    n = Node()
    n.start(0.0)
    n.feed(_peer_up("node2", 1.0))
    mine = compute_map(POWERS, {"node1", "node2"}).buckets_of("node1")
    assert n.owned == mine, "released at once"
    n.feed(fm.PeerLost("node2", 2.0))
    assert n.owned == frozenset(range(BUCKETS)), "node2 is gone: nothing to wait for"
    # node2 comes back while node3 is a member: buckets moving from node3 to node1 wait.
    n.feed(_peer_up("node3", 3.0))
    n.feed(_peer_up("node2", 3.0))
    full = compute_map(POWERS, POWERS).buckets_of("node1")
    assert n.owned == full
    n.feed(fm.PeerLost("node2", 4.0))
    gained = compute_map(POWERS, {"node1", "node3"}).buckets_of("node1") - full
    assert n.owned == full | gained, "node2 is lost: its buckets come at once"


def test_joining_node_waits_for_the_handover_before_taking_live_members_buckets() -> None:
    n = Node("node3")
    n.feed(_peer_up("node1", 0.0))
    n.feed(_peer_up("node2", 0.0))
    n.start(0.0)
    assert n.owned == frozenset(), "every bucket belongs to a live member: wait"
    deadline = fm.next_deadline(n.settings, n.state)
    assert deadline is not None and abs(deadline - (JOIN + HANDOVER)) < 1e-9
    n.tick(JOIN + HANDOVER)
    assert n.owned == compute_map(POWERS, POWERS).buckets_of("node3")


def test_a_failing_checker_with_wait_takes_this_node_out_and_back() -> None:
    n = Node()
    n.start(0.0)
    n.feed(fm.CheckerVerdict(fm.CheckerAction.WAIT, "custom.app", 1.0))
    assert (n.state.state, n.state.readiness) == (fm.FarmState.WAIT, fm.Readiness.NOT_READY)
    assert n.owned is None and not n.vip
    assert n.scripts[-1] == "stop_both"
    n.feed(fm.ResourceUp("custom.app", 2.0))
    assert n.scripts[-1] == "start_both"
    n.tick(2.0 + JOIN)
    assert n.state.member and n.owned == frozenset(range(BUCKETS))


def test_restarts_beyond_maxloop_stop_the_module() -> None:
    n = Node()
    n.start(0.0)
    for t in (1.0, 2.0):
        n.feed(fm.CheckerVerdict(fm.CheckerAction.RESTART, "tcp.web", t))
        n.tick(t + JOIN)
        assert n.state.member
    n.feed(fm.CheckerVerdict(fm.CheckerAction.RESTART, "tcp.web", 3.0))
    assert n.state.state is fm.FarmState.STOP
    assert n.scripts[-2:] == ["stop_both", "poststop"]


def test_stop_releases_everything_and_refuses_twice() -> None:
    n = Node()
    n.start(0.0)
    n.feed(fm.Command(fm.CommandKind.STOP, 1.0))
    assert n.state.phase is fm.Phase.STOPPED and n.owned is None and not n.vip
    n.feed(fm.Command(fm.CommandKind.STOP, 2.0))
    assert not n.replies[-1].accepted


def test_failed_start_both_stops() -> None:
    n = Node()
    n.feed(fm.Command(fm.CommandKind.START, 0.0), run_scripts=False)
    run_id, script = n.state.running or (0, fm.Script.PRESTART)
    n.feed(fm.ScriptDone(run_id, script, fm.ScriptOutcome.OK, 0.1), run_scripts=False)
    run_id, script = n.state.running or (0, fm.Script.START_BOTH)
    assert script is fm.Script.START_BOTH
    n.feed(fm.ScriptDone(run_id, script, fm.ScriptOutcome.FAILED, 0.2))
    assert n.state.state is fm.FarmState.STOP
    assert not n.vip


def test_rules_failing_to_load_make_the_node_wait() -> None:
    n = Node()
    n.start(0.0)
    n.feed(fm.ServingFailed("nft refused", 1.0))
    assert n.state.state is fm.FarmState.WAIT and n.owned is None


@given(
    st.lists(
        st.tuples(st.sampled_from(["up", "lost"]), st.sampled_from(["node1", "node2", "node3"])),
        max_size=25,
    )
)
@settings(max_examples=200, deadline=None)  # a property, not a speed (loaded machines)
def test_no_bucket_is_ever_served_by_two_nodes(changes: list[tuple[str, str]]) -> None:
    """Three machines, membership news delivered to all at once; ticks between changes."""
    nodes = {name: Node(name) for name in POWERS}
    now = 0.0
    alive = set(POWERS)
    for node in nodes.values():
        node.feed(fm.Command(fm.CommandKind.START, now))

    def exchange() -> None:
        for name, node in nodes.items():
            for other, peer in nodes.items():
                if other == name:
                    continue
                if other in alive and peer.state.member:
                    node.feed(_peer_up(other, now))
                elif other in alive:
                    node.feed(fm.PeerStatus(other, peer.state.state, peer.state.readiness, now))
                else:
                    node.feed(fm.PeerLost(other, now))

    def check() -> None:
        seen: dict[int, str] = {}
        for name, node in nodes.items():
            if name not in alive:
                continue
            for bucket in node.owned or ():
                assert bucket not in seen, f"bucket {bucket} served by {seen[bucket]} and {name}"
                seen[bucket] = name

    for kind, target in [("tick", ""), *changes, ("tick", "")]:
        now += 0.1
        if kind == "lost" and target in alive and len(alive) > 1:
            alive.discard(target)
        elif kind == "up" and target not in alive:
            alive.add(target)
            nodes[target] = Node(target, now)
            nodes[target].feed(fm.Command(fm.CommandKind.START, now))
        exchange()
        for node in nodes.values():
            node.tick(now)
        check()
        now += 1.0
        for node in nodes.values():
            node.tick(now)
        check()  # nodes that joined in the same instant have not heard each other yet
        exchange()
        check()
    # Settled: every bucket served by exactly one live node.
    owned = [b for n in alive for b in nodes[n].owned or ()]
    assert sorted(owned) == list(range(BUCKETS))


def test_nodes_joining_in_the_same_instant_take_only_their_own_share_first() -> None:
    nodes = {name: Node(name) for name in POWERS}
    for node in nodes.values():
        node.feed(fm.Command(fm.CommandKind.START, 0.0))
    for name, node in nodes.items():  # each hears the others starting (UP Transient)
        for other, peer in nodes.items():
            if other != name:
                node.feed(fm.PeerStatus(other, peer.state.state, peer.state.readiness, 0.1))
    for node in nodes.values():
        node.tick(JOIN)  # all end their listening together, before hearing each other Ready
    full = compute_map(POWERS, POWERS)
    for name, node in nodes.items():
        assert node.owned == full.buckets_of(name), "a joining peer's share must wait for the handover"
    # A peer that stays Transient (its start_both is slow) gets its share taken after the delay.
    alone = Node("node1")
    alone.feed(fm.Command(fm.CommandKind.START, 0.0))
    alone.feed(fm.PeerStatus("node2", fm.FarmState.UP, fm.Readiness.TRANSIENT, 0.1))
    alone.tick(JOIN)
    assert alone.owned == compute_map(POWERS, {"node1", "node2"}).buckets_of("node1")
    alone.tick(JOIN + HANDOVER)
    assert alone.owned == frozenset(range(BUCKETS))
