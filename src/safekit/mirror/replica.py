"""What the local copy's replication means for the module: the data-protection decisions that sit
between the replication process and the state machine (ADR 0002, "Where the line is drawn").

Pure: time is passed in; the daemon feeds in the replication process's events (typed by
`safekit.rfs.channel`), the peer's heartbeat statuses and the machine's state after each step, and
executes what comes out: machine events to submit, commands for the replication process, log
lines, resources to show. The decisions:

- **Replica freshness (secondary).** The copy is up to date at the generation its process reports
  `in_sync` at; a resynchronisation or an apply error makes it stale; so does a primary announcing
  a higher generation than the one the copy was synced at (the primary lost its link to us and went
  on without us). Without `<rfs>` there is no data: a secondary is up to date as soon as it follows
  a serving primary.
- **The degrade handshake (primary).** When the replication process holds writes because the
  secondary does not follow (`Degraded`), it may acknowledge them alone only once
  `machine.may_acknowledge_alone` says the secondary can no longer take over with its stale copy;
  re-checked after every machine step and every peer status, released once (`DegradeOk`). A node
  that no longer claims the primary role never acknowledges alone: its held writes fail (`Fence`,
  ADR 0078, ADR 0079).
- **Generation bookkeeping (primary).** The module's replica generation goes to the replication
  process whenever it changes (`SetGeneration`), once per value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from safekit.lifecycle import LogLevel
from safekit.mirror.events import Event, ReplicaStatus
from safekit.mirror.machine import may_acknowledge_alone
from safekit.mirror.settings import MirrorSettings
from safekit.mirror.states import MirrorState, NodeStatus, ReplicationRole, Role
from safekit.rfs import channel


@dataclass(frozen=True)
class ReplicaBook:
    """What the daemon knows of its replication, between events."""

    with_rfs: bool
    """The module replicates directories (<rfs>); without, the copy is the heartbeat's word."""
    role: ReplicationRole = ReplicationRole.NONE
    synced_generation: int | None = None
    """Secondary: the generation its copy was last in sync at (None: not known to be in sync)."""
    fed_generation: int | None = None
    """Secondary without <rfs>: the serving primary's generation last reported as followed."""
    degrade_pending: bool = False
    """Primary: its replication process holds writes until told it may acknowledge alone."""
    degrade_wait_reason: str = ""
    generation_sent: int | None = None
    """Primary: the generation last told to the replication process."""


# --------------------------------------------------------------------------- effects
@dataclass(frozen=True)
class Submit:
    """Submit this event to the state machine."""

    event: Event


@dataclass(frozen=True)
class SendCommand:
    """Send this command to the replication process (if one runs)."""

    command: channel.Command


@dataclass(frozen=True)
class Note:
    """A line for the module log."""

    level: LogLevel
    text: str


@dataclass(frozen=True)
class ShowResource:
    """Set a resource (`value` None: remove it)."""

    name: str
    value: str | None


@dataclass(frozen=True)
class AnswerVerify:
    """The replication process answered `safekit rfs verify`."""

    result: channel.VerifyResult


@dataclass(frozen=True)
class ReportExit:
    """The replication process of `role` died unasked: tell the machine (after a backoff for a
    secondary's)."""

    role: ReplicationRole
    code: int | None


Effect = Submit | SendCommand | Note | ShowResource | AnswerVerify | ReportExit
Result = tuple[ReplicaBook, list[Effect]]


# --------------------------------------------------------------------------- life of the process
def started(book: ReplicaBook, role: ReplicationRole, generation: int) -> ReplicaBook:
    """A replication role began (StartReplication): for <rfs>, a new process of that role serves
    from `generation`; nothing of the previous one holds."""
    return replace(
        book,
        role=role,
        fed_generation=None,
        synced_generation=None,
        degrade_pending=False,
        degrade_wait_reason="",
        generation_sent=generation if book.with_rfs else book.generation_sent,
    )


def stopped(book: ReplicaBook) -> ReplicaBook:
    """The replication role ended (StopReplication)."""
    return replace(book, role=ReplicationRole.NONE, degrade_pending=False, degrade_wait_reason="")


def fenced(book: ReplicaBook) -> Result:
    """FenceReplication: held and new writes fail; nothing waits for a degrade decision any more."""
    if not book.with_rfs or book.role is not ReplicationRole.PRIMARY:
        return book, []
    return replace(book, degrade_pending=False, degrade_wait_reason=""), [
        Note(
            LogLevel.WARNING, "replication fenced: held and new fsync calls fail (nothing acknowledged alone)"
        ),
        SendCommand(channel.Fence()),
    ]


def peer_lost(book: ReplicaBook) -> list[Effect]:
    """Membership lost the peer: a primary's replication need not wait for sendtimeout."""
    if book.with_rfs and book.role is ReplicationRole.PRIMARY:
        return [SendCommand(channel.PeerLost())]
    return []


def replication_lan_lost(book: ReplicaBook, state: MirrorState, lan: str) -> list[Effect]:
    """The heartbeats of `lan`, which carries the stream, are down while the peer is heard on
    another LAN: a primary's replication need not wait for sendtimeout (ADR 0079). It declares the
    link lost; what its held writes become is `after_step`'s: acknowledged alone after the degrade
    handshake on a node that claims the primary role, failed (fenced) on a node that is leaving it
    - one whose interface checker stopped it because the same cable carries its clients: the
    peer's copy, still up to date, then takes over (an early degrade would make it stale and leave
    nobody to serve, ADR 0077's measurement)."""
    if not book.with_rfs or book.role is not ReplicationRole.PRIMARY:
        return []
    if state.claims_primary:
        then = "the degrade handshake starts now instead of after sendtimeout"
    else:
        then = "this node leaves the primary role: held writes fail (nothing acknowledged alone)"
    return [
        Note(
            LogLevel.WARNING,
            f"replication: LAN {lan}, which carries the stream, is down while the peer is heard on "
            f"another LAN: {then}",
        ),
        SendCommand(channel.ReplicationLanLost()),
    ]


# --------------------------------------------------------------------------- peer statuses
def on_peer_status(book: ReplicaBook, status: NodeStatus, state: MirrorState, now: float) -> Result:
    """A heartbeat status from the peer: what it says of this node's copy (secondary)."""
    if book.role is not ReplicationRole.SECONDARY or not status.serving:
        return book, []
    if not book.with_rfs:
        # No data to copy: a secondary is up to date with its primary as soon as it follows it.
        if status.generation == book.fed_generation:
            return book, []
        return replace(book, fed_generation=status.generation), [
            Submit(ReplicaStatus(True, now, status.generation))
        ]
    if state.uptodate and book.synced_generation is not None and status.generation > book.synced_generation:
        # The primary moved to a new generation since our copy was in sync: its link to us was
        # lost and it went on without us. Our copy is stale, and we say so: that is what the
        # primary waits for before it acknowledges writes without us.
        return replace(book, synced_generation=None), [
            Note(
                LogLevel.WARNING,
                f"{status.node} is at replica generation {status.generation}, this copy was synced "
                f"at {book.synced_generation}: not up to date",
            ),
            Submit(ReplicaStatus(False, now)),
        ]
    return book, []


# --------------------------------------------------------------------------- process events
def on_event(book: ReplicaBook, event: channel.Event, peer_node: str, now: float) -> Result:
    """An event of the replication process (of `book.role`)."""
    if isinstance(event, channel.Exited):
        return book, [
            Note(
                LogLevel.ERROR,
                f"replication process ({book.role}) exited with code {event.code}: restarting it",
            ),
            ReportExit(book.role, event.code),
        ]
    if book.role is ReplicationRole.PRIMARY:
        return _primary_event(book, event, peer_node, now)
    if book.role is ReplicationRole.SECONDARY:
        return _secondary_event(book, event, now)
    return book, []


def _primary_event(book: ReplicaBook, event: channel.Event, peer_node: str, now: float) -> Result:
    match event:
        case channel.Degraded(reason=reason):
            return replace(book, degrade_pending=True), [
                ShowResource("rfs.degraded", "up"),
                Note(LogLevel.WARNING, f"replication degraded: {reason}"),
                Submit(ReplicaStatus(False, now)),
            ]
        case channel.Disconnected():
            return book, [ShowResource("rfs.degraded", "up")]
        case channel.Resyncing(mode=mode):
            return book, [
                ShowResource("rfs.degraded", "up"),
                Note(LogLevel.INFO, f"replication: resynchronising {peer_node} ({mode})"),
            ]
        case channel.InSync(mode=mode, seconds=seconds, bytes=sent):
            return book, [
                ShowResource("rfs.degraded", "down"),
                Note(
                    LogLevel.INFO,
                    f"replication: {peer_node} in sync ({mode} resync, {seconds} s, {sent} bytes)",
                ),
            ]
        case channel.VerifyResult():
            return book, [AnswerVerify(event)]
    return book, []


def _secondary_event(book: ReplicaBook, event: channel.Event, now: float) -> Result:
    match event:
        case channel.Resyncing():
            return replace(book, synced_generation=None), [
                ShowResource("rfs.sync_progress", "0"),
                Submit(ReplicaStatus(False, now)),
            ]
        case channel.Progress(percent=percent):
            return book, [ShowResource("rfs.sync_progress", str(percent))]
        case channel.Disconnected():
            return book, [ShowResource("rfs.sync_progress", None)]
        case channel.InSync(generation=generation):
            synced = generation or 0
            return replace(book, synced_generation=synced), [
                ShowResource("rfs.sync_progress", None),
                Submit(ReplicaStatus(True, now, synced)),
            ]
        case channel.ApplyError(reason=reason):
            return replace(book, synced_generation=None), [
                Note(LogLevel.ERROR, f"replication: {reason}"),
                Submit(ReplicaStatus(False, now)),
            ]
    return book, []


# --------------------------------------------------------------------------- after each step
def after_step(book: ReplicaBook, settings: MirrorSettings, state: MirrorState) -> Result:
    """Checked after every machine step and peer status: the generation to tell the primary's
    replication process, and whether its held writes may now be acknowledged alone."""
    if not book.with_rfs or book.role is not ReplicationRole.PRIMARY:
        return book, []
    effects: list[Effect] = []
    if book.generation_sent != state.generation:
        book = replace(book, generation_sent=state.generation)
        effects.append(SendCommand(channel.SetGeneration(state.generation)))
    if not book.degrade_pending:
        return book, effects
    if not state.claims_primary:
        # A node that no longer claims the primary role never acknowledges alone: its peer serves
        # (ADR 0078), may take over with an up-to-date copy, or is lost and may be taking over
        # beyond a cut (ADR 0079) - a degrade would make the peer's copy stale while this node
        # stops, and leave nobody to serve. The held writes fail now instead of holding the
        # stopping application until the cable, the peer or the witness comes back.
        peer = state.peer
        if peer is None:
            what = "is lost (it may be taking over)"
        elif peer.serving and peer.role is Role.PRIMARY:
            what = "serves as primary"
        elif peer.uptodate:
            what = "has an up-to-date copy to take over with"
        else:
            what = "is not up to date"
        effects += [
            Note(
                LogLevel.WARNING,
                f"replication fenced: this node left the primary role and {settings.peer_node} {what}: "
                "held and new fsync calls fail (nothing acknowledged alone)",
            ),
            SendCommand(channel.Fence()),
        ]
        return replace(book, degrade_pending=False, degrade_wait_reason=""), effects
    allowed, why = may_acknowledge_alone(settings, state)
    if not allowed:
        if why != book.degrade_wait_reason:
            book = replace(book, degrade_wait_reason=why)
            effects.append(Note(LogLevel.INFO, f"replication degraded: writes held ({why})"))
        return book, effects
    effects += [
        Note(LogLevel.INFO, f"replication degraded: {why}; writes are acknowledged by this node alone"),
        SendCommand(channel.DegradeOk()),
    ]
    return replace(book, degrade_pending=False, degrade_wait_reason=""), effects
