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

from safekit.aio import within

DEFAULT_PORT = 9010
_READY_PATH = re.compile(r"^/var/modules/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})/ready\.txt$")
_MAX_HEADER = 8192

ReadyQuery = Callable[[str], bool | None]
"""module name -> True (ready), False (not ready), None (no such module)."""


async def serve(
    host: str, port: int, ready: ReadyQuery, registry: CollectorRegistry
) -> asyncio.AbstractServer:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, status, ctype, body = await within(_answer(reader, ready, registry), 5)
            except (ValueError, asyncio.LimitOverrunError):  # a line longer than the limit
                method, status, ctype, body = (
                    "GET",
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    b"too large\n",
                )
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            # A HEAD answer has the headers of the GET answer and no content (RFC 9110 9.3.2).
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(on_connect, host=host, port=port, limit=_MAX_HEADER, reuse_address=True)


async def _answer(
    reader: asyncio.StreamReader, ready: ReadyQuery, registry: CollectorRegistry
) -> tuple[str, str, str, bytes]:
    """(method, status, content type, body) for one request."""
    request_line = (await reader.readline()).decode("latin-1").strip()
    while (await reader.readline()).strip():  # headers are not needed
        pass
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "GET", "400 Bad Request", "text/plain", b"bad request\n"
    method, target = parts[0], parts[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return method, "405 Method Not Allowed", "text/plain", b"only GET\n"
    if target == "/metrics":
        return method, "200 OK", CONTENT_TYPE_LATEST, generate_latest(registry)
    match = _READY_PATH.match(target)
    if match:
        state = ready(match.group(1))
        if state:
            return method, "200 OK", "text/plain", b"ready\n"
        return (
            method,
            "404 Not Found",
            "text/plain",
            (b"not ready\n" if state is False else b"no such module\n"),
        )
    return method, "404 Not Found", "text/plain", b"not found\n"
