"""IPv6 neighbour discovery for farm VIPs: the unsolicited neighbour advertisement, built byte by
byte (pure), and its burst from an AF_PACKET socket.

IPv6's gratuitous ARP is an unsolicited neighbour advertisement (RFC 4861, 7.2.6) to all nodes
(`ff02::1`) with the Override flag: a client that has an entry for the VIP replaces its MAC with
the one the advertisement names (Linux creates no entry from it: `accept_untracked_na` is off by
default, so a client without an entry asks - a neighbour solicitation - and the farm's rules decide
who answers). A farm sends it when it joins (`vmac_invisible`: the virtual MAC, from the real MAC)
and when members left (`vmac_directed`: the announcing node's own MAC).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

ETH_P_IPV6 = 0x86DD
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_NODES_MAC = bytes.fromhex("333300000001")
ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_HOP_LIMIT = 255
"""Receivers drop neighbour discovery that crossed a router: it must arrive with hop limit 255."""
OVERRIDE = 0x20000000
TARGET_LINK_LAYER = 2


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF ^ total


def advertisement_frame(
    target: ipaddress.IPv6Address, lladdr: bytes, ethernet_source: bytes, source: ipaddress.IPv6Address
) -> bytes:
    """An Ethernet frame to all nodes carrying an unsolicited neighbour advertisement: `target` is at
    `lladdr` (Override set, Solicited and Router clear), sent from `source` and `ethernet_source`."""
    assert len(lladdr) == len(ethernet_source) == 6
    body = struct.pack("!I", OVERRIDE) + target.packed + bytes([TARGET_LINK_LAYER, 1]) + lladdr
    pseudo = source.packed + ALL_NODES.packed + struct.pack("!I3xB", 4 + len(body), ICMPV6)
    checksum = _checksum(pseudo + struct.pack("!BBH", ND_NEIGHBOR_ADVERT, 0, 0) + body)
    icmp = struct.pack("!BBH", ND_NEIGHBOR_ADVERT, 0, checksum) + body
    ipv6 = struct.pack("!IHBB", 6 << 28, len(icmp), ICMPV6, ND_HOP_LIMIT) + source.packed + ALL_NODES.packed
    return ALL_NODES_MAC + ethernet_source + struct.pack("!H", ETH_P_IPV6) + ipv6 + icmp


async def send_frames(interface: str, frames: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6)) as sock:
        sock.setblocking(False)
        sock.bind((interface, ETH_P_IPV6))
        for frame in frames:
            await loop.sock_sendall(sock, frame)
