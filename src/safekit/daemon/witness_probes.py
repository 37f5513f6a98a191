"""The split-brain witness as the executor asks it (docs/adr/0010-partition-safety.md): ping it,
or request and renew the arbitrator's lease; with the answer, the clients' view of who answers for
the VIP when this node is about to take over.

When to ask is the state machine's rule (`witness_wanted`); what an answer means is its rule too
(`WitnessResult`, with the moment the probe left: what an answer proves is about that moment).
`lease_result` turns an arbitrator's answer into that event (pure). The prober only sends, waits
and reports.

What the operator sees of the witness from this node (`WitnessView`, pure: the console's
monitoring view, `safekit state -v --json` and the `safekit_witness_*` series): for each witness
address, whether its last probe was answered, the round trip of its last answer, the last error and
how long ago. Every probe counts, the fast ones of a split as the idle ones (at least one a second
while the module runs: ping mode probes all the time, arbitrator mode asks the arbitrator's status
when it does not renew a lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from safekit.aio import within
from safekit.arbiter.client import ArbiterClient, LeaseAnswer
from safekit.checkers.icmp import Pinger
from safekit.config import ModuleConfig
from safekit.daemon.module_vips import ModuleVips, OwnerCheck
from safekit.daemon.timing import Timing
from safekit.mirror import (
    Event,
    MirrorSettings,
    MirrorState,
    Phase,
    WitnessMode,
    WitnessResult,
    witness_wanted,
)
from safekit.mirror.states import ReplicaRank


@dataclass
class WitnessTarget:
    """One witness address as this node last heard it."""

    address: str
    reachable: bool | None = None
    """None before its first probe ended."""
    rtt: float | None = None
    """Seconds from the last answered probe's sending to its answer."""
    last_error: str | None = None
    """Why the last probe that failed failed (kept after later answers, with its time)."""
    checked_at: float | None = None
    answered_at: float | None = None
    failed_at: float | None = None
    failures: int = 0


@dataclass
class WitnessView:
    """This node's view of a module's split-brain witness (monotonic times, given by the caller)."""

    mode: str
    targets: dict[str, WitnessTarget] = field(default_factory=dict)

    @classmethod
    def of(cls, mode: WitnessMode, addresses: list[str]) -> WitnessView:
        return cls(mode.value, {a: WitnessTarget(a) for a in addresses})

    def answered(self, address: str, rtt: float, now: float) -> None:
        target = self.targets.setdefault(address, WitnessTarget(address))
        target.reachable, target.rtt = True, max(0.0, rtt)
        target.checked_at = target.answered_at = now

    def failed(self, address: str, error: str, now: float) -> None:
        target = self.targets.setdefault(address, WitnessTarget(address))
        target.reachable, target.last_error = False, error
        target.checked_at = target.failed_at = now
        target.failures += 1

    @property
    def reachable(self) -> bool | None:
        """Any witness answered its last probe (what the split-brain rules need); None before any
        probe ended."""
        known = [t.reachable for t in self.targets.values() if t.reachable is not None]
        return None if not known else any(known)

    def view(self, now: float) -> dict[str, Any]:
        def age(at: float | None) -> float | None:
            return None if at is None else round(max(0.0, now - at), 1)

        targets = [
            {
                "address": t.address,
                "reachable": t.reachable,
                "rtt": None if t.rtt is None else round(t.rtt, 6),
                "last_error": t.last_error,
                "checked_age": age(t.checked_at),
                "answered_age": age(t.answered_at),
                "failed_age": age(t.failed_at),
                "failures": t.failures,
            }
            for t in self.targets.values()
        ]
        answered = [t for t in self.targets.values() if t.reachable and t.rtt is not None]
        return {
            "mode": self.mode,
            "reachable": self.reachable,
            "rtt": min(t.rtt for t in answered if t.rtt is not None) if answered else None,
            "targets": targets,
        }


def witness_mode(config: ModuleConfig) -> WitnessMode:
    splitbrain = config.check.splitbrain
    if splitbrain is not None and splitbrain.exec == "arbitrator":
        return WitnessMode.ARBITRATOR
    return WitnessMode.PING


def two_way_liveness(config: ModuleConfig) -> bool:
    """Whether the module's heartbeats lose a peer that no longer hears this node (ADR 0076): with
    the arbitrating witness only, whose lease fences whichever side loses the other. With the ping
    witness or none, a secondary that still hears its primary is what keeps it from taking over
    beside it, so the side that still hears keeps its peer up."""
    return witness_mode(config) is WitnessMode.ARBITRATOR


def arbiter_client(config: ModuleConfig, key: bytes, node: str) -> ArbiterClient | None:
    splitbrain = config.check.splitbrain
    if splitbrain is None or splitbrain.exec != "arbitrator" or not splitbrain.witnesses:
        return None
    return ArbiterClient(splitbrain.witnesses[0], splitbrain.port, key, node)


def lease_result(
    answer: LeaseAnswer, generation: int, now: float, confirmed: int | None = None
) -> WitnessResult:
    """What an arbitrator's answer to a lease request for a copy at `generation`, confirmed up to
    `confirmed` (None: the same), tells the state machine."""
    result = WitnessResult(
        False,
        now,
        sent_at=answer.sent_at,
        known_generation=answer.generation,
        known_confirmed=answer.confirmed,
    )
    if answer.outdated:
        # a newer copy than ours was granted: whoever holds the lease, we are not it
        rank = ReplicaRank(answer.confirmed, answer.generation)
        return dataclasses.replace(result, other=answer.holder or f"a copy at {rank.describe()}")
    if not answer.granted and not answer.holder:
        # refused with no holder: the arbitrator's grace period after its restart (no answer yet)
        return result
    if not answer.granted:
        return dataclasses.replace(result, other=answer.holder)
    return dataclasses.replace(result, reachable=True, generation=generation, confirmed=confirmed)


def with_owner_check(result: WitnessResult, check: OwnerCheck) -> WitnessResult:
    """A lease granted to a node about to take over, with what the VIP owner probe saw: another
    holder, or a clear LAN. A probe that could not look (cut by its time bound on a busy host, a
    link without carrier) says nothing: the VIP is not recorded as checked, so the takeover waits
    for a probe that did look (ADR 0083). It used to count as clear: a probe cut short under load
    let a secondary take over while its frozen peer's kernel still answered for the VIP."""
    if check.owner is not None:
        return dataclasses.replace(result, vip_checked=True, vip_owner=check.owner)
    if check.unknown:
        return result
    return dataclasses.replace(result, vip_checked=True, vip_owner=None)


def ping_answer(
    reachable: bool, sent_at: float, now: float, check: OwnerCheck | None
) -> WitnessResult | None:
    """A ping witness's answer for the state machine: `check` is the VIP owner probe made when
    the answer would let this node take over (None: none made). An answer that would allow a
    takeover while the probe could not look is not given (None): the takeover waits for an
    answer whose probe did look (ADR 0083)."""
    if check is not None and check.unknown and check.owner is None:
        return None
    other = check.owner if check is not None else None
    return WitnessResult(reachable, now, sent_at=sent_at, other=other)


class WitnessProber:
    def __init__(
        self,
        module: str,
        config: ModuleConfig,
        settings: MirrorSettings,
        timing: Timing,
        *,
        pinger: Pinger,
        arbiter: ArbiterClient | None,
        vips: ModuleVips,
        state: Callable[[], MirrorState],
        submit: Callable[[Event], None],
        resources: dict[str, str],
        log: logging.Logger,
    ) -> None:
        splitbrain = config.check.splitbrain
        assert splitbrain is not None
        self.module = module
        self.witnesses = list(splitbrain.witnesses)
        self.resource = f"splitbrain.{splitbrain.ident}"
        self.settings = settings
        self.timing = timing
        self.pinger = pinger
        self.arbiter = arbiter
        self.vips = vips
        self.state = state
        self.submit = submit
        self.resources = resources
        self.log = log
        self.wake = asyncio.Event()
        self.probes: set[asyncio.Task[None]] = set()
        self.owner_unknown = ""
        """Why the last VIP owner probe could not look ("": it looked)."""
        target = [arbiter.address] if arbiter is not None else self.witnesses
        self.seen = WitnessView.of(
            WitnessMode.ARBITRATOR if arbiter is not None else WitnessMode.PING, target
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.probes.add(task)
        task.add_done_callback(self.probes.discard)

    async def run(self) -> None:
        """Ask as the machine wants it; a lost peer wakes this loop at once (QueryWitness)."""
        while True:
            state = self.state()
            wanted = witness_wanted(self.settings, state)
            if not wanted and self.arbiter is not None and state.phase is not Phase.STOPPED:
                # not asking for the lease (the primary holds it): only show whether it answers
                self._spawn(self._arbiter_reachable(), f"{self.module}-witness-status")
            if wanted:
                # Probes overlap: a slow answer on a busy host still counts, for the time it was
                # sent, while the next probe leaves on time.
                probe = self._arbiter_probe() if self.arbiter is not None else self._ping_probe()
                self._spawn(probe, f"{self.module}-witness-probe")
            self.wake.clear()
            # Fast while the peer is away (the split-brain rules run on these answers) or while
            # this node renews an arbitrator lease, slow otherwise.
            fast = state.peer is None or (self.arbiter is not None and state.claims_primary)
            interval = self.timing.witness_interval if fast else self.timing.witness_idle_interval
            with contextlib.suppress(TimeoutError):
                await within(self.wake.wait(), interval)

    async def cancel(self) -> None:
        for task in list(self.probes):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ping_probe(self) -> None:
        sent_at = time.monotonic()
        # Wait up to the bound for an answer: a late one still proves the witness was reachable
        # when the ping left, and the bound is what the rules allow between two answers.
        wait = max(self.timing.witness_timeout, self.settings.split_brain_bound - 0.03)
        answers = await asyncio.gather(*(self._timed_ping(a, wait) for a in self.witnesses))
        reachable = any(answers)  # as Pinger.ping_any: every witness asked, any answer counts
        self.resources[self.resource] = "up" if reachable else "down"
        check: OwnerCheck | None = None
        state = self.state()
        if reachable and state.peer is None and not state.claims_primary:
            check = await self.vips.other_owner()
            self._note_owner_check(check)
        answer = ping_answer(reachable, sent_at, time.monotonic(), check)
        if answer is not None:
            self.submit(answer)

    async def _timed_ping(self, address: str, wait: float) -> bool:
        sent_at = time.monotonic()
        answered = await self.pinger.ping(address, wait)
        now = time.monotonic()
        if answered:
            self.seen.answered(address, now - sent_at, now)
        else:
            self.seen.failed(address, f"no answer to a ping within {wait:.2f} s", now)
        return answered

    def _arbiter_answer(self, answered: bool, sent_at: float, error: str) -> None:
        assert self.arbiter is not None
        now = time.monotonic()
        if answered:
            self.seen.answered(self.arbiter.address, now - sent_at, now)
        else:
            self.seen.failed(self.arbiter.address, error, now)

    async def _arbiter_reachable(self) -> None:
        assert self.arbiter is not None
        sent_at = time.monotonic()
        timeout = self.timing.witness_idle_interval
        error = f"no answer to a status request within {timeout:.2f} s"
        try:
            answer = await self.arbiter.status(self.module, timeout=timeout)
        except OSError as exc:
            answer, error = None, f"status request failed: {exc}"
        self._arbiter_answer(answer is not None, sent_at, error)
        self.resources[self.resource] = "up" if answer is not None else "down"

    async def _arbiter_probe(self) -> None:
        """Ask for (renew) the lease, with this copy's replica generation: the arbitrator grants
        nothing to a copy older than one it granted (what lets a primary that went on alone
        acknowledge writes without its peer, `may_acknowledge_alone`)."""
        assert self.arbiter is not None
        sent_at = time.monotonic()
        confirmed, generation = self.state().rank
        try:
            answer = await self.arbiter.request(
                self.module,
                self.settings.lease_duration,
                timeout=self.settings.lease_duration,
                generation=generation,
                confirmed=confirmed,
            )
        except OSError as exc:
            self.log.warning("split-brain arbitrator: request failed: %s", exc)
            answer = None
            self._arbiter_answer(False, sent_at, f"lease request failed: {exc}")
        else:
            self._arbiter_answer(
                answer is not None,
                sent_at,
                f"no answer to a lease request within {self.settings.lease_duration:.2f} s",
            )
        if answer is None:
            self.resources[self.resource] = "down"
            self.submit(WitnessResult(False, time.monotonic(), sent_at=sent_at))
            return
        self.resources[self.resource] = "up"
        result = lease_result(answer, generation, time.monotonic(), confirmed)
        state = self.state()
        if result.reachable and state.peer is None and not state.claims_primary:
            # About to take over: the lease proves the peer stopped renewing, not that it stopped
            # serving (a node whose safekitd died keeps its VIP). Ask the clients' LAN as well.
            check = await self.vips.other_owner()
            self._note_owner_check(check)
            result = with_owner_check(result, check)
        self.submit(result)

    def _note_owner_check(self, check: OwnerCheck) -> None:
        """Log a VIP owner probe that could not look when it starts failing (or fails otherwise),
        and when it looks again: not every probe of a fast loop."""
        if check.unknown and check.unknown != self.owner_unknown:
            self.log.warning(
                "virtual IP owner probe could not look (%s): not taking over on this answer", check.unknown
            )
        elif not check.unknown and self.owner_unknown:
            self.log.info("virtual IP owner probe looks again")
        self.owner_unknown = check.unknown
