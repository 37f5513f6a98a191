"""A probe given a bounded time per round: a probe that hangs (a netlink call that never returns, a
name lookup stuck on a dead resolver, a peer that accepts and never answers) must not stall its
checker, which would then keep reporting its resource's last value for good.

The bound is the checker's `timeout` (each `<to>` has one: its own attribute, else the default,
at most its interval) plus PROBE_GRACE, so that a probe honouring its timeout always answers
first. A probe still running at the bound is a failed round: ProbeTimeout, which the checker counts
as down and logs once (checker_tasks.run_checker). The hung probe is not started again while it
runs: a probe blocked in a thread (asyncio.to_thread) cannot be cancelled, and starting another
every round would pile up blocked threads in the event loop's executor, which the rest of the
daemon shares. The next rounds wait for the same call, bounded again, and take its answer when it
comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

PROBE_GRACE = 2.0
"""Seconds a probe has beyond its checker's timeout (ping's own bound is timeout + 1)."""


class ProbeTimeout(Exception):
    """The probe did not answer within its bound."""


def probe_limit(timeout: float) -> float:
    """The most a round waits for a probe whose checker's timeout is `timeout` seconds."""
    return max(timeout, 0.0) + PROBE_GRACE


class BoundedProbe:
    """`probe`, each round given at most `limit` seconds (probe_limit of the checker's timeout when
    not given); at most one call of it runs at a time."""

    def __init__(
        self, probe: Callable[[], Awaitable[bool]], timeout: float, limit: float | None = None
    ) -> None:
        self.probe = probe
        self.timeout = timeout
        self.limit = probe_limit(timeout) if limit is None else limit
        self._pending: asyncio.Future[bool] | None = None

    async def __call__(self) -> bool:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.probe())
        pending = self._pending
        try:
            done, _ = await asyncio.wait({pending}, timeout=self.limit)
        except asyncio.CancelledError:  # the checker ends: so does its probe
            pending.cancel()
            self._pending = None
            raise
        if not done:
            raise ProbeTimeout(f"no answer in {self.limit:g} s, the probe still runs")
        self._pending = None
        return pending.result()
