"""The data-protection decisions between the replication process and the state machine
(src/safekit/mirror/replica.py): replica freshness on a secondary, the degrade handshake and the
generation bookkeeping on a primary.

The property test drives the real state machine and the replica decisions together, feeding what
replica submits back to the machine as the daemon does: a primary never lets its replication
acknowledge writes alone before its peer reported its copy stale or was lost (and, with a witness,
before the witness rules ruled the peer out).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mirror_driver import Driver, peer_status, prim, second
from mirror_driver import settings as mirror_settings

from safekit.mirror import (
    CheckerAction,
    CheckerVerdict,
    ModuleState,
    ReplicaStatus,
    ReplicationRole,
    WitnessMode,
    WitnessResult,
    replica,
)
from safekit.mirror.replica import Effect, Note, ReplicaBook, SendCommand, ShowResource, Submit
from safekit.rfs import channel

PING = mirror_settings(witness_configured=True)
ARBITRATOR = mirror_settings(witness_configured=True, witness_mode=WitnessMode.ARBITRATOR, lease_duration=3.0)
NO_WITNESS = mirror_settings()


def submitted(effects: list[Effect]) -> list[object]:
    return [e.event for e in effects if isinstance(e, Submit)]


def commands(effects: list[Effect]) -> list[channel.Command]:
    return [e.command for e in effects if isinstance(e, SendCommand)]


class Node:
    """A Driver (the machine) with the replica decisions wired in as the daemon wires them."""

    def __init__(self, d: Driver, role: ReplicationRole, *, with_rfs: bool = True) -> None:
        self.d = d
        self.book = replica.started(ReplicaBook(with_rfs=with_rfs), role, d.state.generation)
        self.sent: list[channel.Command] = []

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Submit):
                self.d.feed(effect.event)
                self.after()
            elif isinstance(effect, SendCommand):
                self.sent.append(effect.command)

    def after(self) -> None:
        self.book, effects = replica.after_step(self.book, self.d.cfg, self.d.state)
        self._apply(effects)

    def event(self, event: channel.Event) -> None:
        self.book, effects = replica.on_event(self.book, event, "n2", self.d.now)
        self._apply(effects)
        self.after()

    def peer(self, **kw: object) -> None:
        status = peer_status(ModuleState.SECOND, **kw)  # type: ignore[arg-type]
        self.d.peer(status)
        self.book, effects = replica.on_peer_status(self.book, status, self.d.state, self.d.now)
        self._apply(effects)
        self.after()

    def degrade_oks(self) -> int:
        return sum(isinstance(c, channel.DegradeOk) for c in self.sent)


# --------------------------------------------------------------------------- secondary
def test_a_secondary_is_up_to_date_at_the_generation_its_process_synced_at() -> None:
    book = replica.started(ReplicaBook(with_rfs=True), ReplicationRole.SECONDARY, 2)
    book, effects = replica.on_event(book, channel.Resyncing("checksum"), "n1", 1.0)
    assert submitted(effects) == [ReplicaStatus(False, 1.0)]
    assert ShowResource("rfs.sync_progress", "0") in effects
    book, effects = replica.on_event(book, channel.InSync(generation=2), "n1", 2.0)
    assert submitted(effects) == [ReplicaStatus(True, 2.0, 2)]
    assert book.synced_generation == 2
    assert ShowResource("rfs.sync_progress", None) in effects


def test_a_primary_at_a_higher_generation_makes_the_synced_copy_stale_once() -> None:
    d = second()
    node = Node(d, ReplicationRole.SECONDARY)
    node.event(channel.InSync(generation=2))
    assert d.state.uptodate
    status = peer_status(ModuleState.ALONE, generation=3)
    node.book, effects = replica.on_peer_status(node.book, status, d.state, d.now)
    assert submitted(effects) == [ReplicaStatus(False, d.now)]
    assert "synced at 2: not up to date" in str(effects)
    node.book, effects = replica.on_peer_status(node.book, status, d.state, d.now)
    assert effects == []  # said once


def test_an_apply_error_makes_the_copy_stale() -> None:
    book = replica.started(ReplicaBook(with_rfs=True), ReplicationRole.SECONDARY, 2)
    book, _ = replica.on_event(book, channel.InSync(generation=2), "n1", 1.0)
    book, effects = replica.on_event(book, channel.ApplyError("No space left on device", 28), "n1", 2.0)
    assert submitted(effects) == [ReplicaStatus(False, 2.0)]
    assert book.synced_generation is None


def test_without_rfs_a_secondary_follows_a_serving_primary_once_per_generation() -> None:
    d = second(synced=False)
    book = replica.started(ReplicaBook(with_rfs=False), ReplicationRole.SECONDARY, 1)
    status = peer_status(ModuleState.ALONE, generation=2)
    book, effects = replica.on_peer_status(book, status, d.state, 5.0)
    assert submitted(effects) == [ReplicaStatus(True, 5.0, 2)]
    book, effects = replica.on_peer_status(book, status, d.state, 6.0)
    assert effects == []
    book, effects = replica.on_peer_status(book, peer_status(ModuleState.STOP, generation=2), d.state, 7.0)
    assert effects == []  # a peer that does not serve feeds nothing


# --------------------------------------------------------------------------- primary
def test_the_primary_tells_its_process_each_new_generation_once() -> None:
    d = prim(PING)
    book = replica.started(ReplicaBook(with_rfs=True), ReplicationRole.PRIMARY, d.state.generation)
    book, effects = replica.after_step(book, d.cfg, d.state)
    assert commands(effects) == []  # the process started with it
    d.later(1.0)
    d.lost()
    d.feed(WitnessResult(True, d.later(0.5), sent_at=d.now - 0.1))
    book, effects = replica.after_step(book, d.cfg, d.state)
    assert channel.SetGeneration(d.state.generation) in commands(effects)
    book, effects = replica.after_step(book, d.cfg, d.state)
    assert commands(effects) == []


def test_held_writes_wait_for_the_peer_to_say_its_copy_is_stale() -> None:
    node = Node(prim(PING), ReplicationRole.PRIMARY)
    node.event(channel.Degraded("sendtimeout: the secondary did not acknowledge"))
    assert node.degrade_oks() == 0
    assert node.book.degrade_pending
    assert "still reports an up-to-date copy" in node.book.degrade_wait_reason
    node.peer(generation=node.d.state.generation, uptodate=False)
    assert node.degrade_oks() == 1
    assert not node.book.degrade_pending
    node.peer(generation=node.d.state.generation, uptodate=False)
    assert node.degrade_oks() == 1  # released once


def test_a_fenced_primary_never_releases_the_held_writes() -> None:
    node = Node(prim(PING), ReplicationRole.PRIMARY)
    node.event(channel.Degraded("the link is down"))
    node.book, effects = replica.fenced(node.book)
    assert commands(effects) == [channel.Fence()]
    node.peer(generation=node.d.state.generation, uptodate=False)
    assert node.degrade_oks() == 0


def test_a_verify_answer_and_an_exit_are_passed_on() -> None:
    book = replica.started(ReplicaBook(with_rfs=True), ReplicationRole.PRIMARY, 1)
    answer = channel.VerifyResult(ok=True, checked=3)
    _, effects = replica.on_event(book, answer, "n2", 1.0)
    assert effects == [replica.AnswerVerify(answer)]
    _, effects = replica.on_event(book, channel.Exited(-9), "n2", 1.0)
    assert replica.ReportExit(ReplicationRole.PRIMARY, -9) in effects


# --------------------------------------------------------------------------- the property
inputs = st.lists(
    st.one_of(
        st.tuples(st.just("degraded"), st.floats(0.0, 1.0)),
        st.tuples(st.just("in_sync"), st.floats(0.0, 1.0)),
        st.tuples(st.just("resyncing"), st.floats(0.0, 1.0)),
        st.tuples(st.just("peer_fresh"), st.floats(0.0, 1.0)),
        st.tuples(st.just("peer_stale"), st.floats(0.0, 1.0)),
        st.tuples(st.just("peer_lost"), st.floats(0.0, 1.0)),
        st.tuples(st.just("witness_yes"), st.floats(0.0, 1.0)),
        st.tuples(st.just("witness_no"), st.floats(0.0, 1.0)),
        st.tuples(st.just("tick"), st.floats(0.0, 5.0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["ping", "arbitrator", "none"]), inputs)
def test_a_primary_never_acknowledges_alone_before_the_peer_is_stale_or_lost(
    witness: str, steps: list[tuple[str, float]]
) -> None:
    cfg = {"ping": PING, "arbitrator": ARBITRATOR, "none": NO_WITNESS}[witness]
    node = Node(prim(cfg), ReplicationRole.PRIMARY)
    d = node.d
    stale_said = lost = False
    for kind, dt in steps:
        d.later(dt)
        before = node.degrade_oks()
        if kind == "degraded":
            node.event(channel.Degraded("held"))
        elif kind == "in_sync":
            node.event(channel.InSync(mode="journal"))
        elif kind == "resyncing":
            node.event(channel.Resyncing("journal"))
        elif kind in ("peer_fresh", "peer_stale"):
            if d.state.peer_absent_since is not None:
                continue  # a lost peer comes back through a resync: not modelled here
            stale = kind == "peer_stale"
            node.peer(generation=d.state.generation, uptodate=not stale)
            stale_said = stale
        elif kind == "peer_lost":
            if d.state.peer is not None:
                d.lost()
                lost = True
                node.after()
        elif kind in ("witness_yes", "witness_no"):
            yes = kind == "witness_yes"
            generation = d.state.generation if yes and witness == "arbitrator" else None
            d.feed(WitnessResult(yes, d.now, sent_at=d.now - 0.01, vip_checked=yes, generation=generation))
            node.after()
        else:
            d.tick()
            node.after()
        if node.degrade_oks() > before:
            assert stale_said or lost, f"acknowledged alone with a fresh peer: {kind} {d.state.reason}"
            if lost and not stale_said and witness != "none":
                # the loss alone is not enough with a witness: its rules must have ruled the peer out
                assert d.state.witness.last_reachable_at is not None


def test_the_replication_lan_down_ends_the_wait_of_a_primary_that_claims_the_role() -> None:
    """ADR 0079: the heartbeats of the LAN that carries the stream are down while another LAN still
    carries them: a serving primary's replication is told at once instead of waiting for
    sendtimeout, and the degrade handshake follows (a new generation makes the peer's copy older);
    a secondary, or a module without <rfs>, has nothing to tell."""
    node = Node(prim(ARBITRATOR), ReplicationRole.PRIMARY)
    generation = node.d.state.generation
    effects = replica.replication_lan_lost(node.book, node.d.state, "default")
    assert commands(effects) == [channel.ReplicationLanLost()]
    [note] = [e for e in effects if isinstance(e, Note)]
    assert "LAN default" in note.text and "instead of after sendtimeout" in note.text
    node.event(channel.Degraded("heartbeats lost on the replication LAN"))
    assert node.d.state.generation > generation  # the handshake began
    assert channel.Fence() not in node.sent
    secondary = Node(second(ARBITRATOR), ReplicationRole.SECONDARY)
    assert replica.replication_lan_lost(secondary.book, secondary.d.state, "default") == []
    no_rfs = Node(prim(ARBITRATOR), ReplicationRole.PRIMARY, with_rfs=False)
    assert replica.replication_lan_lost(no_rfs.book, no_rfs.d.state, "default") == []


def test_a_primary_stopped_by_its_interface_checker_keeps_the_peers_copy_up_to_date() -> None:
    """ADR 0079's chaos rounds (lan_cut of the primary's first LAN, the VIP's and the stream's):
    the interface checker, woken by the carrier loss, stops the primary; its application's
    shutdown writes are held; the LAN's heartbeats go down 1.5 s later. Before: the replication
    held them for sendtimeout, then degraded - a new generation made the secondary's copy stale -
    and nobody could serve until the cable came back (5.2-6.1 s stops, 8.6 s without service).
    Now the held writes fail at once and the generation stays: the secondary, up to date, takes
    over."""
    node = Node(prim(ARBITRATOR), ReplicationRole.PRIMARY)
    d = node.d
    generation = d.state.generation
    d.feed(CheckerVerdict(CheckerAction.WAIT, "intf.eth0", d.now))  # the carrier lost: stop_prim
    node.after()
    assert not d.state.claims_primary
    d.later(1.5)
    effects = replica.replication_lan_lost(node.book, d.state, "default")
    assert commands(effects) == [channel.ReplicationLanLost()]
    [note] = [e for e in effects if isinstance(e, Note)]
    assert "held writes fail" in note.text
    node.event(channel.Degraded("heartbeats lost on the replication LAN"))
    assert channel.Fence() in node.sent
    assert node.degrade_oks() == 0
    assert d.state.generation == generation  # the peer's copy still reads as up to date


def test_a_primary_stopped_by_its_interface_checker_fences_when_the_peer_is_lost() -> None:
    """`make chaos` with ADR 0079's first build (cut_primary: every cable of the primary pulled):
    the interface checker stops the primary at once; the peer is lost on every LAN 1.5 s later and
    the held writes waited for the witness - unreachable, the cables are out - until the cable came
    back and the peer was heard serving: the replication stopped 2.2-4.3 s after the role change
    (bound 5 s). A node that left the role never acknowledges alone: it fences at once."""
    node = Node(prim(ARBITRATOR), ReplicationRole.PRIMARY)
    d = node.d
    d.feed(CheckerVerdict(CheckerAction.WAIT, "intf.eth0", d.now))  # the carrier lost: stop_prim
    node.after()
    d.later(1.5)
    d.lost()
    node.after()
    assert d.state.peer is None and not d.state.claims_primary
    node.event(channel.Degraded("the peer is lost (all heartbeats)"))
    assert channel.Fence() in node.sent
    assert node.degrade_oks() == 0
    assert not node.book.degrade_pending


def test_held_writes_fail_once_the_peer_serves_and_this_node_has_left_the_primary_role() -> None:
    """Chaos round (cut_primary, 100-round run of ADR 0076): the VIP's interface checker made the
    primary stop (to WAIT) 60 ms before its heartbeats were lost, so the witness rule, which fences
    a node that claims the primary role, never applied. Its replication held the writes of the
    stopping application (PostgreSQL's shutdown checkpoint) for the degrade handshake. The peer came
    back ALONE at a newer generation, saying its own copy is up to date: the handshake waited for
    a "stale" that a primary never says, and the stop took 10.1 s. Writes held by a node that no
    longer claims the role, while its peer serves, can never be acknowledged: they fail at once."""
    node = Node(prim(ARBITRATOR), ReplicationRole.PRIMARY)
    d = node.d
    d.feed(CheckerVerdict(CheckerAction.WAIT, "intf.vip", d.now))  # stop_prim runs
    node.after()
    d.later(0.06)
    d.lost()
    node.after()
    node.event(channel.Degraded("the peer is lost (all heartbeats)"))
    assert not d.state.claims_primary
    # since ADR 0079 the fence comes here already: a node that left the role never acknowledges
    # alone, whether its peer is lost or serves
    assert channel.Fence() in node.sent and not node.book.degrade_pending
    alone = peer_status(ModuleState.ALONE, generation=d.state.generation + 1, uptodate=True)
    d.later(3.0)
    d.peer(alone)
    node.book, effects = replica.on_peer_status(node.book, alone, d.state, d.now)
    node._apply(effects)
    node.after()
    assert channel.Fence() in node.sent, node.sent
    assert node.degrade_oks() == 0
    assert not node.book.degrade_pending


def test_a_primary_that_still_claims_the_role_keeps_its_held_writes_beside_a_serving_peer() -> None:
    """Two primaries after a split (ADR 0072 decides which steps down): the one that still claims
    the role is not fenced by the peer's status alone."""
    node = Node(prim(ARBITRATOR), ReplicationRole.PRIMARY)
    node.event(channel.Degraded("sendtimeout: the secondary did not acknowledge"))
    assert node.d.state.claims_primary
    alone = peer_status(ModuleState.ALONE, generation=node.d.state.generation, uptodate=True)
    node.book, effects = replica.on_peer_status(node.book, alone, node.d.state, node.d.now)
    node._apply(effects)
    node.after()
    assert channel.Fence() not in node.sent
