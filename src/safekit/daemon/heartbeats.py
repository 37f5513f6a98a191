"""Heartbeat transport of one module: a UDP socket per LAN, the module's peers on each, a pulse.

One link for both kinds of module: a mirror has one peer per LAN, a farm every other farm node.
What a status is, and which packet fields carry it, is the module's (`StatusCodec`): the mirror's
`NodeStatus` (`daemon/status_codec.py`), the farm's state and readiness (`farm/status_codec.py`).
Every `pulse` the current status goes to every peer on every LAN; every datagram that arrives goes
through `HeartbeatReceiver` (authentication, addressing, replay) and only what passes reaches the
module. Liveness transitions (a LAN lost, a peer lost) are reported as they happen. `two_way`: a LAN
is up only while the peer also hears this node (ADR 0076; mirror modules with the arbitrator).

Idle cost (ADR 0011): what an idle daemon pays for is mostly wakeups, not packets. Pulses fall on
a grid of the wall clock (multiples of the pulse), so every link of the node - and every node whose
clock is synchronised - sends in the same instant: one wakeup sends for every module, and the
peers' packets arrive together and are mostly read in one wakeup. No task per link: one timer per
pulse sends and looks at the liveness deadlines; a second timer is armed only when a deadline falls
before the next pulse, at the deadline itself (as precise as a loop sleeping until it).

A stalled daemon (starved of CPU, frozen, its host paused) must not take live peers for lost
(ADR 0080): each LAN's socket is read to its end at every wakeup, not one datagram per loop
iteration, and before a passed deadline is judged every socket is read once more. So the packets
that arrived while the daemon could not run count before their senders' deadlines do. They count
as received when read: a peer that died during the stall is declared lost at most one timeout
later than its last packet's arrival would say, never sooner.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from safekit.membership.counters import LATENESS_BUCKETS, Counters, Histogram, RttStats
from safekit.membership.liveness import LanTiming, LanUp, Liveness, LivenessEvent
from safekit.membership.receiver import HeartbeatReceiver
from safekit.membership.replay import next_incarnation
from safekit.membership.wire import MAX_PACKET_SIZE, Heartbeat, HeartbeatWriter, to_wire_us

log = logging.getLogger("safekit.heartbeat")

S = TypeVar("S")

DEADLINE_SLACK = 0.001
"""Seconds after a liveness deadline that the tick runs, so the deadline has surely passed."""

DRAIN_BATCH = 64
"""Datagrams read from one socket in one go: the rest of a flood waits for the next loop iteration,
so a flood cannot hold the loop (the socket stays readable, the reader runs again)."""


def pulse_delay(wall: float, pulse: float) -> float:
    """Seconds from wall-clock time `wall` to the next pulse, on the grid of multiples of `pulse`.

    Normally the next multiple, one pulse after the last; after a pulse that ran late, or early
    (the wall clock was slewed or stepped), the first multiple at least a quarter of a pulse away:
    two sends are never closer, and never more than 1.25 pulses apart, whatever the wall clock does.
    """
    delay = pulse - math.fmod(wall, pulse)
    return delay + pulse if delay < pulse / 4 else delay


@dataclass(frozen=True)
class StatusCodec(Generic[S]):
    """How a module's status travels in a heartbeat.

    `fields(status)`: the `Heartbeat` keyword arguments that carry it (state, sub-state, ...).
    `read(heartbeat)`: the sender's status back; a `ValueError` (the codecs raise subclasses) means
    an authentic packet whose status cannot be read: dropped, counted as malformed.
    """

    fields: Callable[[S], Mapping[str, Any]]
    read: Callable[[Heartbeat], S]


@dataclass(frozen=True)
class HeartbeatLan:
    """One LAN of a module's heartbeats: this node's address, and each peer's on the LAN."""

    name: str
    local_address: str
    peers: tuple[tuple[str, str], ...]
    """(node, address) of every peer on this LAN."""
    port: int
    pulse: float
    timeout: float

    @property
    def peer_address(self) -> str:
        return " ".join(address for _, address in self.peers)


class _LanSocket:
    """One LAN's UDP socket, registered with the loop and read to its end at each wakeup."""

    def __init__(self, link: HeartbeatLink[Any], lan: str, address: str, port: int) -> None:
        self.link = link
        self.lan = lan
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((address, port))
        except OSError:
            sock.close()
            raise
        self.sock: socket.socket | None = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self.drain)

    def drain(self) -> None:
        """Every datagram waiting (up to DRAIN_BATCH), in arrival order, to the link."""
        for _ in range(DRAIN_BATCH):
            sock = self.sock
            if sock is None:  # closed by what a datagram made the module do
                return
            try:
                # one byte more than a heartbeat may have: a longer one is refused, not parsed
                data = sock.recv(MAX_PACKET_SIZE + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error queued on the socket: normal while a peer is away
                log.debug("heartbeat socket on LAN %s: %s", self.lan, exc)
                return
            self.link._on_datagram(self.lan, data)

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self.sock is not None:
            self.sock.sendto(data, address)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()


class HeartbeatLink(Generic[S]):
    """Our status to every peer each pulse, theirs back, and liveness, for one module."""

    def __init__(
        self,
        *,
        module: str,
        local_node: str,
        key: bytes,
        lans: Sequence[HeartbeatLan],
        codec: StatusCodec[S],
        on_status: Callable[[S, float], None],
        on_liveness: Callable[[LivenessEvent, float], None],
        previous_incarnation: int | None = None,
        two_way: bool = False,
    ) -> None:
        self.module = module
        self.local_node = local_node
        self._key = key
        self.lans = {lan.name: lan for lan in lans}
        self._codec = codec
        self._on_status = on_status
        self._on_liveness = on_liveness
        peers: dict[str, list[str]] = {}
        for lan in lans:
            for peer, _ in lan.peers:
                peers.setdefault(peer, []).append(lan.name)
        self.peer_nodes = sorted(peers)
        liveness = Liveness(
            {lan.name: LanTiming(pulse=lan.pulse, timeout=lan.timeout) for lan in lans},
            peers,
            two_way=two_way,
        )
        self.receiver = HeartbeatReceiver(key=key, local_node=local_node, module=module, liveness=liveness)
        self.incarnation = next_incarnation(time.time_ns() // 1000, previous_incarnation)
        self.pulse = min(lan.pulse for lan in lans)
        self.port = lans[0].port
        self.lateness: deque[float] = deque(maxlen=3000)
        self.lateness_histogram = Histogram(LATENESS_BUCKETS)
        self._sequence = 0
        self._status: S | None = None
        self._fields: Mapping[str, Any] | None = None
        self._writers: dict[tuple[str, str], HeartbeatWriter] = {}
        """Packet writers of the current status, by (peer, LAN)."""
        self._sockets: dict[str, _LanSocket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pulse_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._stale_told: set[tuple[str, str]] = set()
        """(peer, LAN) whose late packets were logged since the LAN went down (once per outage)."""
        self._send_soon: asyncio.Handle | None = None
        self._due = 0.0

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            for lan in self.lans.values():
                self._sockets[lan.name] = _LanSocket(self, lan.name, lan.local_address, lan.port)
        except OSError:
            for lan_socket in self._sockets.values():
                lan_socket.close()
            self._sockets.clear()
            raise
        self._wake()
        self._schedule_pulse()

    async def relink(self, lans: Sequence[HeartbeatLan]) -> None:
        """Move networks of this link to new addresses (a cluster.xml reload, daemon/cluster_reload.py):
        the same names and peers, another local or peer address. Each new socket is bound before
        any old one is closed, so a bind that fails (an address not configured here) changes
        nothing. Liveness, replay state and counters stay: a peer heard on the old address is heard
        on the new one once it has moved too."""
        for lan in lans:
            old = self.lans.get(lan.name)
            if old is None or sorted(p for p, _ in old.peers) != sorted(p for p, _ in lan.peers):
                raise ValueError(f"heartbeat network {lan.name}: not the same network of this link")
        bound: dict[str, _LanSocket] = {}
        if self._loop is not None:
            try:
                for lan in lans:
                    old = self.lans[lan.name]
                    if (old.local_address, old.port) == (lan.local_address, lan.port):
                        continue
                    bound[lan.name] = _LanSocket(self, lan.name, lan.local_address, lan.port)
            except OSError:
                for lan_socket in bound.values():
                    lan_socket.close()
                raise
        for lan in lans:
            self.lans[lan.name] = lan
            if lan.name in bound:
                previous = self._sockets.get(lan.name)
                self._sockets[lan.name] = bound[lan.name]
                if previous is not None:
                    previous.close()
        self._wake()  # the peers hear us at the new addresses now, not a pulse later

    async def close(self) -> None:
        for handle in (self._pulse_timer, self._deadline_timer, self._send_soon):
            if handle is not None:
                handle.cancel()
        self._pulse_timer = self._deadline_timer = self._send_soon = None
        for lan_socket in self._sockets.values():
            lan_socket.close()  # at once: a module loaded again at once can bind the port
        self._sockets.clear()
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ sending
    def announce(self, status: S) -> None:
        """Send `status` from now on, and at once: a peer's decision should not wait a pulse."""
        if status == self._status:
            return
        self._status = status
        self._fields = self._codec.fields(status)
        self._writers.clear()
        self._wake()

    def _wake(self) -> None:
        # Soon, not now: several announcements of one step leave as one packet, after the step.
        if self._loop is not None and self._send_soon is None and self._sockets:
            self._send_soon = self._loop.call_soon(self._send_now)

    def _send_now(self) -> None:
        self._send_soon = None
        self._send_all()

    def _writer(self, peer: str, lan: str) -> HeartbeatWriter:
        """The packet writer of (peer, LAN) for the current status, made once per status (the
        status's fields are checked by `Heartbeat` then, not at every pulse)."""
        writer = self._writers.get((peer, lan))
        if writer is None:
            assert self._fields is not None
            template = Heartbeat(
                module=self.module,
                sender=self.local_node,
                target=peer,
                lan=lan,
                incarnation=self.incarnation,
                sequence=0,
                sent_at_us=0,
                **self._fields,
            )
            writer = self._writers[(peer, lan)] = HeartbeatWriter(self._key, template)
        return writer

    def _send_all(self) -> None:
        if self._fields is None:
            return
        self._sequence += 1
        now = time.monotonic()
        sent_at = to_wire_us(now)
        for lan in self.lans.values():
            lan_socket = self._sockets.get(lan.name)
            if lan_socket is None:
                continue
            for peer, address in lan.peers:
                echo_at, hold = self.receiver.echo_for(peer, lan.name, now)
                packet = self._writer(peer, lan.name).write(
                    self.incarnation, self._sequence, sent_at, echo_at, hold
                )
                try:
                    lan_socket.sendto(packet, (address, lan.port))
                except OSError as exc:  # link down: liveness on the peer's side tells the story
                    log.debug("heartbeat to %s on %s not sent: %s", peer, lan.name, exc)

    # ------------------------------------------------------------------ the pulse
    def _schedule_pulse(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + pulse_delay(time.time(), self.pulse)
        self._pulse_timer = self._loop.call_at(self._due, self._on_pulse)

    def _on_pulse(self) -> None:
        assert self._loop is not None
        # How late the periodic send runs: the heartbeat timing jitter a loaded node adds.
        late = max(0.0, self._loop.time() - self._due)
        self.lateness.append(late)
        self.lateness_histogram.observe(late)
        self._schedule_pulse()
        try:
            self._send_all()
        finally:
            self._watch_deadlines()

    def figures(self) -> Iterator[tuple[str, str, str, Counters, RttStats]]:
        """(module, peer, LAN, counters, round trip) of every peer on every LAN, for the metrics."""
        for lan in self.lans.values():
            for peer, _ in lan.peers:
                yield (
                    self.module,
                    peer,
                    lan.name,
                    self.receiver.counters(lan.name),
                    self.receiver.rtt(peer, lan.name),
                )

    def lateness_p99(self) -> float | None:
        """99th percentile of how late periodic heartbeats were sent, over the last samples."""
        if not self.lateness:
            return None
        ordered = sorted(self.lateness)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    # ------------------------------------------------------------------ liveness
    def _watch_deadlines(self) -> None:
        """Tick if a liveness deadline has passed; arm the deadline timer for one before the next pulse.

        A deadline only moves later (a packet arrives) or appears a timeout ahead (a LAN comes up;
        a timeout is longer than a pulse): one that is not before the next pulse is seen by it.
        """
        assert self._loop is not None
        now = time.monotonic()
        deadline = self.receiver.liveness.next_deadline()
        if deadline is not None and deadline <= now:
            # What arrived while this loop could not run counts first (ADR 0080): a timer can run
            # before the socket's reader in the iteration after a stall.
            for lan_socket in list(self._sockets.values()):
                lan_socket.drain()
            now = time.monotonic()
            deadline = self.receiver.liveness.next_deadline()
        if deadline is not None and deadline <= now:
            for event in self.receiver.tick(now):
                self._on_liveness(event, now)
            deadline = self.receiver.liveness.next_deadline()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        next_pulse = now + (self._due - self._loop.time())
        if deadline is not None and deadline < next_pulse:
            delay = max(DEADLINE_SLACK, deadline - now + DEADLINE_SLACK)
            self._deadline_timer = self._loop.call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        self._watch_deadlines()

    # ------------------------------------------------------------------ receiving
    def _on_datagram(self, lan: str, data: bytes) -> None:
        now = time.monotonic()
        reception = self.receiver.receive(data, lan=lan, now=now)
        for event in reception.events:
            if isinstance(event, LanUp):
                self._stale_told.discard((event.peer, event.lan))
            self._on_liveness(event, now)
        if reception.stale and (told := (reception.sender or "", lan)) not in self._stale_told:
            self._stale_told.add(told)
            log.warning(
                "heartbeat ignored, the LAN stays down until the peer answers this node: %s",
                reception.reason,
            )
        hb = reception.heartbeat
        if hb is None:
            if reception.reason and reception.verdict is None:
                log.debug("heartbeat dropped on %s: %s", lan, reception.reason)
            return
        try:
            status = self._codec.read(hb)
        except ValueError as exc:
            self.receiver.counters(lan).dropped_malformed += 1
            log.warning("%s", exc)
            return
        self._on_status(status, now)
