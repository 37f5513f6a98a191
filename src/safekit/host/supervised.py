"""Running as a plain supervised process (hosts without systemd): pidfile and detaching.

Shared by `safekitd --daemon --pidfile` and `safekit arbiter serve --daemon --pidfile`.
"""

from __future__ import annotations

import os
from pathlib import Path


def running_pid(pidfile: Path) -> int | None:
    """The PID recorded in `pidfile` if that process runs, else None."""
    try:
        pid = int(pidfile.read_text(encoding="ascii").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def daemonize() -> None:
    """Detach from the terminal: double fork, new session, cwd /, standard streams on /dev/null."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
