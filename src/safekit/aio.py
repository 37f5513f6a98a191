"""asyncio helpers that keep a task's cancellation (ADR 0069).

`asyncio.wait_for` on Python 3.11 (Debian 12's) loses a cancellation that arrives just as the
awaited thing completes (CPython gh-86296, fixed in 3.12): it returns the result and the cancelled
task runs on. A loop around it - a module's event loop taking its next event, the witness loop
waiting for a wake-up - then never ends, and the daemon's shutdown, which cancels the module's
tasks and waits for them, waits for ever (seen in CI: safekitd still running 60 s after SIGTERM,
its module stopped). `within` bounds a wait with `asyncio.timeout`, which raises the cancellation.
`make lint` bans `asyncio.wait_for` in src/ (ruff TID251).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`await awaitable`, or TimeoutError after `timeout` seconds (None: no bound).

    On the timeout the awaitable is cancelled (a coroutine, or the task or future awaited), as
    `asyncio.wait_for` does; a cancellation of the calling task always propagates."""
    async with asyncio.timeout(timeout):
        return await awaitable
