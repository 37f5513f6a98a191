"""The daemon runs a little ahead of the applications on the CPU; what it starts does not.

Heartbeats and the witness probe must leave on time on a loaded host (the jitter budget is 20 ms
p99), so safekitd raises its own priority (nice -5 by default, as the systemd unit does). Scripts
and custom checkers are the applications' business: they are started back at normal priority.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("safekit.daemon")


def raise_own_priority(niceness: int) -> None:
    """Set this process's nice value (a negative value needs root); a failure is only logged."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError as exc:
        log.warning("cannot set safekitd's priority to nice %d: %s", niceness, exc.strerror)


def at_normal_priority(argv: list[str]) -> list[str]:
    """`argv` prefixed so that it runs at nice 0 whatever safekitd's own nice value is."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current >= 0:
        return argv
    return ["nice", "-n", str(-current), *argv]
