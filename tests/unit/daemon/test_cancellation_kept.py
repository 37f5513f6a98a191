"""A module's loops end when the daemon cancels them, even when an event arrives at that moment.

CI saw safekitd still running 60 s after SIGTERM with its module stopped: the module's event loop
took its next event through `asyncio.wait_for`, which on Python 3.11 returns the event and drops a
cancellation that arrives as the event does (ADR 0069); the shutdown then waited on it for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from safekit.aio import within
from safekit.daemon.module_executor import end_tasks, next_item


async def _event_loop(queue: asyncio.Queue[int], seen: list[int]) -> None:
    while True:  # as a module's event loop: the next event, else a tick at the deadline
        seen.append(await next_item(queue, None, lambda now: -1))


def test_the_event_loop_ends_when_cancelled_as_an_event_arrives() -> None:
    async def scenario() -> bool:
        queue: asyncio.Queue[int] = asyncio.Queue()
        seen: list[int] = []
        task = asyncio.create_task(_event_loop(queue, seen))
        await asyncio.sleep(0.01)  # the loop waits on the queue
        queue.put_nowait(1)  # the event and the cancellation in the same turn of the loop
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        task.cancel()
        return bool(done) and task.cancelled()

    assert asyncio.run(scenario()), "the cancelled event loop kept running"


def test_a_wait_bounded_by_within_ends_when_cancelled_as_its_wakeup_comes() -> None:
    async def scenario() -> bool:
        wake = asyncio.Event()

        async def witness_loop() -> None:
            while True:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await within(wake.wait(), 5.0)

        task = asyncio.create_task(witness_loop())
        await asyncio.sleep(0.01)
        wake.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        task.cancel()
        return bool(done)

    assert asyncio.run(scenario())


def test_within_times_out_and_cancels_what_it_waited_for() -> None:
    async def scenario() -> tuple[bool, bool]:
        cancelled = asyncio.Event()

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        timed_out = False
        try:
            await within(slow(), 0.05)
        except TimeoutError:
            timed_out = True
        return timed_out, cancelled.is_set()

    assert asyncio.run(scenario()) == (True, True)


def test_within_returns_the_result_and_none_means_no_bound() -> None:
    async def scenario() -> tuple[int, int]:
        async def answer() -> int:
            await asyncio.sleep(0.01)
            return 42

        return await within(answer(), 1.0), await within(answer(), None)

    assert asyncio.run(scenario()) == (42, 42)


def test_end_tasks_never_hangs_on_a_task_that_refuses_to_end(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[bool, bool]:
        released = asyncio.Event()

        async def stubborn() -> None:
            while not released.is_set():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    continue  # swallows every cancellation until released

        polite = asyncio.create_task(asyncio.sleep(10), name="polite")
        refusing = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0.01)
        await end_tasks([refusing, polite], logging.getLogger("test.end_tasks"), grace=0.2)
        result = (polite.cancelled(), refusing.done())
        released.set()
        refusing.cancel()  # wakes it from its sleep: it sees the release and returns
        await refusing
        return result

    with caplog.at_level(logging.ERROR, logger="test.end_tasks"):
        assert asyncio.run(scenario()) == (True, False)
    assert "task stubborn did not end 0.2 s after it was cancelled" in caplog.text
