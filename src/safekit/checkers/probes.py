"""Bounded-time probes. Each answers True (up) or False (down); an unexpected error raises, and
the checker counts it as a failed probe (down), logged once (checker_tasks.run_checker)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from pathlib import Path

from pyroute2 import IPRoute

from safekit.aio import within
from safekit.vip.arp import choose_interface


async def tcp(address: str, port: int, timeout: float) -> bool:
    """Up when a TCP connection to address:port completes within `timeout` seconds."""
    try:
        _, writer = await within(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def ping(address: str, timeout: float) -> bool:
    """Up when one ICMP echo to `address` is answered within `timeout` seconds (iputils ping)."""
    ipaddress.ip_address(address)  # refuse anything that is not an address before it reaches argv
    wait_s = max(1, round(timeout))
    proc = await asyncio.create_subprocess_exec(
        "ping",
        "-n",
        "-q",
        "-c",
        "1",
        "-W",
        str(wait_s),
        address,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await within(proc.wait(), timeout + 1) == 0
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False


async def ping_any(addresses: list[str], timeout: float) -> bool:
    """Up when at least one of the addresses answers (a witness may have several)."""
    if not addresses:
        return False
    results = await asyncio.gather(*(ping(a, timeout) for a in addresses))
    return any(results)


def interface_up(name: str, sys_class_net: Path = Path("/sys/class/net")) -> bool:
    """Up when the interface exists, is administratively up and has carrier."""
    base = sys_class_net / name
    try:
        operstate = (base / "operstate").read_text(encoding="ascii").strip()
        carrier = (base / "carrier").read_text(encoding="ascii").strip()
    except OSError:  # missing interface, or carrier unreadable while the link is down
        return False
    return carrier == "1" and operstate in ("up", "unknown")


def interface_carrying_up(address: str) -> bool:
    """Up when the interface whose connected network contains `address` (IPv4; the one a VIP with
    no interface name is placed on) is up with carrier. No such interface, or several, raises
    VipError with what was found (the checker logs it and counts it down)."""
    with IPRoute() as ipr:
        links = {int(msg["index"]): msg for msg in ipr.get_links()}
        names = {index: str(msg.get_attr("IFLA_IFNAME")) for index, msg in links.items()}
        networks = [
            (names[int(msg["index"])], ipaddress.IPv4Interface(f"{ip}/{int(msg['prefixlen'])}"))
            for msg in ipr.get_addr(family=socket.AF_INET)
            if int(msg["index"]) in names
            and (ip := msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")) is not None
        ]
    name, _ = choose_interface(ipaddress.IPv4Address(address), networks)
    link = next(msg for index, msg in links.items() if names[index] == name)
    # the link's state from the same netlink dump (as /sys/class/net shows it: operstate, carrier)
    return link.get_attr("IFLA_CARRIER") == 1 and link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN")


def address_present(address: str) -> bool:
    """Up when `address` (an IP address, or a host name as SafeKit's `<ip><to addr>` allows: any
    of its addresses) is configured on an interface of this host (netlink). A name that does not
    resolve is down, not an error that would end the checker."""
    wanted = _addresses(address)
    if not wanted:
        return False
    with IPRoute() as ipr:
        return any(msg.get_attr("IFA_ADDRESS") in wanted for msg in ipr.get_addr())


def _addresses(address: str) -> set[str]:
    try:
        return {str(ipaddress.ip_address(address))}
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {str(ipaddress.ip_address(str(info[4][0]).partition("%")[0])) for info in found}
