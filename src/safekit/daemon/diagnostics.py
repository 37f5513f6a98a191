"""What the daemon is doing right now, for an operator who thinks it hangs.

`kill -USR1 $(cat /run/safekitd.pid)` writes to the daemon's log the stack of every asyncio task
(where each one awaits) and of every thread (a worker thread blocked in a system call, e.g. on a
dead FUSE mount, shows there). It changes nothing in the daemon's behaviour.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import threading
import traceback

log = logging.getLogger(__name__)


def describe_tasks(tasks: set[asyncio.Task[object]] | None = None) -> str:
    """The stack of each task, sorted by name: what it is waiting for."""
    chosen = asyncio.all_tasks() if tasks is None else tasks
    out = io.StringIO()
    for task in sorted(chosen, key=lambda t: t.get_name()):
        out.write(f"task {task.get_name()} ({'done' if task.done() else 'pending'}):\n")
        frames = task.get_stack()
        if not frames:
            out.write("  (no frames)\n")
        for frame in frames:
            for line in traceback.format_stack(frame, limit=1):
                out.write(line)
    return out.getvalue()


def describe_threads() -> str:
    """The stack of each thread, by name (the event loop's own thread included)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    out = io.StringIO()
    for ident, frame in sorted(sys._current_frames().items()):
        out.write(f"thread {names.get(ident, '?')} ({ident}):\n")
        out.write("".join(traceback.format_stack(frame)))
    return out.getvalue()


def dump_state() -> None:
    """Log every task's and thread's stack (the SIGUSR1 handler)."""
    log.warning(
        "state dump on request (SIGUSR1): %d tasks, %d threads\n%s%s",
        len(asyncio.all_tasks()),
        threading.active_count(),
        describe_tasks(),
        describe_threads(),
    )
