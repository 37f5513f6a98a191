"""The health endpoint load balancers probe, and Prometheus metrics, on TCP 9010 (plain HTTP).

`GET /var/modules/AM/ready.txt` answers 200 only where module AM is ready to serve (a ready mirror
primary, PRIM or ALONE; a ready farm node, UP) and 404 otherwise, as SafeKit does; `GET /metrics`
is the Prometheus exposition. Nothing secret is served here. The REST API and console (HTTPS,
tokens) are a separate server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

DEFAULT_PORT = 9010
_READY_PATH = re.compile(r"^/var/modules/([A-Za-z0-9_.-]{1,64})/ready\.txt$")
_MAX_HEADER = 8192

ReadyQuery = Callable[[str], bool | None]
"""module name -> True (ready), False (not ready), None (no such module)."""


async def serve(
    host: str, port: int, ready: ReadyQuery, registry: CollectorRegistry
) -> asyncio.AbstractServer:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await asyncio.wait_for(_answer(reader, ready, registry), 5)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(on_connect, host=host, port=port, limit=_MAX_HEADER, reuse_address=True)


async def _answer(
    reader: asyncio.StreamReader, ready: ReadyQuery, registry: CollectorRegistry
) -> tuple[str, str, bytes]:
    request_line = (await reader.readline()).decode("latin-1").strip()
    while (await reader.readline()).strip():  # headers are not needed
        pass
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "400 Bad Request", "text/plain", b"bad request\n"
    method, target = parts[0], parts[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", "text/plain", b"only GET\n"
    if target == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest(registry)
    match = _READY_PATH.match(target)
    if match:
        state = ready(match.group(1))
        if state:
            return "200 OK", "text/plain", b"ready\n"
        return "404 Not Found", "text/plain", (b"not ready\n" if state is False else b"no such module\n")
    return "404 Not Found", "text/plain", b"not found\n"
