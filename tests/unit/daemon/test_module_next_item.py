"""A module's single task takes what has already arrived before a deadline that passed meanwhile
(daemon/module_executor.next_item). Found by the 100-round chaos run: a takeover step that started the
replication process for 1.2 s on a loaded host let the arbitrator lease's deadline pass while its
renewals waited in the queue; the tick went first and fenced a healthy new primary."""

from __future__ import annotations

import asyncio
import time

from safekit.daemon.module_executor import next_item


def test_queued_events_come_before_an_overdue_tick() -> None:
    async def scenario() -> list[object]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        queue.put_nowait("renewal 1")
        queue.put_nowait("renewal 2")
        overdue = time.monotonic() - 0.5
        got = [await next_item(queue, overdue, lambda now: ("tick", now)) for _ in range(3)]
        return got

    got = asyncio.run(scenario())
    assert got[:2] == ["renewal 1", "renewal 2"]
    assert isinstance(got[2], tuple) and got[2][0] == "tick"


def test_it_waits_for_an_event_until_the_deadline_then_ticks() -> None:
    async def scenario() -> tuple[object, object]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, queue.put_nowait, "heartbeat")
        first = await next_item(queue, time.monotonic() + 5, lambda now: "tick")
        second = await next_item(queue, time.monotonic() + 0.05, lambda now: "tick")
        return first, second

    assert asyncio.run(scenario()) == ("heartbeat", "tick")


def test_without_a_deadline_it_waits_for_the_next_event() -> None:
    async def scenario() -> object:
        queue: asyncio.Queue[object] = asyncio.Queue()
        asyncio.get_running_loop().call_later(0.05, queue.put_nowait, "command")
        return await next_item(queue, None, lambda now: "tick")

    assert asyncio.run(scenario()) == "command"
