"""The node's side of the arbitrating witness: ask for, renew and release module leases.

This module owns one long-lived UDP socket per client, the numbering of requests (a random boot id
per client and a sequence that only grows, for the arbiter's replay check), the nonce that ties
an answer to its request, and the checks on answers: an answer that fails the MAC or does not
echo the nonce of a request still waiting is dropped, never believed. Several requests (one per
module) may wait at the same time.

How long a granted lease is valid on the node: from `LeaseAnswer.sent_at` (taken just before the
request left) for at most the duration asked, never longer. The arbiter starts the lease's clock
when the request arrives, which is later, so the node always believes it holds the lease for less
time than the arbiter does - as long as the two clocks run at the same rate (monotonic clocks, no
adjustment of their rate beyond NTP's 500 ppm: keep a margin, e.g. renew well before the end).

Every request names the node's replica generation; every answer says the highest generation the
arbiter has granted for the module. `LeaseAnswer.outdated` means the arbiter refused because this
copy is older than one a node served with: this node must not serve with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from dataclasses import dataclass

from safekit.aio import within
from safekit.arbiter import wire
from safekit.arbiter.keys import cluster_id, derive_arbiter_key
from safekit.arbiter.leases import Reason
from safekit.mirror.states import ReplicaRank

log = logging.getLogger("safekit.arbiter.client")


@dataclass(frozen=True)
class LeaseAnswer:
    """The arbiter's answer to a lease request.

    A granted lease is valid on this node until ``sent_at + min(duration asked, remaining)``,
    never longer, whatever happens next (a lost renewal, an arbiter restart).
    """

    granted: bool
    holder: str | None
    """Who holds the lease now (the requester when granted; None during the arbiter's grace)."""
    remaining: float
    """Seconds the holder's lease still runs by the arbiter's clock (grace left when in grace)."""
    sent_at: float
    """time.monotonic() taken just before the (first) request was sent."""
    detail: str
    """The arbiter's reason, for logs ("granted", "held by node1 for 0.8s", "arbiter restarted: ...")."""
    outdated: bool = False
    """Refused because this node's replica generation is below the highest the arbiter granted."""
    generation: int = 0
    """The generation of the highest copy rank the arbiter knows for the module (after this answer)."""
    confirmed: int = 0
    """The confirmed generation of that rank."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: ArbiterClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the arbiter is down; the request times out.
        log.debug("arbiter socket: %s", exc)


class ArbiterClient:
    """Talks to one arbiter for one node of one cluster.

    `cluster_key` is the cluster key (cluster.xml's key file); the client derives the arbiter key
    from it. Create it inside the event loop that will use it; `close()` when done.
    """

    def __init__(self, address: str, port: int, cluster_key: bytes, node: str) -> None:
        self._setup(address, port, derive_arbiter_key(cluster_key), node)

    @classmethod
    def from_arbiter_key(cls, address: str, port: int, arbiter_key: bytes, node: str) -> ArbiterClient:
        """A client holding only the derived arbiter key (status queries from the witness host)."""
        client = cls.__new__(cls)
        client._setup(address, port, arbiter_key, node)
        return client

    def _setup(self, address: str, port: int, arbiter_key: bytes, node: str) -> None:
        wire.check_name("node", node)
        self.address = address
        self.port = port
        self.node = node
        self._key = arbiter_key
        self._cluster = cluster_id(self._key)
        self.boot_id = secrets.token_bytes(wire.BOOT_ID_SIZE)
        self._sequence = itertools.count(1)
        self._pending: dict[bytes, tuple[wire.Kind, asyncio.Future[wire.Answer]]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Lock | None = None
        self.dropped = 0
        """Answers dropped: bad MAC, unknown nonce, garbage."""
        self.arbiter_boot_id: bytes | None = None

    async def request(
        self, module: str, duration: float, timeout: float, generation: int = 0, confirmed: int | None = None
    ) -> LeaseAnswer | None:
        """Ask for (or renew) the lease of `module` for `duration` seconds, for a node whose copy
        of the module's data is at replica `generation` and holds every write acknowledged up to
        generation `confirmed` (default: `generation`).

        Returns None when no valid answer came within `timeout` seconds (one retransmission at half
        of it): the node must then act as if it holds no lease beyond what it held already.
        """
        wire.check_name("module", module)
        duration_ms = wire.to_ms(duration)
        if duration_ms < 1:
            raise ValueError(f"a lease duration must be at least 1 ms, got {duration!r}")
        if not isinstance(generation, int) or isinstance(generation, bool) or not 0 <= generation < 2**64:
            raise ValueError(f"a replica generation is an integer in 0..2^64-1, got {generation!r}")
        if confirmed is None:
            confirmed = generation
        if not isinstance(confirmed, int) or isinstance(confirmed, bool) or not 0 <= confirmed <= generation:
            raise ValueError(f"a confirmed generation is an integer in 0..{generation}, got {confirmed!r}")
        sent_at = time.monotonic()
        answer = await self._exchange(wire.Kind.REQUEST, module, duration_ms, timeout, generation, confirmed)
        if answer is None:
            return None
        remaining = answer.remaining_ms / 1000
        return LeaseAnswer(
            granted=answer.granted,
            holder=answer.holder or None,
            remaining=remaining,
            sent_at=sent_at,
            detail=_detail(
                answer.reason,
                answer.holder,
                remaining,
                ReplicaRank(confirmed, generation),
                ReplicaRank(answer.confirmed, answer.generation),
            ),
            outdated=answer.reason is Reason.OUTDATED,
            generation=answer.generation,
            confirmed=answer.confirmed,
        )

    async def release(self, module: str, timeout: float) -> bool:
        """Give the lease of `module` up. True when the arbiter confirmed this node holds it no more
        (released now, or it held none); False without a valid answer in time."""
        wire.check_name("module", module)
        answer = await self._exchange(wire.Kind.RELEASE, module, 0, timeout)
        if answer is None:
            return False
        if answer.reason is Reason.NOT_HOLDER and answer.holder == self.node:
            # Held by this node through another session (a restarted daemon): it will expire.
            log.info("arbiter: lease of %s is held by an earlier run of this node; it will expire", module)
        return answer.reason in (Reason.RELEASED, Reason.NOT_HOLDER)

    async def status(self, module: str | None, timeout: float) -> wire.Answer | None:
        """The arbiter's leases for this cluster (one module's if given); None without an answer."""
        if module is not None:
            wire.check_name("module", module)
        return await self._exchange(wire.Kind.STATUS, module or "", 0, timeout)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for _kind, future in self._pending.values():
            future.cancel()
        self._pending.clear()

    # --------------------------------------------------------------- internals
    async def _transport_ready(self) -> asyncio.DatagramTransport:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._transport is None:
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), remote_addr=(self.address, self.port)
                )
                self._transport = transport
            return self._transport

    async def _exchange(  # noqa: PLR0917 - the request's fields, in wire order
        self,
        kind: wire.Kind,
        module: str,
        duration_ms: int,
        timeout: float,
        generation: int = 0,
        confirmed: int = 0,
    ) -> wire.Answer | None:
        transport = await self._transport_ready()
        nonce = secrets.token_bytes(wire.NONCE_SIZE)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[wire.Answer] = loop.create_future()
        self._pending[nonce] = (kind, future)
        deadline = loop.time() + timeout
        try:
            for attempt in range(2):
                datagram = wire.encode_request(
                    wire.Request(
                        kind=kind,
                        cluster=self._cluster,
                        node=self.node,
                        module=module,
                        nonce=nonce,
                        boot_id=self.boot_id,
                        sequence=next(self._sequence),
                        duration_ms=duration_ms,
                        generation=generation,
                        confirmed=confirmed,
                    ),
                    self._key,
                )
                transport.sendto(datagram)
                wait_until = deadline if attempt == 1 else loop.time() + timeout / 2
                with contextlib.suppress(TimeoutError):
                    return await within(asyncio.shield(future), max(0.0, wait_until - loop.time()))
            return None
        finally:
            self._pending.pop(nonce, None)
            if not future.done():
                future.cancel()

    def _received(self, data: bytes) -> None:
        try:
            answer = wire.decode_answer(data, self._key)
        except wire.ArbiterWireError as exc:
            self.dropped += 1
            log.debug("arbiter answer dropped: %s", exc)
            return
        kind, future = self._pending.get(answer.nonce, (None, None))
        if future is None or future.done() or answer.kind is not kind or answer.cluster != self._cluster:
            self.dropped += 1
            log.debug("arbiter answer dropped: it answers no request waiting")
            return
        self.arbiter_boot_id = answer.arbiter_boot_id
        future.set_result(answer)


_NO_RANK = ReplicaRank(0, 0)


def _detail(
    reason: Reason,
    holder: str,
    remaining: float,
    rank: ReplicaRank = _NO_RANK,
    known: ReplicaRank = _NO_RANK,
) -> str:
    if reason is Reason.OUTDATED:
        return f"outdated: this copy is at {rank.describe()}, the arbiter knows {known.describe()}"
    if reason is Reason.GRANTED:
        return "granted"
    if reason is Reason.RENEWED:
        return "renewed"
    if reason is Reason.HELD:
        return f"held by {holder} for {remaining:.1f}s"
    if reason is Reason.GRACE:
        return f"arbiter restarted: grace for another {remaining:.1f}s, no lease granted until then"
    return reason.name.lower().replace("_", " ")
