"""A worker thread blocked for good must not keep a stopped daemon running."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from safekit.daemon import workers

BLOCKED_DAEMON = textwrap.dedent(
    """
    import asyncio, logging, sys, threading
    from safekit.daemon import workers

    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    forever = threading.Event()

    def stuck_in_the_kernel():  # stands for a read of /proc/PID/cmdline on a dead FUSE mount
        forever.wait()

    async def run():
        asyncio.get_running_loop().set_default_executor(workers.BoundedExecutor(grace=0.5))
        task = asyncio.create_task(asyncio.to_thread(stuck_in_the_kernel))
        await asyncio.sleep(0.1)
        task.cancel()
        return 0

    code = asyncio.run(run())
    workers.exit_now_if_blocked(code)
    print("a normal exit would join the blocked worker forever", flush=True)
    """
)


def test_a_blocked_worker_is_logged_and_the_daemon_still_exits() -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_DAEMON], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert time.monotonic() - began < 20
    assert "1 worker thread(s) blocked in the kernel" in done.stderr
    assert "stuck_in_the_kernel" in done.stderr  # where it blocks, for the operator
    assert "normal exit" not in done.stdout


def test_without_blocked_workers_the_exit_is_the_normal_one() -> None:
    executor = workers.BoundedExecutor(grace=1.0)
    assert executor.submit(sum, [1, 2]).result() == 3
    executor.shutdown(wait=True)
    assert workers.blocked_workers() == []
    workers.exit_now_if_blocked(0)  # returns: nothing to wait for
