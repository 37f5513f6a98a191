"""Bounded log files: the module logs and the scripts' user logs rotate by size, as safekitd.log
does (daemon/logsetup.py), so a node's /var/log never fills with them.

`rotate_if_larger` is for files written by other processes (a script's output goes straight to the
user log: no Python handler sits between): it is called before each script starts.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MAX_BYTES = 10 * 1024 * 1024
"""Size at which a log file is rotated (the same default as safekitd.log)."""
BACKUPS = 5
"""Rotated files kept: FILE.1 (newest) .. FILE.5."""


def rotate_if_larger(path: Path, max_bytes: int | None = None, backups: int | None = None) -> bool:
    """Rotate `path` to `path.1` (shifting older ones, dropping the oldest) when it has reached
    `max_bytes` (default MAX_BYTES; BACKUPS kept). Returns whether it rotated. A missing file is
    nothing to rotate."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    backups = BACKUPS if backups is None else backups
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size < max_bytes:
        return False
    if backups <= 0:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
    return True
