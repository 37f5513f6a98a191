"""The client end of safekitd's control socket: how `safekit` commands reach the local safekitd.

A Unix stream socket only root can open (mode 0600 in a 0700 directory). One request per
connection: a JSON object on one line, answered by a JSON object on one line. The daemon's end is
`safekit.daemon.control`; this end is `request()`, for the command line and the API's CLI.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from safekit.host.paths import Paths


class ControlError(Exception):
    """The daemon could not be reached or answered with an error."""


def socket_path() -> Path:
    """Where the daemon listens: `SAFEKIT_SOCKET`, else `safekitd.sock` in `SAFEKIT_RUN` (/run/safekit)."""
    explicit = os.environ.get("SAFEKIT_SOCKET")
    return Path(explicit) if explicit else Paths.from_env().socket


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
