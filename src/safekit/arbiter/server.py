"""The arbitrating witness service: one asyncio UDP socket in front of the lease table.

This module owns what happens to a datagram that reaches the arbiter: `Arbiter.handle` (no I/O,
time passed in) authenticates it with the key of the cluster it names, drops replays, applies the
lease rules (leases.py) and builds the signed answer; `serve` runs it on a socket, logs every
decision, sweeps expired leases once a second and stops cleanly on SIGTERM/SIGINT.

A decision that raises a module's replica generation is written to the state file
(generations.py) before its answer leaves: a node never holds a grant the arbiter could forget by
restarting. If the write fails, the lease is withdrawn and nothing is answered.

Nothing is answered to a datagram that fails authentication or the replay check: an attacker
learns nothing, and a node with the wrong key sees the same as an unreachable arbiter (no lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from safekit.arbiter import wire
from safekit.arbiter.generations import Generations, GenerationStateError, GenerationStore
from safekit.arbiter.keys import cluster_id
from safekit.arbiter.leases import MAX_LEASE, LeaseTable, Reason
from safekit.arbiter.replay import SequenceGuard
from safekit.mirror.states import ReplicaRank

log = logging.getLogger("safekit.arbiter")

SWEEP_INTERVAL = 1.0
_DROP_LOG_INTERVAL = 60.0
"""Seconds between two log lines about dropped datagrams of the same kind (a flood stays quiet)."""


@dataclass
class Outcome:
    """What `Arbiter.handle` decided: the datagram to send back (None: drop) and lines to log.

    `persist`: the generations to write durably before `reply` is sent (None: nothing changed);
    `undo`: (cluster, module) of the grant that depends on that write.
    """

    reply: bytes | None
    messages: list[tuple[int, str]] = field(default_factory=list)
    persist: dict[tuple[bytes, str], ReplicaRank] | None = None
    undo: tuple[bytes, str] | None = None


class Arbiter:
    """Lease decisions for every cluster whose arbiter key it holds (pure: bytes and time in)."""

    def __init__(
        self,
        keys: Iterable[bytes],
        started_at: float,
        *,
        max_lease: float = MAX_LEASE,
        grace: float | None = None,
        generations: Generations | None = None,
    ) -> None:
        self._keys: dict[bytes, bytes] = {}
        for key in keys:
            self._keys[cluster_id(key)] = key
        if not self._keys:
            raise ValueError("the arbiter needs at least one arbiter key")
        self.boot_id = secrets.token_bytes(wire.BOOT_ID_SIZE)
        self.table = LeaseTable(started_at, max_lease=max_lease, grace=grace, generations=generations)
        self.guard = SequenceGuard()
        self.dropped: Counter[str] = Counter()
        self._last_drop_log: dict[str, float] = {}

    @property
    def clusters(self) -> list[str]:
        return sorted(cid.hex() for cid in self._keys)

    def handle(self, data: bytes, sender: str, now: float) -> Outcome:
        """Decide on one datagram from `sender` (an address, for logs) received at `now`."""
        outcome = Outcome(None)
        try:
            request = wire.decode_request(data, self._keys.get)
        except wire.ArbiterWireError as exc:
            self._drop(outcome, type(exc).__name__, f"from {sender}: {exc}", now)
            return outcome
        session = (request.cluster, request.node, request.boot_id)
        keep = self.table.sessions_holding(now)
        if not self.guard.accept(session, request.sequence, keep=keep):
            self._drop(
                outcome,
                "Replay",
                f"from {sender}: {request.kind.name} of {request.node} with sequence {request.sequence} "
                "not above the last accepted (a replay, or a reordered datagram): dropped",
                now,
            )
            return outcome
        key = self._keys[request.cluster]
        if request.kind is wire.Kind.STATUS:
            views = self.table.leases(request.cluster, now, request.module or None)
            known = self.table.rank(request.cluster, request.module) if request.module else None
            answer = wire.Answer(
                kind=request.kind,
                cluster=request.cluster,
                nonce=request.nonce,
                arbiter_boot_id=self.boot_id,
                reason=Reason.STATUS,
                remaining_ms=wire.to_ms(max(0.0, self.table.grace_until - now)),
                generation=known.generation if known else 0,
                confirmed=known.confirmed if known else 0,
                entries=tuple(
                    wire.LeaseEntry(v.module, v.holder, wire.to_ms(v.remaining), v.generation, v.confirmed)
                    for v in views
                ),
                version=request.version,
            )
            outcome.reply = wire.encode_answer(answer, key)
            return outcome
        if request.kind is wire.Kind.REQUEST:
            decision = self.table.request(
                request.cluster,
                request.module,
                request.node,
                request.duration_ms / 1000,
                request.generation,
                now,
                session=request.boot_id,
                confirmed=request.confirmed,
            )
        else:
            decision = self.table.release(
                request.cluster, request.module, request.node, now, session=request.boot_id
            )
        if decision.log is not None:
            outcome.messages.append((logging.INFO, decision.log))
        answer = wire.Answer(
            kind=request.kind,
            cluster=request.cluster,
            nonce=request.nonce,
            arbiter_boot_id=self.boot_id,
            reason=decision.reason,
            remaining_ms=wire.to_ms(decision.remaining),
            generation=decision.generation,
            confirmed=decision.confirmed,
            holder=decision.holder or "",
            version=request.version,
        )
        outcome.reply = wire.encode_answer(answer, key)
        if decision.raised_from is not None:
            outcome.persist = self.table.generations()
            outcome.undo = (request.cluster, request.module)
        return outcome

    def sweep(self, now: float) -> list[str]:
        return self.table.sweep(now)

    def _drop(self, outcome: Outcome, kind: str, message: str, now: float) -> None:
        self.dropped[kind] += 1
        last = self._last_drop_log.get(kind)
        if last is None or now - last >= _DROP_LOG_INTERVAL:
            self._last_drop_log[kind] = now
            total = self.dropped[kind]
            outcome.messages.append((logging.WARNING, f"dropped {kind} datagram {message} ({total} so far)"))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, arbiter: Arbiter, store: GenerationStore | None) -> None:
        self.arbiter = arbiter
        self.store = store
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        sender = f"{addr[0]}:{addr[1]}"
        outcome = self.arbiter.handle(data, sender, time.monotonic())
        for level, message in outcome.messages:
            log.log(level, "%s", message)
        if outcome.persist is not None and self.store is not None:
            # Synchronous on purpose: rare (a generation rises once per failover or split), and
            # the answer must not leave before the generation is on disk.
            try:
                self.store.save(outcome.persist)
            except GenerationStateError as exc:
                if outcome.undo is not None:
                    self.arbiter.table.withdraw(*outcome.undo)
                log.error("%s; the lease just granted is withdrawn and not answered", exc)
                return
        if outcome.reply is not None and self.transport is not None:
            self.transport.sendto(outcome.reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error: %s", exc)


@dataclass
class RunningArbiter:
    """A started service: its bound address and the means to stop it (tests, `serve`)."""

    arbiter: Arbiter
    transport: asyncio.DatagramTransport
    sweeper: asyncio.Task[None]

    @property
    def address(self) -> tuple[str, int]:
        sockname = self.transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        self.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper
        self.transport.close()


async def start(
    keys: Iterable[bytes],
    host: str,
    port: int,
    *,
    max_lease: float = MAX_LEASE,
    grace: float | None = None,
    store: GenerationStore | None = None,
    generations: Generations | None = None,
) -> RunningArbiter:
    """Bind the UDP socket and start answering; grace runs from now.

    `generations`: as loaded from `store` (None: load them from `store` here); `store` None keeps
    them in memory only (tests).
    """
    if generations is None and store is not None:
        generations = store.load()
    arbiter = Arbiter(keys, time.monotonic(), max_lease=max_lease, grace=grace, generations=generations)
    loop = asyncio.get_running_loop()
    transport, _protocol = await loop.create_datagram_endpoint(
        lambda: _Protocol(arbiter, store), local_addr=(host, port)
    )

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            for message in arbiter.sweep(time.monotonic()):
                log.info("%s", message)

    return RunningArbiter(arbiter, transport, asyncio.create_task(sweep()))


async def serve(
    keys: Mapping[str, bytes], host: str, port: int, store: GenerationStore, generations: Generations
) -> int:
    """Run the service until SIGTERM or SIGINT. `keys`: arbiter key per source (file name), for logs;
    `generations`: as loaded from `store` by the caller (who reports a bad state file)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(keys.values(), host, port, store=store, generations=generations)
    bound = running.address
    grace_end = time.strftime(
        "%H:%M:%S", time.localtime(time.time() + running.arbiter.table.grace_until - time.monotonic())
    )
    for source, key in keys.items():
        cid = cluster_id(key)
        known = {m: g for (c, m), g in generations.items() if c == cid}
        described = ", ".join(f"{m} {g.describe()}" for m, g in sorted(known.items())) or "none yet"
        log.info("serving cluster %s (key %s); replica generations known: %s", cid.hex(), source, described)
    log.info("replica generations kept in %s", store.path)
    log.info(
        "arbiter listening on %s:%d (pid %d); grants nothing until %s (grace %.0fs: leases granted before a "
        "restart must expire first)",
        bound[0],
        bound[1],
        os.getpid(),
        grace_end,
        MAX_LEASE,
    )
    try:
        await stop.wait()
    finally:
        await running.close()
    log.info("arbiter stopped; dropped datagrams: %s", dict(running.arbiter.dropped) or "none")
    return 0
