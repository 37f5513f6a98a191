"""The SIGUSR1 state dump: an operator sees where each task waits and where each thread blocks."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

import pytest

from safekit.daemon import diagnostics


async def waits_for_the_peer(event: asyncio.Event) -> None:
    await event.wait()


def test_a_pending_task_shows_the_coroutine_it_waits_in() -> None:
    async def scenario() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(waits_for_the_peer(event), name="peer-wait")
        await asyncio.sleep(0)
        text = diagnostics.describe_tasks({task})
        event.set()
        await task
        return text

    text = asyncio.run(scenario())
    assert "task peer-wait (pending):" in text
    assert "waits_for_the_peer" in text and "await event.wait()" in text


def test_a_blocked_thread_shows_where_it_blocks() -> None:
    release = threading.Event()

    def blocked_in_a_worker() -> None:
        release.wait()

    worker = threading.Thread(target=blocked_in_a_worker, name="rfs-worker")
    worker.start()
    try:
        text = diagnostics.describe_threads()
    finally:
        release.set()
        worker.join()
    assert "thread rfs-worker" in text and "blocked_in_a_worker" in text


def test_sigusr1_logs_the_dump_and_the_loop_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, diagnostics.dump_state)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(100):
                if any("state dump" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
            return 42
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    with caplog.at_level(logging.WARNING, logger="safekit.daemon.diagnostics"):
        assert asyncio.run(scenario()) == 42
    dump = next(r.getMessage() for r in caplog.records if "state dump" in r.getMessage())
    assert "task " in dump and "scenario" in dump and "thread MainThread" in dump
