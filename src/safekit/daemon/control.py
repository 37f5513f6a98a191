"""The daemon's end of the control socket: how `safekit` commands reach the local safekitd.

A Unix stream socket only root can open (mode 0600 in a 0700 directory). One request per
connection: a JSON object on one line, answered by a JSON object on one line. The daemon side
hands each request to a callback; the client side is `safekit.host.control_client.request()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from safekit.aio import within

MAX_REQUEST = 64 * 1024

log = logging.getLogger("safekit.daemon")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await _answer(reader, handler)
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(on_connect, path=str(path), limit=MAX_REQUEST)
    # Only root may command the daemon: the socket is 0600 whatever the directory allows.
    path.chmod(0o600)
    return server


async def _answer(reader: asyncio.StreamReader, handler: Handler) -> dict[str, Any]:
    try:
        line = await within(reader.readline(), 10)
    except ValueError:  # longer than MAX_REQUEST
        return {"ok": False, "error": f"request too large (at most {MAX_REQUEST} bytes)"}
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return {"ok": False, "error": f"malformed request: {exc}"}
    try:
        return await handler(request)
    except Exception as exc:  # the caller gets an answer whatever went wrong; the log has the trace
        log.exception("control request %r failed", request.get("cmd"))
        return {
            "ok": False,
            "error": f"internal error in safekitd: {exc} (see /var/log/safekit/safekitd.log)",
        }
