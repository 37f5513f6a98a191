"""The child process that renders the console's forms (`python -m safekit.api.forms`).

pydantic and the template library cost safekitd about 10 MiB once imported, for good; the forms
are used for minutes a year. So they run in a child started on the first request, asked one JSON
line at a time (one request at a time), and ended after `IDLE` seconds without a request: its
memory is given back. A child that dies or hangs is replaced on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

from safekit.aio import within

log = logging.getLogger("safekit.api")

IDLE = 300.0
TIMEOUT = 30.0
LIMIT = 16 * 1024 * 1024
"""Longest answer line (a module's package, base64)."""


class FormWorkerError(Exception):
    """The worker could not answer (it could not start, died, or took too long)."""


class FormWorker:
    def __init__(self, idle: float = IDLE, timeout: float = TIMEOUT) -> None:
        self.idle = idle
        self.timeout = timeout
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._idle_timer: asyncio.TimerHandle | None = None

    async def ask(self, op: str, data: Any = None, **more: Any) -> dict[str, Any]:
        async with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            try:
                return await within(self._exchange({"op": op, "data": data, **more}), self.timeout)
            except (TimeoutError, OSError, ValueError, FormWorkerError) as exc:
                await self._end()
                raise FormWorkerError(
                    f"the form renderer did not answer: {exc or type(exc).__name__}"
                ) from exc
            finally:
                self._idle_timer = asyncio.get_running_loop().call_later(
                    self.idle, lambda: asyncio.ensure_future(self.close())
                )

    async def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        process = self._process
        if process is None or process.returncode is not None:
            process = self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "safekit.api.forms",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LIMIT,
            )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(request).encode() + b"\n")
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise FormWorkerError("it exited")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise FormWorkerError("not a JSON object")
        return answer

    async def close(self) -> None:
        async with self._lock:
            await self._end()

    async def _end(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await within(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.debug("form renderer ended")
