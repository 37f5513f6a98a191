"""Ethernet frames that carry an IPv4 ARP packet, built byte by byte (pure).

The one ARP frame builder of the engine: the gratuitous ARP of the `arp` provider
(`arp.garp_frame`), the farm's vMAC announcement (`vmac.VmacProvider`, through `garp_frame`) and
the owner probe (`owner.probe_frame`) are all `arp_frame` with their own fields.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ETH_HEADER = 14
ARP_BODY = 28
ETH_MIN_FRAME = 60
"""Ethernet's minimum frame without the FCS: short frames are padded here, because not every driver
pads what an AF_PACKET socket hands it."""


def arp_frame(  # noqa: PLR0917 - the fields of an ARP packet, in the order they travel
    op: int,
    sender_mac: bytes,
    sender_ip: ipaddress.IPv4Address,
    target_mac: bytes,
    target_ip: ipaddress.IPv4Address,
    ethernet_source: bytes,
) -> bytes:
    """An Ethernet broadcast frame (no FCS, padded to 60 bytes) carrying one IPv4-over-Ethernet ARP
    packet. The callers check their MACs are 6 bytes and raise their own errors; this one only
    asserts it."""
    assert len(sender_mac) == len(target_mac) == len(ethernet_source) == 6
    ethernet = BROADCAST_MAC + ethernet_source + struct.pack("!H", ETH_P_ARP)
    arp = (
        struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, op)
        + sender_mac
        + sender_ip.packed
        + target_mac
        + target_ip.packed
    )
    return (ethernet + arp).ljust(ETH_MIN_FRAME, b"\x00")
