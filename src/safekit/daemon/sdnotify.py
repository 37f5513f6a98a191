"""systemd's notification protocol (sd_notify), with the standard library only.

Under a `Type=notify` unit systemd passes NOTIFY_SOCKET (an AF_UNIX datagram socket, a path or an
abstract name written with a leading '@'); safekitd sends on it:

- `READY=1` once the node has started and the API listens (systemd then counts the service as
  started: `systemctl start` returns, units ordered after it start);
- `STOPPING=1` when it begins its graceful stop (the modules' stop scripts);
- `WATCHDOG=1` from its event loop every half of WATCHDOG_USEC: a loop that hangs stops the pings
  and systemd restarts the daemon (`WatchdogSec=` in the unit).

Without NOTIFY_SOCKET (lab hosts, containers, a shell) every call does nothing. The variables are
removed from the environment once read, so the scripts safekitd runs (and the applications they
start, which may speak the protocol themselves) never notify in safekitd's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

log = logging.getLogger("safekit.daemon")

ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | bytes | None:
    """The address to send to for a NOTIFY_SOCKET value: a path, or an abstract name ('@' -> NUL).

    None for values that are not AF_UNIX addresses (empty; `vsock:` ones are not supported)."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two WATCHDOG=1 (half of WATCHDOG_USEC, as sd_watchdog_enabled advises), or
    None when the watchdog is off or meant for another process (WATCHDOG_PID)."""
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid is not None and watchdog_pid.strip() != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


@dataclass
class Notifier:
    """Sends notifications to systemd; does nothing when `address` is None."""

    address: str | bytes | None = None
    watchdog: float | None = None
    """Seconds between two watchdog pings (None: no watchdog asked for)."""

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        address = socket_address(value)
        if value and address is None:
            log.warning("NOTIFY_SOCKET=%s is not an AF_UNIX socket: systemd is not notified", value)
        interval = watchdog_interval(env, os.getpid()) if address is not None else None
        if unset:
            for name in ENV_VARS:
                env.pop(name, None)
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `VAR=value` lines in one datagram; True when sent. A failure is logged, never raised:
        systemd gone must not stop the daemon."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("cannot notify systemd (%s): %s", " ".join(assignments), exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def ping(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping every `watchdog` seconds from the event loop, until cancelled. The ping is sent by
        the loop itself: if a callback blocks the loop, the pings stop and systemd steps in."""
        if self.address is None or self.watchdog is None:
            return
        log.info("systemd watchdog: a ping every %.1f s", self.watchdog)
        while True:
            self.ping()
            await asyncio.sleep(self.watchdog)

    def start_watchdog(self) -> asyncio.Task[None] | None:
        if self.address is None or self.watchdog is None:
            return None
        return asyncio.create_task(self.watchdog_loop(), name="sd-watchdog")

    @staticmethod
    async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
