"""Client and service over 127.0.0.1 in one process: what safekitd will see from the arbiter."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from safekit.arbiter import server, wire
from safekit.arbiter.client import ArbiterClient
from safekit.arbiter.keys import cluster_id, derive_arbiter_key
from safekit.arbiter.leases import Reason

CLUSTER_KEY = b"c" * 32
ARBITER_KEY = derive_arbiter_key(CLUSTER_KEY)
TIMEOUT = 2.0  # generous: the machine is shared and loaded


def run(scenario: Callable[[server.RunningArbiter], Awaitable[None]], *, grace: float = 0.0) -> None:
    async def main() -> None:
        running = await server.start([ARBITER_KEY], "127.0.0.1", 0, grace=grace)
        try:
            await scenario(running)
        finally:
            await running.close()

    asyncio.run(main())


def client(running: server.RunningArbiter, node: str, key: bytes = CLUSTER_KEY) -> ArbiterClient:
    host, port = running.address
    return ArbiterClient(host, port, key, node)


def test_grant_refuse_release() -> None:
    async def scenario(running: server.RunningArbiter) -> None:
        node1, node2 = client(running, "node1"), client(running, "node2")
        try:
            before = time.monotonic()
            a = await node1.request("am", 3.0, TIMEOUT)
            assert a is not None and a.granted and a.holder == "node1" and a.detail == "granted"
            assert before <= a.sent_at <= time.monotonic() and a.remaining == 3.0
            b = await node2.request("am", 3.0, TIMEOUT)
            assert b is not None and not b.granted and b.holder == "node1"
            assert 0 < b.remaining <= 3.0 and b.detail.startswith("held by node1 for")
            renewed = await node1.request("am", 3.0, TIMEOUT)
            assert renewed is not None and renewed.granted
            assert await node1.release("am", TIMEOUT)
            c = await node2.request("am", 3.0, TIMEOUT)
            assert c is not None and c.granted and c.holder == "node2"
            # a release by the non-holder answers "not holder" and leaves node2's lease alone
            assert await node1.release("am", TIMEOUT)
            d = await node1.request("am", 3.0, TIMEOUT)
            assert d is not None and not d.granted and d.holder == "node2"
        finally:
            node1.close()
            node2.close()

    run(scenario)


def test_lease_expires_when_not_renewed() -> None:
    async def scenario(running: server.RunningArbiter) -> None:
        node1, node2 = client(running, "node1"), client(running, "node2")
        try:
            a = await node1.request("am", 0.3, TIMEOUT)
            assert a is not None and a.granted
            await asyncio.sleep(0.4)
            b = await node2.request("am", 1.0, TIMEOUT)
            assert b is not None and b.granted
        finally:
            node1.close()
            node2.close()

    run(scenario)


def test_concurrent_requests_for_several_modules_on_one_socket() -> None:
    async def scenario(running: server.RunningArbiter) -> None:
        node1 = client(running, "node1")
        try:
            modules = [f"am{i}" for i in range(20)]
            answers = await asyncio.gather(*(node1.request(m, 2.0, TIMEOUT) for m in modules))
            assert all(a is not None and a.granted for a in answers)
            status = await node1.status(None, TIMEOUT)
            assert status is not None
            assert sorted(e.module for e in status.entries) == sorted(modules)
            assert {e.holder for e in status.entries} == {"node1"}
        finally:
            node1.close()

    run(scenario)


def test_grace_after_start_refuses_with_the_reason() -> None:
    async def scenario(running: server.RunningArbiter) -> None:
        node1 = client(running, "node1")
        try:
            a = await node1.request("am", 1.0, TIMEOUT)
            assert a is not None and not a.granted and a.holder is None
            assert a.detail.startswith("arbiter restarted: grace") and 0 < a.remaining <= 30.0
        finally:
            node1.close()

    run(scenario, grace=30.0)


def test_wrong_cluster_key_gets_no_answer() -> None:
    async def scenario(running: server.RunningArbiter) -> None:
        stranger = client(running, "node1", key=b"w" * 32)
        try:
            assert await stranger.request("am", 1.0, 0.3) is None
        finally:
            stranger.close()
        assert running.arbiter.dropped["UnknownCluster"] == 2  # the request and its one retransmission

    run(scenario)


@pytest.mark.wallclock
def test_timeout_when_the_service_is_stopped() -> None:
    async def scenario(running: server.RunningArbiter) -> None:
        node1 = client(running, "node1")
        try:
            assert await node1.request("am", 1.0, TIMEOUT) is not None
            await running.close()
            start = time.monotonic()
            assert await node1.request("am", 1.0, 0.4) is None
            assert time.monotonic() - start < 0.4 + 1.0
            assert await node1.release("am", 0.2) is False
        finally:
            node1.close()

    run(scenario)


def test_replayed_request_is_dropped_and_forged_answers_are_ignored() -> None:
    """A recorded request sent again gets no answer; answers that fail the MAC or answer no waiting
    request are dropped by the client."""

    async def scenario(running: server.RunningArbiter) -> None:
        host, port = running.address
        cid = cluster_id(ARBITER_KEY)
        req = wire.Request(
            kind=wire.Kind.REQUEST,
            cluster=cid,
            node="node1",
            module="am",
            nonce=os.urandom(16),
            boot_id=os.urandom(16),
            sequence=5,
            duration_ms=1000,
        )
        data = wire.encode_request(req, ARBITER_KEY)
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((host, port))
            await loop.sock_sendall(sock, data)
            first = wire.decode_answer(
                await asyncio.wait_for(loop.sock_recv(sock, 2048), TIMEOUT), ARBITER_KEY
            )
            assert first.nonce == req.nonce and first.reason is Reason.GRANTED
            await loop.sock_sendall(sock, data)  # the same datagram again
            try:
                await asyncio.wait_for(loop.sock_recv(sock, 2048), 0.3)
                raise AssertionError("a replayed request was answered")
            except TimeoutError:
                pass
        assert running.arbiter.dropped["Replay"] == 1

        # The client: an answer it did not ask for, and one with a bad MAC, change nothing.
        node2 = client(running, "node2")
        try:
            bogus = wire.Answer(
                kind=wire.Kind.REQUEST,
                cluster=cid,
                nonce=os.urandom(16),
                arbiter_boot_id=os.urandom(16),
                reason=Reason.GRANTED,
                remaining_ms=1000,
                holder="node2",
            )
            node2._received(wire.encode_answer(bogus, ARBITER_KEY))
            node2._received(wire.encode_answer(bogus, derive_arbiter_key(b"z" * 32)))
            assert node2.dropped == 2
            a = await node2.request("am", 1.0, TIMEOUT)
            assert a is not None and not a.granted and a.holder == "node1"
        finally:
            node2.close()

    run(scenario)


def test_answer_to_garbage_is_silence_and_the_service_keeps_serving() -> None:
    async def scenario(running: server.RunningArbiter) -> None:
        host, port = running.address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (b"", b"SKAR", os.urandom(100), b"SKAR\x01\x01" + os.urandom(1500)):
                sock.sendto(junk, (host, port))
        node1 = client(running, "node1")
        try:
            a = await node1.request("am", 1.0, TIMEOUT)
            assert a is not None and a.granted
        finally:
            node1.close()
        assert sum(running.arbiter.dropped.values()) == 4

    run(scenario)


def _v2_request(node: str, generation: int, sequence: int) -> bytes:
    return wire.encode_request(
        wire.Request(
            kind=wire.Kind.REQUEST,
            cluster=cluster_id(ARBITER_KEY),
            node=node,
            module="am",
            nonce=os.urandom(16),
            boot_id=b"v" * 16,
            sequence=sequence,
            duration_ms=2000,
            generation=generation,
        ),
        ARBITER_KEY,
    )


def test_an_arbiter_answers_version_2_nodes_in_kind_and_ranks_their_number_as_confirmed() -> None:
    """ADR 0046's upgrade order: the arbiter first. A node of the previous version keeps working
    (its number ranks (number, number), what the arbiter compared before), and a node of this
    version whose copy ranks lower at the same number is refused."""
    arbiter = server.Arbiter([ARBITER_KEY], started_at=-100.0, grace=0.0)
    outcome = arbiter.handle(_v2_request("node1", 5, 1), "test", now=0.0)
    assert outcome.reply is not None and outcome.reply[4] == 2
    got = wire.decode_answer(outcome.reply, ARBITER_KEY)
    assert got.granted and (got.confirmed, got.generation) == (5, 5)
    assert arbiter.table.rank(cluster_id(ARBITER_KEY), "am") == (5, 5)

    async def scenario(running: server.RunningArbiter) -> None:
        node2 = client(running, "node2")
        try:
            a = await node2.request("am", 2.0, TIMEOUT, generation=5, confirmed=3)
            assert a is not None and a.granted and (a.confirmed, a.generation) == (3, 5)
            b = await node2.request("am", 2.0, TIMEOUT, generation=5, confirmed=5)
            assert b is not None and b.granted and (b.confirmed, b.generation) == (5, 5)
            node1 = client(running, "node1")
            try:
                c = await node1.request("am", 2.0, TIMEOUT, generation=5, confirmed=3)
                assert c is not None and c.outdated and "generation 5 (acknowledged writes up to" in c.detail
            finally:
                node1.close()
        finally:
            node2.close()

    run(scenario)
