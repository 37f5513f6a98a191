"""The `arp` VIP provider: a virtual IP on a LAN, held as a secondary address and announced with
gratuitous ARP.

Owns: choosing the interface (the one whose connected network contains the address), adding and
removing the address with netlink (pyroute2's asyncio API, in the current network namespace), the
gratuitous ARP frames (`frames.arp_frame`) and their burst from an AF_PACKET socket, and the
held / not held / degraded verdict. The pure parts (frames, interface choice, label, verdict) are
plain functions so they can be tested without root.

Gratuitous ARP form: by default an ARP *request* with sender IP = target IP = the VIP, sender MAC =
the interface's MAC, target MAC zero, to the Ethernet broadcast: what the Linux kernel itself sends
(`arp_notify`, `arping -U`) and RFC 5227 calls an ARP Announcement. Linux peers update an existing
cache entry from it whatever their `arp_accept`, and with `arp_accept=1` also create a missing one.
The option `garp_form=reply` sends the reply form (target MAC = sender MAC, as `arping -A`), and
`garp_form=both` sends both, for old devices that only listen to one of them.

Lifetime (option `lifetime=SECONDS`): the address is added with that valid and preferred lifetime,
and `renew()` (called by the daemon about every second while it serves) sets it back to full. If
safekitd dies or hangs, nobody renews it and the kernel deletes the address by itself a lifetime
later, so a dead daemon's VIP does not linger next to the new primary's. Without the option the
address is permanent, as before.

Who else holds the VIP (`other_owners`): an ARP probe on the interface acquire would use (owner.py).

IPv6 (ADR 0059): the same provider holds an IPv6 VIP by neighbour discovery. The address is added
without duplicate address detection (`nodad`: the takeover must not wait a second for DAD, and a
holder still answering is the owner probe's question, asked before), *deprecated* (preferred
lifetime 0: connections the node opens itself never take the VIP as their source, as an IPv4
secondary address never does; clients' connections to it are served as usual), with no label (IPv6
addresses have none); the announcement is an unsolicited neighbour advertisement to all nodes with
the Override flag (`nd.advertisement_frame`), three rounds as for ARP; the owner probe is a
neighbour solicitation (owner.py). `garp_form` is for ARP and refused on an IPv6 VIP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from safekit.vip import nd
from safekit.vip.frames import ARP_REPLY, ARP_REQUEST, ETH_P_ARP, ZERO_MAC, arp_frame
from safekit.vip.owner import probe_plan, probe_vip_owners
from safekit.vip.provider import (
    IPAddress,
    OwnerView,
    VipCheck,
    VipError,
    VipProvider,
    VipSpec,
    VipState,
    max_prefix,
)

DEFAULT_RENEW_TIMEOUT = 0.5
"""Seconds a renew may take: it is called about every second, and one netlink round trip is enough."""

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
LABEL_SUFFIX = ":sk"
IFNAMSIZ = 16

GarpForm = Literal["request", "reply", "both"]
GARP_FORMS: tuple[GarpForm, ...] = ("request", "reply", "both")
OPTIONS = ("garp_form", "lifetime")
MIN_LIFETIME = 2
"""Seconds; the kernel checks lifetimes on a timer of about one second, so less means nothing."""
MAX_LIFETIME = 86400
FOREVER = 0xFFFFFFFF
"""IFA_CACHEINFO's "no lifetime" (`valid_lft forever`)."""
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


# ----------------------------------------------------------------------------- pure parts
def mac_bytes(mac: str) -> bytes:
    """`02:5b:c6:12:00:01` -> 6 bytes."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise VipError(f"{mac!r} is not an Ethernet MAC address")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise VipError(f"{mac!r} is not an Ethernet MAC address") from None


def garp_frame(
    mac: bytes, address: ipaddress.IPv4Address, op: int = ARP_REQUEST, *, ethernet_source: bytes | None = None
) -> bytes:
    """One gratuitous ARP Ethernet frame (no FCS) announcing that `address` is at `mac`.

    Request: target MAC zero (RFC 5227 announcement, the kernel's own form). Reply: target MAC =
    sender MAC, which Linux requires before it treats a reply as gratuitous. Both go to broadcast.
    The Ethernet source is `mac` too, unless `ethernet_source` is given: a farm announces its
    shared virtual MAC from the node's real one (`vip/vmac.py`), so switches never learn the vMAC.
    """
    source = mac if ethernet_source is None else ethernet_source
    for value in (mac, source):
        if len(value) != 6:
            raise VipError(f"a MAC address has 6 bytes, not {len(value)}")
    if op not in (ARP_REQUEST, ARP_REPLY):
        raise VipError(f"ARP operation {op} is neither a request (1) nor a reply (2)")
    return arp_frame(op, mac, address, ZERO_MAC if op == ARP_REQUEST else mac, address, source)


def garp_frames(mac: bytes, address: ipaddress.IPv4Address, form: GarpForm = "request") -> list[bytes]:
    """The frames of one round of a burst, in the order they are sent."""
    ops = {"request": [ARP_REQUEST], "reply": [ARP_REPLY], "both": [ARP_REQUEST, ARP_REPLY]}[form]
    return [garp_frame(mac, address, op) for op in ops]


def alias_label(interface: str) -> str:
    """The address label, `eth0:sk`, so `ip addr` and ifconfig show the VIP as safekit's alias.

    Linux labels must start with the interface name and fit in 15 bytes; a name too long for the
    suffix keeps the plain interface name as its label.
    """
    label = interface + LABEL_SUFFIX
    return label if len(label) < IFNAMSIZ else interface


def choose_interface(address: IPAddress, networks: Iterable[tuple[str, IPInterface]]) -> tuple[str, int]:
    """The interface whose connected network contains `address`, and that network's prefix length.

    `networks` are the node's (interface, address/prefix) pairs. The VIP's own entries are ignored,
    so the choice is the same whether this node holds the VIP or not, and so are the other
    family's networks. Two interfaces on networks that contain the address is ambiguous: the
    configuration must name one.
    """
    matches: dict[str, int] = {}
    seen: list[str] = []
    for name, iface in networks:
        if iface.version != address.version or iface.ip == address:
            continue
        seen.append(f"{name} {iface.network}")
        if address in iface.network:
            # The narrowest network on an interface is the one the kernel routes the VIP through.
            matches[name] = max(matches.get(name, 0), iface.network.prefixlen)
    if not matches:
        have = ", ".join(seen) or "none"
        raise VipError(
            f"no interface has a network that contains {address} (networks: {have}): "
            "name the interface in the configuration or pick an address in a connected network"
        )
    if len(matches) > 1:
        names = ", ".join(sorted(matches))
        raise VipError(
            f"{address} is in the networks of several interfaces ({names}): name one in the configuration"
        )
    ((name, prefixlen),) = matches.items()
    return name, prefixlen


@dataclass(frozen=True)
class Link:
    """What the provider needs to know about one network interface."""

    index: int
    name: str
    mac: str | None
    up: bool
    carrier: bool


@dataclass(frozen=True)
class Address:
    """One address configured on an interface (of the VIP's family)."""

    index: int
    interface: IPInterface
    label: str
    valid_lft: int | None = None
    """Seconds left before the kernel deletes it; None: forever (or not known)."""


def assess(address: IPAddress, interface: str, link: Link | None, present: bool) -> VipCheck:
    """The verdict of `check` from what the kernel shows."""
    if link is None:
        return VipCheck(VipState.NOT_HELD, f"interface {interface} does not exist")
    if not present:
        return VipCheck(VipState.NOT_HELD, f"{address} is not on {interface}")
    if not link.up:
        return VipCheck(
            VipState.DEGRADED, f"{address} is on {interface} but {interface} is down (ip link set up)"
        )
    if not link.carrier:
        return VipCheck(
            VipState.DEGRADED,
            f"{address} is on {interface} but {interface} has no carrier (cable or switch port)",
        )
    return VipCheck(VipState.HELD, f"{address} on {interface}")


async def _send_round(interface: str, frames: list[bytes], *, ipv6: bool = False) -> None:
    if ipv6:
        await nd.send_frames(interface, frames)
        return
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.setblocking(False)
        sock.bind((interface, ETH_P_ARP))
        for frame in frames:
            await loop.sock_sendall(sock, frame)


def lifetime_option(options: Mapping[str, str]) -> int | None:
    """The `lifetime` option in whole seconds, or None (the default: the address never expires)."""
    text = options.get("lifetime")
    if text is None or text.strip() in ("", "forever"):
        return None
    try:
        seconds = int(text.strip())
    except ValueError:
        raise VipError(f"arp provider: lifetime={text!r}: give whole seconds, or 'forever'") from None
    if not MIN_LIFETIME <= seconds <= MAX_LIFETIME:
        raise VipError(
            f"arp provider: lifetime={seconds}: give {MIN_LIFETIME} to {MAX_LIFETIME} seconds "
            "(renewed every second by the daemon; 5 is a good value), or 'forever'"
        )
    return seconds


def lifetime_arguments(lifetime: int | None, *, ipv6: bool = False) -> dict[str, int]:
    """The netlink arguments that give an address `lifetime` seconds (nothing: forever).

    IPv6: always a preferred lifetime of 0 (the address is deprecated: never chosen as the source
    of what the node sends itself) and the flag that skips duplicate address detection."""
    if ipv6:
        valid = FOREVER if lifetime is None else lifetime
        return {"valid_lft": valid, "preferred_lft": 0, "flags": nd.IFA_F_NODAD}
    if lifetime is None:
        return {}
    return {"valid_lft": lifetime, "preferred_lft": lifetime}


def garp_form_option(options: Mapping[str, str], *, ipv6: bool = False) -> GarpForm:
    """The `garp_form` option, after refusing options the arp provider does not know (and
    `garp_form` on an IPv6 VIP, announced by neighbour advertisements)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise VipError(
            f"arp provider: unknown option(s) {', '.join(unknown)}: known options are {', '.join(OPTIONS)}"
        )
    if ipv6 and "garp_form" in options:
        raise VipError(
            "arp provider: garp_form is for IPv4 (ARP): an IPv6 VIP is announced by unsolicited "
            "neighbour advertisements"
        )
    form = options.get("garp_form", "request")
    if form not in GARP_FORMS:
        raise VipError(f"arp provider: garp_form={form!r}: give one of {', '.join(GARP_FORMS)}")
    return form


# ----------------------------------------------------------------------------- netlink
async def _snapshot(ipr: Any, family: int = socket.AF_INET) -> tuple[list[Link], list[Address]]:
    links: list[Link] = []
    async for msg in await ipr.link("dump"):
        flags = int(msg["flags"])
        carrier = msg.get("carrier")
        links.append(
            Link(
                index=int(msg["index"]),
                name=str(msg.get("ifname")),
                mac=str(msg.get("address")) if msg.get("address") else None,
                up=bool(flags & IFF_UP),
                # IFLA_CARRIER where the kernel gives it, the LOWER_UP flag otherwise.
                carrier=bool(carrier) if carrier is not None else bool(flags & IFF_LOWER_UP),
            )
        )
    return links, await _address_dump(ipr, family)


def family_of(address: IPAddress) -> int:
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


async def _address_dump(ipr: Any, family: int = socket.AF_INET) -> list[Address]:
    """This host's addresses of one family (one netlink dump)."""
    addresses: list[Address] = []
    async for msg in await ipr.addr("dump", family=family):
        ip = msg.get("local") or msg.get("address")
        if ip is None:
            continue
        cacheinfo = msg.get("cacheinfo")
        valid = int(cacheinfo["ifa_valid"]) if cacheinfo is not None else FOREVER
        addresses.append(
            Address(
                index=int(msg["index"]),
                interface=ipaddress.ip_interface(f"{ip}/{int(msg['prefixlen'])}"),
                label=str(msg.get("label") or ""),
                valid_lft=None if valid == FOREVER else valid,
            )
        )
    return addresses


def _networks(links: Sequence[Link], addresses: Sequence[Address]) -> list[tuple[str, IPInterface]]:
    names = {link.index: link.name for link in links}
    return [(names[a.index], a.interface) for a in addresses if a.index in names]


class ArpProvider(VipProvider):
    """A VIP on a LAN: secondary address + gratuitous ARP. See the module docstring and docs/vip.md."""

    name = "arp"
    ipv6 = True
    sees_other_owners = True

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.is_ipv6 = spec.address.version == 6
        self.family = family_of(spec.address)
        self.garp_form = garp_form_option(spec.options, ipv6=self.is_ipv6)
        self.lifetime = lifetime_option(spec.options)
        self._held_index: int | None = None
        """The interface index acquire put (or found) the address on: what renew looks at."""
        self._burst: asyncio.Task[None] | None = None
        self._renew_route: AsyncIPRoute | None = None
        """The netlink socket renew keeps from one run to the next while the VIP is held (it runs
        every second: opening a socket each time was a third of its cost). Dropped after a run
        that fails or is abandoned, and at release."""

    # Resolution happens at each call, not at construction: interfaces and their addresses may
    # change while the daemon runs (a NIC renamed, a network added), and a call sees the present.
    def _place(self, links: Sequence[Link], addresses: Sequence[Address]) -> tuple[Link, int]:
        """The link to hold the VIP on and the prefix length to add it with."""
        by_name = {link.name: link for link in links}
        address = self.spec.address
        if self.spec.interface is not None:
            link = by_name.get(self.spec.interface)
            if link is None:
                raise VipError(
                    f"arp {address}: interface {self.spec.interface} does not exist on this node "
                    f"(interfaces: {', '.join(sorted(by_name))})"
                )
            connected = [
                a.interface.network.prefixlen
                for a in addresses
                if a.index == link.index and a.interface.ip != address and address in a.interface.network
            ]
            prefixlen = max(connected, default=max_prefix(address))
        else:
            name, prefixlen = choose_interface(address, _networks(links, addresses))
            link = by_name[name]
        if self.spec.prefixlen is not None:
            prefixlen = self.spec.prefixlen
        return link, prefixlen

    async def interface(self) -> Link:
        """The interface acquire would hold the VIP on now (VipError when there is none)."""
        async with AsyncIPRoute() as ipr:
            links, addresses = await _snapshot(ipr, self.family)
        return self._place(links, addresses)[0]

    async def _acquire(self) -> bool:
        address = self.spec.address
        async with AsyncIPRoute() as ipr:
            links, addresses = await _snapshot(ipr, self.family)
            link, prefixlen = self._place(links, addresses)
            changed = False
            present = [a for a in addresses if a.index == link.index and a.interface.ip == address]
            self._held_index = link.index
            if present and self.lifetime is not None:
                await self._refresh(ipr, link.index, link.name, present[0])
            if not present:
                try:
                    await ipr.addr(
                        "add",
                        index=link.index,
                        address=str(address),
                        prefixlen=prefixlen,
                        **self._add_arguments(link.name, prefixlen),
                    )
                    changed = True
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:  # added by someone else meanwhile: held all the same
                        raise VipError(f"arp {address}: adding it to {link.name} failed: {exc}") from exc
        if not link.up or not link.carrier:
            state = "is down" if not link.up else "has no carrier"
            raise VipError(
                f"arp {address}: added to {link.name} but {link.name} {state}: "
                "it cannot be announced or served until the link is back"
            )
        if link.mac is None:
            raise VipError(f"arp {address}: {link.name} has no MAC address: the arp provider needs Ethernet")
        await self._announce(link.name, mac_bytes(link.mac))
        return changed

    def _add_arguments(self, interface: str, prefixlen: int) -> dict[str, Any]:
        """What `acquire` adds the address with besides where: label and broadcast (IPv4), the
        lifetime (and IPv6's flags)."""
        extra: dict[str, Any] = lifetime_arguments(self.lifetime, ipv6=self.is_ipv6)
        if not self.is_ipv6:
            network = ipaddress.IPv4Interface(f"{self.spec.address}/{prefixlen}").network
            extra["label"] = alias_label(interface)
            if prefixlen < 31:
                extra["broadcast"] = str(network.broadcast_address)
        return extra

    async def _refresh(self, ipr: Any, index: int, name: str, entry: Address) -> None:
        """Set a held address's lifetime back to full (RTM_NEWADDR with NLM_F_REPLACE)."""
        try:
            await ipr.addr(
                "replace",
                index=index,
                address=str(entry.interface.ip),
                prefixlen=entry.interface.network.prefixlen,
                **lifetime_arguments(self.lifetime, ipv6=self.is_ipv6),
            )
        except NetlinkError as exc:
            raise VipError(f"arp {self.spec.address}: renewing its lifetime on {name} failed: {exc}") from exc

    async def renew(self, timeout: float = DEFAULT_RENEW_TIMEOUT) -> bool:
        """Keep a held VIP alive: set its lifetime back to full. True when held (and renewed).

        False when this node does not hold the address: renew never adds it, so a VIP that expired
        while safekitd was frozen stays gone (taking it again is `acquire`, the daemon's decision).
        Without the `lifetime` option there is nothing to renew: it only says whether it is held.
        Limit: IPv4 RTM_NEWADDR creates what it does not find, so an address expiring in the
        instant between the look and the replace would come back; the window is the length of
        one netlink round trip (well under a millisecond), against a lifetime of seconds.
        """
        return await self._bounded(self._renew, timeout, "renew")

    async def _renew(self) -> bool:
        ipr, self._renew_route = self._renew_route or AsyncIPRoute(), None
        try:
            held = await self._renew_with(ipr)
        except BaseException:  # a netlink error, or abandoned at the time bound: a fresh socket next time
            ipr.close()
            raise
        self._renew_route = ipr
        return held

    def close_renew_socket(self) -> None:
        """Close the socket renew keeps (at release, and when the renewing ends)."""
        ipr, self._renew_route = self._renew_route, None
        if ipr is not None:
            ipr.close()

    async def _renew_with(self, ipr: Any) -> bool:
        address = self.spec.address
        if self._held_index is None:  # not acquired by this process: where it would be
            links, addresses = await _snapshot(ipr, self.family)
            link, _ = self._place(links, addresses)
            index, name = link.index, link.name
        else:
            # Where acquire put it: the addresses alone (the renew runs every second, and the
            # renew was a third of the samples of an idle safekitd holding a VIP).
            index, name = self._held_index, f"interface index {self._held_index}"
            addresses = await _address_dump(ipr, self.family)
        present = [a for a in addresses if a.index == index and a.interface.ip == address]
        if not present:
            return False
        if self.lifetime is not None:
            await self._refresh(ipr, index, name, present[0])
        return True

    async def _announce(self, interface: str, mac: bytes) -> None:
        """Send the first gratuitous ARP round now and the rest of the burst in the background.

        Peers update their caches on the first round; the repeats are for frames lost on the way,
        and waiting for them would only delay the application's start after a failover.
        """
        self._stop_burst()
        if self.spec.garp_count == 0:
            return
        frames = self._frames(mac)
        await _send_round(interface, frames, ipv6=self.is_ipv6)
        if self.spec.garp_count > 1:
            self._burst = asyncio.create_task(self._repeat(interface, frames, self.spec.garp_count - 1))

    def _frames(self, mac: bytes) -> list[bytes]:
        """One round of the burst, from the interface's MAC `mac`."""
        address = self.spec.address
        if isinstance(address, ipaddress.IPv6Address):
            return [nd.advertisement_frame(address, mac, mac, address)]
        return garp_frames(mac, address, self.garp_form)

    def _gap(self, round_: int) -> float:
        """Seconds to wait before the repeat round `round_` (0: the first repeat)."""
        return self.spec.garp_interval

    async def _repeat(self, interface: str, frames: list[bytes], rounds: int) -> None:
        for round_ in range(rounds):
            await asyncio.sleep(self._gap(round_))
            try:
                await _send_round(interface, frames, ipv6=self.is_ipv6)
            except OSError:  # the link went away: release or the next acquire says what to do
                return

    async def settle(self) -> None:
        if self._burst is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._burst

    def _stop_burst(self) -> None:
        if self._burst is not None and not self._burst.done():
            self._burst.cancel()
        self._burst = None

    async def _release(self) -> bool:
        self._stop_burst()  # never announce an address this node no longer holds
        self._held_index = None
        self.close_renew_socket()
        address = self.spec.address
        changed = False
        async with AsyncIPRoute() as ipr:
            links, addresses = await _snapshot(ipr, self.family)
            names = {link.index: link.name for link in links}
            # A named interface: remove it there only. Otherwise from wherever it is, since the
            # interface auto-choice may differ from when it was acquired.
            held = [
                a
                for a in addresses
                if a.interface.ip == address
                and (self.spec.interface is None or names.get(a.index) == self.spec.interface)
            ]
            for entry in held:
                try:
                    await ipr.addr(
                        "del",
                        index=entry.index,
                        address=str(address),
                        prefixlen=entry.interface.network.prefixlen,
                    )
                    changed = True
                except NetlinkError as exc:
                    if exc.code != errno.EADDRNOTAVAIL:  # removed by someone else meanwhile: released
                        where = names.get(entry.index, entry.index)
                        raise VipError(f"arp {address}: removing it from {where} failed: {exc}") from exc
        return changed

    async def _other_owners(self, timeout: float) -> OwnerView:
        """An ARP probe (IPv6: a neighbour solicitation) for the VIP on the interface acquire would
        hold it on (owner.py).

        Every MAC of this node is excluded, so a VIP this node itself still holds (on any of its
        interfaces) is not reported as another holder.
        """
        address = self.spec.address
        async with AsyncIPRoute() as ipr:
            links, addresses = await _snapshot(ipr, self.family)
        link, _ = self._place(links, addresses)
        if not link.up or not link.carrier:
            state = "is down" if not link.up else "has no carrier"
            detail = f"arp {address}: {link.name} {state}: cannot probe for other holders"
            return OwnerView(False, detail=detail)
        attempts, interval, wait = probe_plan(timeout)
        probe = await probe_vip_owners(
            link.name,
            address,
            attempts=attempts,
            interval=interval,
            wait=wait,
            exclude_macs={lk.mac for lk in links if lk.mac is not None},
        )
        return OwnerView(probe.error is None, probe.owners, f"arp {probe.summary()}")

    async def _check(self) -> VipCheck:
        address = self.spec.address
        async with AsyncIPRoute() as ipr:
            links, addresses = await _snapshot(ipr, self.family)
        by_index = {link.index: link for link in links}
        holders = [by_index[a.index] for a in addresses if a.interface.ip == address and a.index in by_index]
        if self.spec.interface is not None:
            link = next((lk for lk in links if lk.name == self.spec.interface), None)
            return assess(address, self.spec.interface, link, link is not None and link in holders)
        if holders:
            return assess(address, holders[0].name, holders[0], True)
        try:
            name, _ = choose_interface(address, _networks(links, addresses))
        except VipError as exc:
            return VipCheck(VipState.NOT_HELD, str(exc))
        return assess(address, name, next(lk for lk in links if lk.name == name), False)
