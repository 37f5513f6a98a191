"""The daemon's worker threads (`asyncio.to_thread`), which must never keep it from exiting.

A worker can block in the kernel for good: reading /proc/PID/cmdline of a process stuck on a dead
FUSE mount, a stat on such a mount. Python's default executor is joined without a time limit when
the event loop closes, and again at interpreter exit, so one such thread would keep a stopped
daemon running forever (and its pidfile, so a new one refuses to start). Here the executor waits a
bounded time for its threads; `exit_now_if_blocked` then ends the process, after the modules were
stopped, and logs where each blocked thread is.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

THREAD_PREFIX = "safekitd-worker"
JOIN_GRACE = 5.0
"""Seconds the stopping daemon waits for busy workers (they run short, bounded calls)."""


class BoundedExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose `shutdown(wait=True)` waits at most `grace` seconds."""

    def __init__(self, grace: float = JOIN_GRACE) -> None:
        super().__init__(thread_name_prefix=THREAD_PREFIX)
        self.grace = grace

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)
        if wait:
            deadline = time.monotonic() + self.grace
            for thread in list(self._threads):
                thread.join(max(0.0, deadline - time.monotonic()))


def blocked_workers() -> list[threading.Thread]:
    """Worker threads still alive (after the executor's shutdown: blocked ones)."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


def describe(threads: list[threading.Thread]) -> str:
    frames = sys._current_frames()
    parts = []
    for thread in threads:
        frame = frames.get(thread.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (no frame)\n"
        parts.append(f"thread {thread.name}:\n{stack}")
    return "".join(parts)


def exit_now_if_blocked(code: int) -> None:
    """If workers are still blocked, log where and end the process now with `code` (a normal exit
    would join them forever); otherwise return."""
    blocked = blocked_workers()
    if not blocked:
        return
    log.error(
        "%d worker thread(s) blocked in the kernel: exiting without them (the modules are stopped)\n%s",
        len(blocked),
        describe(blocked),
    )
    logging.shutdown()
    os._exit(code)
