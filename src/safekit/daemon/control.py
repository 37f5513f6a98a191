"""The control socket: how `safekit` commands reach the local safekitd.

A Unix stream socket only root can open (mode 0600 in a 0700 directory). One request per
connection: a JSON object on one line, answered by a JSON object on one line. The daemon side
hands each request to a callback; the client side is `request()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = Path("/run/safekit/safekitd.sock")
MAX_REQUEST = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(Exception):
    """The daemon could not be reached or answered with an error."""


def socket_path() -> Path:
    return Path(os.environ.get("SAFEKIT_SOCKET", str(DEFAULT_SOCKET)))


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                request = json.loads(line[:MAX_REQUEST])
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                response: dict[str, Any] = {"ok": False, "error": f"malformed request: {exc}"}
            else:
                response = await handler(request)
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    old_umask = os.umask(0o077)
    try:
        server = await asyncio.start_unix_server(on_connect, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    return server


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
