"""Retries of cloud API calls: jittered exponential backoff on throttling and 5xx, bounded by the
deadline of the VIP operation that makes them.

The deadline is carried in a context variable, set by `CloudVipProvider` when an operation starts
(`acquire(timeout)` and friends), so that every call below it - metadata, SDK calls, waits for
long-running operations - shares one budget and the state machine never waits longer than it
asked for. Threads started with `asyncio.to_thread` inherit it (the context is copied).

Pure parts (`backoff_delay`, `Deadline`) take time and randomness as arguments.
"""

from __future__ import annotations

import contextvars
import enum
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from safekit.vip.provider import VipError

BASE_DELAY = 0.1
"""Seconds of the first backoff (before jitter)."""
MAX_DELAY = 2.0
"""Cap of one backoff: a failover must not sleep long on one throttled call."""
T = TypeVar("T")

MIN_ATTEMPT_TIME = 0.05
"""Below this many seconds left, a further attempt is pointless: give up with the last error."""


class Verdict(enum.Enum):
    """What to do with a failed call."""

    RETRY = "retry"
    """Throttling, 5xx, a timeout or a dropped connection: try again after a backoff."""
    FAIL = "fail"
    """Anything else (bad request, permission denied, not found where it matters): stop now."""


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the monotonic clock by which an operation must be done."""

    at: float

    @classmethod
    def after(cls, seconds: float, now: float | None = None) -> Deadline:
        return cls((time.monotonic() if now is None else now) + seconds)

    def remaining(self, now: float | None = None) -> float:
        return self.at - (time.monotonic() if now is None else now)

    def expired(self, now: float | None = None) -> bool:
        return self.remaining(now) <= 0

    def bound(self, seconds: float, now: float | None = None) -> float:
        """`seconds`, shortened to what is left (at least a small positive value for a socket timeout)."""
        return max(0.01, min(seconds, self.remaining(now)))


_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "safekit_cloud_deadline", default=None
)
DEFAULT_DEADLINE = 30.0
"""Seconds, when no operation set a deadline (a call from a test or a tool)."""


def current_deadline() -> Deadline:
    deadline = _DEADLINE.get()
    return deadline if deadline is not None else Deadline.after(DEFAULT_DEADLINE)


@contextmanager
def deadline_scope(seconds: float) -> Iterator[Deadline]:
    """Sets the deadline of everything called inside (unless an outer, earlier deadline exists)."""
    proposed = Deadline.after(seconds)
    outer = _DEADLINE.get()
    chosen = outer if outer is not None and outer.at < proposed.at else proposed
    token = _DEADLINE.set(chosen)
    try:
        yield chosen
    finally:
        _DEADLINE.reset(token)


def backoff_delay(
    attempt: int, rng: random.Random | Callable[[], float], base: float = BASE_DELAY, cap: float = MAX_DELAY
) -> float:
    """Seconds to sleep before retry number `attempt` (1, 2, ...): "full jitter", uniform in
    [0, min(cap, base * 2**(attempt-1))], so that two nodes throttled together do not retry in step."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    draw = rng.random() if isinstance(rng, random.Random) else rng()
    return ceiling * draw


@dataclass
class CallRecord:
    """One cloud API call as made: for the call count of a failover (bench) and for the test that
    every action used is declared in `permissions`."""

    action: str
    """`ec2:ReplaceRoute`, `Microsoft.Network/routeTables/routes/write`, `compute.routes.insert`."""
    mutating: bool
    attempts: int
    ok: bool


def call_with_retry(
    action: str,
    work: Callable[[float], T],
    classify: Callable[[BaseException], Verdict],
    *,
    attempt_timeout: float,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """Runs `work(timeout)` until it succeeds, a FAIL verdict, or the current deadline; returns
    (result, attempts). Blocking: called in a worker thread. `timeout` given to `work` is the time
    one attempt may take, already cut to the deadline."""
    deadline = current_deadline()
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
    attempt = 0
    while True:
        attempt += 1
        try:
            return work(deadline.bound(attempt_timeout)), attempt
        except Exception as exc:
            if classify(exc) is Verdict.FAIL:
                raise
            delay = backoff_delay(attempt, rng)
            if deadline.remaining() < delay + MIN_ATTEMPT_TIME:
                raise VipError(
                    f"{action}: still failing after {attempt} attempts when the time bound ran out: {exc}"
                ) from exc
            sleep(delay)
