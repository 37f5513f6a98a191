"""The kernel's link notifications, so that `<intf>` checkers see a cable pulled when it happens.

An interface checker polls every `interval` (10 s by default, SafeKit's): a cable pulled on the
primary's VIP network would otherwise be seen up to 10 s late, and a node that keeps its role
meanwhile holds its clients' writes and delays the failover (ADR 0077, ADR 0079). The kernel
announces every change of a link (administrative state, carrier, an interface added or removed) to
the `RTMGRP_LINK` multicast group of rtnetlink; one socket per daemon listens there and wakes the
interface checkers, which then probe at once. The poll stays: it is the backstop for a missed
notification.

Only that a link changed is used, not what the message says: the probe reads the state as before
(/sys/class/net, or a netlink dump for an unnamed interface), so a notification cannot make a
checker report something the probe would not. A socket buffer that overflowed (ENOBUFS: notifications
were lost) wakes the checkers as well. Idle, the socket costs nothing: the kernel sends only on a
change, and the event loop waits on it with the other sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from safekit.aio import within

RTMGRP_LINK = 0x1
"""rtnetlink's multicast group of link changes (RTM_NEWLINK, RTM_DELLINK), linux/rtnetlink.h."""

SETTLE = 0.05
"""A woken checker waits this long before it probes: a link change comes as a burst of messages
(state, then carrier, then the operational state), and this also bounds how often a flapping link
makes a checker probe (at most 1 / SETTLE per second on top of the poll)."""

log = logging.getLogger(__name__)


def link_socket() -> socket.socket:
    """A non-blocking rtnetlink socket in the link changes' group."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, RTMGRP_LINK))
    except OSError:
        sock.close()
        raise
    return sock


class LinkEvents:
    """One rtnetlink socket subscribed to link changes, shared by every interface checker of the
    daemon. The socket is opened with the first subscriber and closed after the last one."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._subscribers: set[asyncio.Event] = set()
        self._unavailable: str | None = None

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def subscribe(self) -> asyncio.Event | None:
        """An event set at each link change of this host (the caller clears it), or None when the
        kernel's notifications cannot be had (said once): the caller then only polls."""
        if self._sock is None and not self._open():
            return None
        wake = asyncio.Event()
        self._subscribers.add(wake)
        return wake

    def unsubscribe(self, wake: asyncio.Event | None) -> None:
        if wake is None:
            return
        self._subscribers.discard(wake)
        if not self._subscribers:
            self.close()

    def notify(self) -> None:
        """Wake every subscriber: a link changed (or notifications were lost)."""
        for wake in self._subscribers:
            wake.set()

    def _open(self) -> bool:
        try:
            sock = link_socket()
        except OSError as exc:
            self._say_unavailable(str(exc))
            return False
        try:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)
        except OSError as exc:
            sock.close()
            self._say_unavailable(str(exc))
            return False
        self._sock = sock
        self._unavailable = None
        return True

    def _say_unavailable(self, why: str) -> None:
        if why != self._unavailable:
            log.warning(
                "link notifications unavailable (%s): interface checkers see a link change at their "
                "next poll only",
                why,
            )
        self._unavailable = why

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        changed = False
        while True:
            try:
                if not sock.recv(65536):
                    break
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ENOBUFS: the kernel dropped notifications; something changed
                changed = True
                break
            changed = True
        if changed:
            self.notify()

    def close(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None


async def pause(interval: float, wake: asyncio.Event | None) -> None:
    """Wait `interval` seconds, or less when `wake` is set meanwhile (then SETTLE more, for the
    rest of the burst); the caller clears `wake` before its next probe."""
    if wake is None:
        await asyncio.sleep(interval)
        return
    try:
        await within(wake.wait(), interval)
    except TimeoutError:
        return
    await asyncio.sleep(SETTLE)
