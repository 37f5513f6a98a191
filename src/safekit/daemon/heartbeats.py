"""Heartbeat transport of one mirror module: a UDP socket per LAN, a sender, a receiver, a ticker.

Every `pulse` the current status goes to the peer on every LAN of `<heart>`; every datagram that
arrives goes through `HeartbeatReceiver` (authentication, addressing, replay) and only what passes
reaches the module. Liveness transitions (a LAN lost, the peer lost) are reported as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from safekit.daemon.status_codec import StatusDecodeError, status_from, wire_fields
from safekit.membership.liveness import LanTiming, Liveness, LivenessEvent
from safekit.membership.receiver import HeartbeatReceiver
from safekit.membership.replay import next_incarnation
from safekit.membership.wire import Heartbeat, encode, to_wire_us
from safekit.mirror.states import NodeStatus

log = logging.getLogger("safekit.heartbeat")


@dataclass(frozen=True)
class HeartbeatLan:
    name: str
    local_address: str
    peer_address: str
    port: int
    pulse: float
    timeout: float


class _LanProtocol(asyncio.DatagramProtocol):
    def __init__(self, link: HeartbeatLink, lan: str) -> None:
        self.link = link
        self.lan = lan

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.link._on_datagram(self.lan, data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (peer down, port closed) are normal while a peer is away.
        log.debug("heartbeat socket on LAN %s: %s", self.lan, exc)


class HeartbeatLink:
    def __init__(
        self,
        *,
        module: str,
        local_node: str,
        peer_node: str,
        key: bytes,
        lans: list[HeartbeatLan],
        on_status: Callable[[NodeStatus, float], None],
        on_liveness: Callable[[LivenessEvent, float], None],
        previous_incarnation: int | None = None,
    ) -> None:
        self.module = module
        self.local_node = local_node
        self.peer_node = peer_node
        self._key = key
        self.lans = {lan.name: lan for lan in lans}
        self._on_status = on_status
        self._on_liveness = on_liveness
        liveness = Liveness(
            {lan.name: LanTiming(pulse=lan.pulse, timeout=lan.timeout) for lan in lans},
            {peer_node: [lan.name for lan in lans]},
        )
        self.receiver = HeartbeatReceiver(key=key, local_node=local_node, module=module, liveness=liveness)
        self.incarnation = next_incarnation(time.time_ns() // 1000, previous_incarnation)
        self._sequence = 0
        self._status: NodeStatus | None = None
        self._transports: dict[str, asyncio.DatagramTransport] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.pulse = min(lan.pulse for lan in lans)
        self.port = lans[0].port
        self.lateness: deque[float] = deque(maxlen=3000)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for lan in self.lans.values():
            transport, _ = await loop.create_datagram_endpoint(
                lambda name=lan.name: _LanProtocol(self, name),  # type: ignore[misc]
                local_addr=(lan.local_address, lan.port),
                family=socket.AF_INET,
                reuse_port=False,
            )
            self._transports[lan.name] = transport
        self._tasks = [
            asyncio.create_task(self._send_loop(), name=f"{self.module}-heartbeat-send"),
            asyncio.create_task(self._tick_loop(), name=f"{self.module}-heartbeat-tick"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        # A datagram transport closes its socket on the next loop iteration: let it, so that a
        # module loaded again at once (`safekit config -m`, `module install`) can bind the port.
        await asyncio.sleep(0)

    def announce(self, status: NodeStatus) -> None:
        """Send `status` from now on, and at once: the peer's election should not wait a pulse."""
        changed = self._status != status
        self._status = status
        if changed:
            self._wake.set()

    def _send_all(self) -> None:
        status = self._status
        if status is None:
            return
        self._sequence += 1
        now = time.monotonic()
        fields = wire_fields(status)
        for lan in self.lans.values():
            transport = self._transports.get(lan.name)
            if transport is None:
                continue
            echo_at, hold = self.receiver.echo_for(self.peer_node, lan.name, now)
            packet = Heartbeat(
                module=self.module,
                sender=self.local_node,
                target=self.peer_node,
                lan=lan.name,
                incarnation=self.incarnation,
                sequence=self._sequence,
                sent_at_us=to_wire_us(now),
                echo_sent_at_us=echo_at,
                echo_hold_us=hold,
                **fields,  # type: ignore[arg-type]
            )
            try:
                transport.sendto(encode(packet, self._key), (lan.peer_address, lan.port))
            except OSError as exc:  # link down: liveness on the peer's side tells the story
                log.debug("heartbeat to %s on %s not sent: %s", self.peer_node, lan.name, exc)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._send_all()
            self._wake.clear()
            due = loop.time() + self.pulse
            try:
                await asyncio.wait_for(self._wake.wait(), self.pulse)
            except TimeoutError:
                # How late the periodic send runs: the heartbeat timing jitter a loaded node adds.
                self.lateness.append(max(0.0, loop.time() - due))

    def lateness_p99(self) -> float | None:
        """99th percentile of how late periodic heartbeats were sent, over the last samples."""
        if not self.lateness:
            return None
        ordered = sorted(self.lateness)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    async def _tick_loop(self) -> None:
        # Sleep until the earliest liveness deadline (a packet arriving meanwhile only moves it
        # later), so an idle cluster wakes about once per timeout, not once per pulse.
        while True:
            deadline = self.receiver.liveness.next_deadline()
            now = time.monotonic()
            delay = (
                self.pulse if deadline is None else min(self.pulse * 10, max(0.001, deadline - now + 0.001))
            )
            await asyncio.sleep(delay)
            now = time.monotonic()
            for event in self.receiver.tick(now):
                self._on_liveness(event, now)

    def _on_datagram(self, lan: str, data: bytes) -> None:
        now = time.monotonic()
        reception = self.receiver.receive(data, lan=lan, now=now)
        for event in reception.events:
            self._on_liveness(event, now)
        hb = reception.heartbeat
        if hb is None:
            if reception.reason and reception.verdict is None:
                log.debug("heartbeat dropped on %s: %s", lan, reception.reason)
            return
        try:
            status = status_from(hb)
        except StatusDecodeError as exc:
            self.receiver.counters(lan).dropped_malformed += 1
            log.warning("%s", exc)
            return
        self._on_status(status, now)
