"""What a farm module asks of the node's kernel besides the VIP: its nftables rules and sysctls.

The rules themselves are built, pure, by `safekit.farm.nft`; this module loads them (one JSON
transaction per change, so no packet ever sees half a ruleset: through libnftables inside this
process, `safekit.daemon.libnft`, or the `nft` program where the library is missing), lists them,
and writes the sysctls the rules rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from safekit.aio import within
from safekit.daemon import libnft
from safekit.farm.nft import Json, NdLink
from safekit.vip import nd
from safekit.vip.arp import ArpProvider, Link, mac_bytes
from safekit.vip.provider import DEFAULT_TIMEOUT, OwnerView, VipError, VipProvider, VipSpec

NFT = "nft"

SYSCTLS: dict[str, str] = {
    # Never announce the VIP with a real MAC in an ARP request this node sends.
    "net/ipv4/conf/all/arp_announce": "2",
    # A mid-stream TCP packet of a connection this node does not know stays INVALID (dropped by the
    # rules), instead of being picked up as a connection and answered with a reset.
    "net/netfilter/nf_conntrack_tcp_loose": "0",
}


class NftError(Exception):
    """nft refused the rules or could not run; the message carries what nft said."""


async def apply(payload: Json, timeout: float = 10.0) -> None:
    """Load `payload` (one transaction: all of it or nothing)."""
    await apply_text(json.dumps(payload), timeout)


async def apply_text(payload: str, timeout: float = 10.0) -> None:
    """`apply` of a ruleset already serialised (JSON text): through libnftables in this process
    (1-2 ms for a farm's ruleset), else `nft -j -f -` (20-130 ms, most of it the program's start)."""
    context = libnft.shared()
    if context is not None:
        try:
            result = await within(context.run_async(payload), timeout)
        except TimeoutError:
            raise NftError(f"libnftables did not answer within {timeout:g} s") from None
        if result.rc != 0:
            raise NftError(f"nftables refused the farm rules: {result.error.strip()[:500]}")
        return
    await _apply_with_program(payload, timeout)


async def _apply_with_program(payload: str, timeout: float) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            NFT,
            "-j",
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise NftError(f"cannot run {NFT}: {exc.strerror} (install the nftables package)") from exc
    try:
        _, err = await within(proc.communicate(payload.encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NftError(f"{NFT} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise NftError(f"{NFT} refused the farm rules: {err.decode(errors='replace').strip()[:500]}")


async def _ip_json(*argv: str) -> list[dict[str, object]]:
    """`ip -j ARGV` as JSON (an empty list when ip fails: an interface that does not exist)."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "-j", *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return []
    data: list[dict[str, object]] = json.loads(out or b"[]")
    return data


async def _ip(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    return proc.returncode or 0, err.decode(errors="replace").strip()


def _addr_info(links: list[dict[str, object]]) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for link in links:
        infos = link.get("addr_info", ())
        found += [dict(i) for i in infos if isinstance(i, dict)] if isinstance(infos, list) else []
    return found


async def nd_link(interface: str, vips: set[ipaddress.IPv6Address]) -> NdLink:
    """What the IPv6 neighbour discovery rules need of `interface`: its MAC, and this node's own
    IPv6 address on it (a global one outside `vips` first, else the link-local one)."""
    links = await _ip_json("link", "show", "dev", interface)
    mac = str(links[0].get("address", "")) if links else ""
    if not mac:
        raise NftError(f"interface {interface}: no MAC address (IPv6 VIPs need an Ethernet interface)")
    own: list[ipaddress.IPv6Address] = []
    for info in _addr_info(await _ip_json("-6", "addr", "show", "dev", interface)):
        address = ipaddress.IPv6Address(str(info.get("local")))
        if address not in vips and info.get("tentative") is not True:
            own.append(address)
    own.sort(key=lambda a: (a.is_link_local, a))
    return NdLink(mac, own[0] if own else None)


async def neighbour_macs(
    interface: str, addresses: dict[str, ipaddress.IPv4Address], wait: float = 1.0
) -> dict[str, str]:
    """The MAC of each node (by its IPv4 address on `interface`) from this node's neighbour table,
    which the farm's heartbeats keep filled; an address not there yet is resolved (a datagram to
    its discard port makes the kernel ask) for up to `wait` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    found: dict[str, str] = {}
    while True:
        table = {
            str(n.get("dst")): str(n.get("lladdr"))
            for n in await _ip_json("-4", "neigh", "show", "dev", interface)
            if n.get("lladdr") and "FAILED" not in str(n.get("state"))
        }
        found = {node: table[str(a)] for node, a in addresses.items() if str(a) in table}
        missing = [a for node, a in addresses.items() if node not in found]
        if not missing or loop.time() >= deadline:
            return found
        for address in missing:
            with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"", (str(address), 9))
        await asyncio.sleep(0.1)


@dataclass(frozen=True, slots=True)
class Ipv6Spec:
    address: ipaddress.IPv6Address
    interface: str | None


@dataclass(frozen=True, slots=True)
class Ipv6Link:
    name: str
    mac: str | None


class Ipv6FarmVip:
    """An IPv6 farm VIP (either mode): a /128 added without duplicate address detection (every
    serving node holds it), announced by unsolicited neighbour advertisements (`vip/nd.py`).

    `vmac` set (`vmac_invisible`): joining announces the virtual MAC, three rounds (0, 0.2, 0.6 s).
    `vmac` None (`vmac_directed`): nothing on joining; `announce` names this node's MAC after
    members left.
    """

    ROUNDS_GAPS = (0.0, 0.2, 0.4)

    def __init__(self, address: ipaddress.IPv6Address, interface: str | None, vmac: str | None) -> None:
        self.spec = Ipv6Spec(address, interface or None)
        self.vmac = vmac
        self._burst: asyncio.Task[None] | None = None
        self._link: Ipv6Link | None = None

    async def interface(self) -> Ipv6Link:
        """The configured interface, or the one with an IPv6 network that contains the VIP."""
        links = await _ip_json("-6", "addr", "show")
        for link in links:
            name = str(link.get("ifname"))
            if self.spec.interface is not None and name != self.spec.interface:
                continue
            networks = [
                ipaddress.IPv6Interface(f"{i.get('local')}/{i.get('prefixlen')}").network
                for i in _addr_info([link])
                if i.get("family") == "inet6"
            ]
            if self.spec.interface is not None or any(
                self.spec.address in n for n in networks if n.prefixlen < 128
            ):
                shown = await _ip_json("link", "show", "dev", name)
                mac = str(shown[0].get("address")) if shown and shown[0].get("address") else None
                return Ipv6Link(name, mac)
        where = self.spec.interface or "no interface has an IPv6 network that contains it"
        raise VipError(f"IPv6 VIP {self.spec.address}: {where} (is IPv6 enabled on the interface?)")

    async def _present(self, interface: str) -> bool:
        infos = _addr_info(await _ip_json("-6", "addr", "show", "dev", interface))
        return any(ipaddress.IPv6Address(str(i.get("local"))) == self.spec.address for i in infos)

    async def acquire(self) -> bool:
        link = self._link = await self.interface()
        if await self._present(link.name):
            return False
        code, err = await _ip("-6", "addr", "add", f"{self.spec.address}/128", "dev", link.name, "nodad")
        if code != 0:
            raise VipError(f"IPv6 VIP {self.spec.address} not added on {link.name}: {err}")
        if self.vmac is not None and link.mac is not None:
            self._start_burst(link, mac_bytes(self.vmac))
        return True

    async def release(self) -> bool:
        self._stop_burst()
        try:
            link = await self.interface()
        except VipError:
            return False
        if not await self._present(link.name):
            return False
        code, err = await _ip("-6", "addr", "del", f"{self.spec.address}/128", "dev", link.name)
        if code != 0:
            raise VipError(f"IPv6 VIP {self.spec.address} not removed from {link.name}: {err}")
        return True

    async def announce(self) -> None:
        """Tell every client the VIP is at this node's MAC (vmac_directed, after members left)."""
        link = self._link or await self.interface()
        if link.mac is not None:
            self._start_burst(link, mac_bytes(link.mac))

    def _start_burst(self, link: Ipv6Link, lladdr: bytes) -> None:
        assert link.mac is not None
        self._stop_burst()
        frame = nd.advertisement_frame(self.spec.address, lladdr, mac_bytes(link.mac), self.spec.address)
        self._burst = asyncio.create_task(self._rounds(link.name, frame))

    async def _rounds(self, interface: str, frame: bytes) -> None:
        for gap in self.ROUNDS_GAPS:
            await asyncio.sleep(gap)
            try:
                await nd.send_frames(interface, [frame])
            except OSError:
                return

    def _stop_burst(self) -> None:
        if self._burst is not None and not self._burst.done():
            self._burst.cancel()
        self._burst = None


async def interface_addresses(interface: str) -> set[ipaddress.IPv4Address]:
    """The IPv4 addresses configured on `interface` (`ip -j addr show dev IF`; empty if unknown)."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "-j", "-4", "addr", "show", "dev", interface,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return set()
    found: set[ipaddress.IPv4Address] = set()
    for link in json.loads(out or b"[]"):
        for info in link.get("addr_info", ()):
            if info.get("family") == "inet":
                found.add(ipaddress.IPv4Address(info["local"]))
    return found


class DirectedVip(ArpProvider):
    """A `vmac_directed` farm VIP: a /32 held with the node's own MAC on every serving node.

    It is never announced on joining (each node answers ARP only for its clients, by the farm's
    rules); `announce` sends one gratuitous ARP burst with this node's MAC when members left and
    their clients must find a node that serves (`farm.directed.takeover_announcer`).
    """

    name = "vmac_directed"
    ipv6 = False  # a farm's IPv6 VIP is `Ipv6FarmVip`

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self._quiet = True
        self._link: Link | None = None

    async def acquire(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        changed = await super().acquire(timeout)
        # Where the takeover announcement goes, resolved now: after a loss it must leave at once.
        self._link = await self.interface()
        return changed

    @classmethod
    def for_farm(cls, address: ipaddress.IPv4Address, interface: str | None) -> DirectedVip:
        spec = VipSpec(address, prefixlen=32, interface=interface or None, garp_count=3, garp_interval=0.2)
        return cls(spec)

    async def _announce(self, interface: str, mac: bytes) -> None:
        if not self._quiet:
            await super()._announce(interface, mac)

    async def announce(self) -> None:
        """Tell every client the VIP is at this node's MAC (a burst of gratuitous ARP)."""
        link = self._link or await self.interface()
        if link.mac is None:
            return
        self._quiet = False
        try:
            await super()._announce(link.name, mac_bytes(link.mac))
        finally:
            self._quiet = True

    sees_other_owners = False  # every serving farm node holds the address

    async def _other_owners(self, timeout: float) -> OwnerView:
        # Every serving farm node holds the address: the others are the farm, not a conflict.
        return await VipProvider._other_owners(self, timeout)


async def list_table(table: str, family: str = "ip") -> Json:
    """`nft -j list table FAMILY TABLE` (what is loaded now), for `state -v` and tests; {} when
    there is no such table."""
    context = libnft.shared()
    if context is not None:
        result = await context.run_async(f"list table {family} {table}")
        listed: Json = json.loads(result.output) if result.rc == 0 and result.output.strip() else {}
        return listed
    proc = await asyncio.create_subprocess_exec(
        NFT,
        "-j",
        "list",
        "table",
        family,
        table,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return {}
    data: Json = json.loads(out)
    return data


def set_sysctls(interfaces: Sequence[str], root: Path = Path("/proc/sys")) -> list[str]:
    """Write the farm's sysctls in this network namespace; returns the ones that failed."""
    failed: list[str] = []
    wanted = dict(SYSCTLS)
    for interface in interfaces:
        wanted[f"net/ipv4/conf/{interface}/arp_announce"] = "2"
    for key, value in wanted.items():
        try:
            (root / key).write_text(value)
        except OSError:
            failed.append(key.replace("/", "."))
    return failed
