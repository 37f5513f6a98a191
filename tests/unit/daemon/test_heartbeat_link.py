"""One heartbeat link for both module kinds: several peers per LAN, the status codec passed in, the
pulse on the wall clock's grid, liveness deadlines met without a tick loop (loopback, no root)."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink, StatusCodec, pulse_delay
from safekit.daemon.status_codec import status_from, wire_fields
from safekit.farm import status_codec as farm_codec
from safekit.farm.states import FarmState
from safekit.farm.status_codec import FarmStatus
from safekit.lifecycle import Readiness
from safekit.lifecycle import Readiness as MirrorReadiness
from safekit.membership.liveness import LivenessEvent, PeerLost, PeerUp
from safekit.membership.wire import Heartbeat, encode, to_wire_us
from safekit.mirror.states import Intent, ModuleState, NodeStatus, Role

pytestmark = pytest.mark.wallclock  # liveness on the wall clock: run at normal priority

KEY = bytes(range(32))
FARM = StatusCodec(farm_codec.wire_fields, farm_codec.status_from)
NODES = {"node1": "127.0.0.1", "node2": "127.0.0.2", "node3": "127.0.0.3"}
PULSE = 0.05
TIMEOUT = 0.2


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Node:
    """One node's link, and what it reported."""

    def __init__(self, name: str, port: int, nodes: dict[str, str], codec: StatusCodec[Any]) -> None:
        self.statuses: list[tuple[Any, float]] = []
        self.events: list[tuple[LivenessEvent, float]] = []
        peers = tuple((n, a) for n, a in nodes.items() if n != name)
        lan = HeartbeatLan("default", nodes[name], peers, port, PULSE, TIMEOUT)
        self.link: HeartbeatLink[Any] = HeartbeatLink(
            module="AM",
            local_node=name,
            key=KEY,
            lans=[lan],
            codec=codec,
            on_status=lambda status, now: self.statuses.append((status, now)),
            on_liveness=lambda event, now: self.events.append((event, now)),
        )

    def heard(self, peer: str) -> list[Any]:
        return [s for s, _ in self.statuses if s.node == peer]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_farm_link_hears_every_peer_and_loses_a_silent_one_on_time() -> None:
    async def run() -> None:
        port = free_port()
        nodes = {name: Node(name, port, NODES, FARM) for name in NODES}
        for name, node in nodes.items():
            node.link.announce(FarmStatus(name, FarmState.STOP, Readiness.NOT_READY))
            await node.link.start()
        node1 = nodes["node1"]
        assert node1.link.peer_nodes == ["node2", "node3"]
        await until(lambda: all(n.heard(p) for n in nodes.values() for p in NODES if p != n.link.local_node))
        # A change leaves at once, not at the next pulse.
        nodes["node2"].link.announce(FarmStatus("node2", FarmState.UP, Readiness.READY))
        await until(lambda: FarmStatus("node2", FarmState.UP, Readiness.READY) in node1.heard("node2"), 1.0)
        assert {e.peer for e, _ in node1.events if isinstance(e, PeerUp)} == {"node2", "node3"}
        # node3 falls silent: node1 loses it one timeout after its last packet, and not before.
        await nodes["node3"].link.close()
        silent_from = time.monotonic()
        await until(lambda: any(isinstance(e, PeerLost) for e, _ in node1.events), 3.0)
        lost_at = next(t for e, t in node1.events if isinstance(e, PeerLost))
        last_heard = max(t for s, t in node1.statuses if s.node == "node3") if node1.heard("node3") else 0.0
        assert [e.peer for e, _ in node1.events if isinstance(e, PeerLost)] == ["node3"]
        assert lost_at >= last_heard + TIMEOUT
        assert lost_at - silent_from < TIMEOUT + 0.5  # a tick at the deadline, not pulses later
        assert node1.link.lateness_p99() is not None
        for name in ("node1", "node2"):
            await nodes[name].link.close()

    asyncio.run(run())


def test_a_stalled_link_does_not_take_live_peers_for_lost() -> None:
    """ADR 0080: node1's loop is stalled for three timeouts (starved of CPU, frozen) while node2 and
    node3, in another thread, keep sending. When it runs again, what they sent meanwhile counts
    before their deadlines: neither is lost. (Reading one datagram per loop iteration, the first
    of the two peers' queued packets refreshed one of them and the deadline timer lost the other.)
    Then node3 really falls silent, and is lost."""
    port = free_port()
    ready, silence_node3, stop = threading.Event(), threading.Event(), threading.Event()
    peers: dict[str, Node] = {}

    def peers_thread() -> None:
        # the peers' links live in this thread's loop: only it opens and closes them
        async def run() -> None:
            for name in ("node2", "node3"):
                peers[name] = Node(name, port, NODES, FARM)
                peers[name].link.announce(FarmStatus(name, FarmState.UP, Readiness.READY))
                await peers[name].link.start()
            ready.set()
            open_links = dict(peers)
            while not stop.is_set():
                if silence_node3.is_set() and "node3" in open_links:
                    await open_links.pop("node3").link.close()
                await asyncio.sleep(0.01)
            for node in open_links.values():
                await node.link.close()

        asyncio.run(run())

    thread = threading.Thread(target=peers_thread, daemon=True)
    thread.start()

    async def run() -> None:
        node1 = Node("node1", port, NODES, FARM)
        node1.link.announce(FarmStatus("node1", FarmState.UP, Readiness.READY))
        await node1.link.start()
        assert ready.wait(5)
        await until(lambda: bool(node1.heard("node2")) and bool(node1.heard("node3")))
        for stall in range(1, 6):  # several stalls: at different phases of the pulse
            time.sleep(3 * TIMEOUT)  # the loop cannot run; the peers' packets queue in its socket
            await asyncio.sleep(4 * PULSE)
            lost = [e.peer for e, _ in node1.events if isinstance(e, PeerLost)]
            assert lost == [], f"after stall {stall}: live peers taken for lost: {lost}"
        silence_node3.set()  # from here on node3 is really silent
        await until(lambda: any(isinstance(e, PeerLost) for e, _ in node1.events), 3.0)
        assert [e.peer for e, _ in node1.events if isinstance(e, PeerLost)] == ["node3"]
        await node1.link.close()

    try:
        asyncio.run(run())
    finally:
        stop.set()
        thread.join(5)


def test_a_mirror_link_carries_the_node_status_to_its_one_peer() -> None:
    status = NodeStatus(
        node="node1",
        state=ModuleState.ALONE,
        readiness=MirrorReadiness.READY,
        role=Role.PRIMARY,
        generation=12,
        uptodate=True,
        intent=Intent.AUTO,
        last_primary="node1",
        verdict=None,
    )
    codec = StatusCodec(wire_fields, status_from)

    async def run() -> None:
        port = free_port()
        pair = {"node1": NODES["node1"], "node2": NODES["node2"]}
        one, two = Node("node1", port, pair, codec), Node("node2", port, pair, codec)
        await one.link.start()
        await two.link.start()
        one.link.announce(status)
        await until(lambda: bool(two.statuses))
        assert two.statuses[0][0] == status
        assert one.statuses == []  # node2 never announced: nothing is sent before a status
        await one.link.close()
        await two.link.close()

    asyncio.run(run())


def test_an_unreadable_status_is_dropped_and_counted_as_malformed() -> None:
    def refuse(hb: Heartbeat) -> FarmStatus:
        raise ValueError(f"heartbeat from {hb.sender}: unreadable")

    async def run() -> None:
        port = free_port()
        pair = {"node1": NODES["node1"], "node2": NODES["node2"]}
        sender = Node("node1", port, pair, FARM)
        receiver = Node("node2", port, pair, StatusCodec(farm_codec.wire_fields, refuse))
        await sender.link.start()
        await receiver.link.start()
        sender.link.announce(FarmStatus("node1", FarmState.UP, Readiness.READY))
        counters = receiver.link.receiver.counters("default")
        await until(lambda: counters.dropped_malformed >= 2)
        assert receiver.statuses == []
        assert counters.received >= 2  # authentic: liveness still hears the peer
        assert any(isinstance(e, PeerUp) for e, _ in receiver.events)
        await sender.link.close()
        await receiver.link.close()

    asyncio.run(run())


def test_two_links_pulse_in_the_same_instant() -> None:
    """Links started at different moments send on the same grid: one wakeup sends for both."""
    dues: list[tuple[float, float]] = []

    async def run() -> None:
        pair = {"node1": NODES["node1"], "node2": NODES["node2"]}
        first, second = Node("node1", free_port(), pair, FARM), Node("node1", free_port(), pair, FARM)
        for node in (first, second):
            node.link.announce(FarmStatus("node1", FarmState.STOP, Readiness.NOT_READY))
        await first.link.start()
        await asyncio.sleep(0.37 * PULSE)
        await second.link.start()
        for _ in range(10):
            await asyncio.sleep(PULSE)
            dues.append((first.link._due, second.link._due))
        await first.link.close()
        await second.link.close()

    asyncio.run(run())
    # The scheduled instants differ by whole pulses, up to the time between two clock reads.
    gaps = [math.fmod(abs(a - b) + PULSE / 2, PULSE) - PULSE / 2 for a, b in dues]
    assert sum(abs(g) < 0.002 for g in gaps) >= 0.8 * len(gaps), gaps


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False), st.sampled_from([0.05, 0.1, 0.7, 2.0]))
def test_pulse_delay_lands_on_a_multiple_of_the_pulse_never_too_close(wall: float, pulse: float) -> None:
    delay = pulse_delay(wall, pulse)
    assert pulse / 4 - 1e-6 <= delay <= 1.25 * pulse + 1e-6
    phase = math.fmod(wall + delay, pulse)
    assert min(phase, pulse - phase) <= 4 * math.ulp(wall + delay) + 1e-12


def test_a_lan_lists_its_peers_addresses() -> None:
    lan = HeartbeatLan("default", "10.0.0.1", (("node2", "10.0.0.2"), ("node3", "10.0.0.3")), 4800, 0.1, 0.4)
    assert lan.peer_address == "10.0.0.2 10.0.0.3"
    with pytest.raises(ValueError, match="longer than the pulse"):
        HeartbeatLink(
            module="AM",
            local_node="node1",
            key=KEY,
            lans=[HeartbeatLan("default", "10.0.0.1", (("node2", "10.0.0.2"),), 4800, 0.1, 0.1)],
            codec=FARM,
            on_status=lambda status, now: None,
            on_liveness=lambda event, now: None,
        )


def test_late_packets_are_logged_once_per_peer_and_lan_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    """A farm LAN has several peers: each peer's late packets after an outage are told once (not
    only the first peer's), and told again after a later outage."""
    node = Node("node1", 4800, NODES, FARM)
    rx = node.link.receiver

    def heartbeat(sender: str, sequence: int, echo: int = 0) -> bytes:
        fields = farm_codec.wire_fields(FarmStatus(sender, FarmState.UP, Readiness.READY))
        return encode(
            Heartbeat(
                module="AM",
                sender=sender,
                target="node1",
                lan="default",
                incarnation=7,
                sequence=sequence,
                sent_at_us=sequence,
                echo_sent_at_us=echo,
                **fields,
            ),
            KEY,
        )

    def told() -> list[str]:
        return [r.getMessage() for r in caplog.records if "heartbeat ignored" in r.getMessage()]

    for peer in ("node2", "node3"):
        node.link._on_datagram("default", heartbeat(peer, 1))
    down_at = time.monotonic() + 10
    rx.tick(down_at)  # both peers silent past the timeout: the LAN is down for each
    for sequence in (2, 3):
        for peer in ("node2", "node3"):
            node.link._on_datagram("default", heartbeat(peer, sequence))  # echoes nothing: late
    assert [m.split(": ", 1)[1].split(" on ")[0] for m in told()] == ["node2", "node3"]
    # node2 answers a packet this node sent after the outage: up again; its next outage is told again
    node.link._on_datagram("default", heartbeat("node2", 4, echo=to_wire_us(down_at) + 1))
    rx.tick(down_at + 20)
    node.link._on_datagram("default", heartbeat("node2", 5))
    node.link._on_datagram("default", heartbeat("node3", 5))
    assert [m.split(": ", 1)[1].split(" on ")[0] for m in told()] == ["node2", "node3", "node2"]
