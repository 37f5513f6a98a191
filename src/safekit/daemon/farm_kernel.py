"""What a farm module asks of the node's kernel besides the VIP: its nftables rules and sysctls.

The rules themselves are built, pure, by `safekit.farm.nft`; this module loads them (`nft -j -f -`,
one transaction per change, so no packet ever sees half a ruleset), lists them, and writes the
sysctls the rules rely on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path

from safekit.farm.nft import Json
from safekit.vip.arp import ArpProvider, mac_bytes
from safekit.vip.provider import OwnerView, VipProvider, VipSpec

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
    """Load `payload` with `nft -j -f -` (one transaction: all of it or nothing)."""
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
        _, err = await asyncio.wait_for(proc.communicate(json.dumps(payload).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NftError(f"{NFT} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise NftError(f"{NFT} refused the farm rules: {err.decode(errors='replace').strip()[:500]}")


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

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self._quiet = True

    @classmethod
    def for_farm(cls, address: ipaddress.IPv4Address, interface: str | None) -> DirectedVip:
        spec = VipSpec(address, prefixlen=32, interface=interface or None, garp_count=3, garp_interval=0.2)
        return cls(spec)

    async def _announce(self, interface: str, mac: bytes) -> None:
        if not self._quiet:
            await super()._announce(interface, mac)

    async def announce(self) -> None:
        """Tell every client the VIP is at this node's MAC (a burst of gratuitous ARP)."""
        link = await self.interface()
        if link.mac is None:
            return
        self._quiet = False
        try:
            await super()._announce(link.name, mac_bytes(link.mac))
        finally:
            self._quiet = True

    async def _other_owners(self, timeout: float) -> OwnerView:
        # Every serving farm node holds the address: the others are the farm, not a conflict.
        return await VipProvider._other_owners(self, timeout)


async def list_table(table: str, family: str = "ip") -> Json:
    """`nft -j list table FAMILY TABLE` (what is loaded now), for `state -v` and tests."""
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
