"""The replication process's side of its control channel: safekitd's commands, one JSON object
per line on stdin, decoded by `channel` (events go the other way with spec.emit)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

import trio

from safekit.rfs import channel

log = logging.getLogger("safekit.rfs.control")


async def commands() -> AsyncIterator[channel.Command]:
    """Each command as it arrives, until safekitd closes the channel (it stopped or died)."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buf = b""
    while data := await stdin.receive_some(4096):
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                yield channel.decode_command(line)
            except channel.ChannelError as exc:
                log.warning("unreadable command from safekitd (%s): %r", exc, line[:200])
        if len(buf) > channel.MAX_LINE:
            log.warning("a command line longer than %d bytes from safekitd: dropped", channel.MAX_LINE)
            buf = b""
    log.info("safekitd closed the control channel: stopping")
