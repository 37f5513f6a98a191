"""The replication process's side of its control channel: safekitd's commands, one JSON object
per line on stdin (events go the other way with spec.emit)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import trio

log = logging.getLogger("safekit.rfs.control")


async def commands() -> AsyncIterator[dict[str, Any]]:
    """Each command as it arrives, until safekitd closes the channel (it stopped or died)."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buf = b""
    while data := await stdin.receive_some(4096):
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except (ValueError, RecursionError):
                log.warning("unreadable command from safekitd: %r", line[:200])
                continue
            if isinstance(msg, dict):
                yield msg
    log.info("safekitd closed the control channel: stopping")
