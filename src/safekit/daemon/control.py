"""The control socket: how `safekit` commands reach the local safekitd.

A Unix stream socket only root can open (mode 0600 in a 0700 directory). One request per
connection: a JSON object on one line, answered by a JSON object on one line. The daemon side
hands each request to a callback; the client side is `request()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from safekit.daemon.paths import Paths

MAX_REQUEST = 64 * 1024

log = logging.getLogger("safekit.daemon")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(Exception):
    """The daemon could not be reached or answered with an error."""


def socket_path() -> Path:
    """Where the daemon listens: `SAFEKIT_SOCKET`, else `safekitd.sock` in `SAFEKIT_RUN` (/run/safekit)."""
    explicit = os.environ.get("SAFEKIT_SOCKET")
    return Path(explicit) if explicit else Paths.from_env().socket


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
        line = await asyncio.wait_for(reader.readline(), 10)
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


def request(payload: dict[str, Any], path: Path | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the local daemon and return its answer (blocking; for the CLI)."""
    path = path or socket_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except FileNotFoundError as exc:
        raise ControlError(f"safekitd is not running (no control socket at {path})") from exc
    except PermissionError as exc:
        raise ControlError(f"{path}: permission denied (safekit commands need root)") from exc
    except ConnectionRefusedError as exc:
        raise ControlError(f"safekitd is not running (nothing listens on {path})") from exc
    except TimeoutError as exc:
        raise ControlError(f"safekitd did not answer within {timeout:g} s") from exc
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ControlError(f"safekitd sent a malformed answer: {exc}") from exc
    if not isinstance(answer, dict):
        raise ControlError("safekitd sent a malformed answer")
    return answer
