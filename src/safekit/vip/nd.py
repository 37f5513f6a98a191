"""IPv6 neighbour discovery for VIPs: the unsolicited neighbour advertisement and the owner probe's
neighbour solicitation, built byte by byte, received frames parsed (pure), and a burst sent from an
AF_PACKET socket.

IPv6's gratuitous ARP is an unsolicited neighbour advertisement (RFC 4861, 7.2.6) to all nodes
(`ff02::1`) with the Override flag: a client that has an entry for the VIP replaces its MAC with
the one the advertisement names (Linux creates no entry from it: `accept_untracked_na` is off by
default, so a client without an entry asks - a neighbour solicitation - and the farm's rules decide
who answers). A farm sends it when it joins (`vmac_invisible`: the virtual MAC, from the real MAC)
and when members left (`vmac_directed`: the announcing node's own MAC); the `arp` provider sends it
when a mirror's IPv6 VIP is acquired (the interface's MAC).

The owner probe's question (`solicitation_frame`) is a neighbour solicitation for the VIP to its
solicited-node multicast group, from the prober's link-local address with its MAC in the source
link-layer option: the holder answers with a solicited advertisement unicast to the prober, so no
client sees the answer or changes an entry. Without a usable link-local address it is the
duplicate address detection form (source `::`, no option), which the holder answers to all nodes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import socket
import struct
from dataclasses import dataclass

ETH_P_IPV6 = 0x86DD
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_NODES_MAC = bytes.fromhex("333300000001")
ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_HOP_LIMIT = 255
"""Receivers drop neighbour discovery that crossed a router: it must arrive with hop limit 255."""
OVERRIDE = 0x20000000
SOLICITED = 0x40000000
ROUTER = 0x80000000
SOURCE_LINK_LAYER = 1
TARGET_LINK_LAYER = 2
UNSPECIFIED = ipaddress.IPv6Address("::")
ETH_HEADER = 14
IPV6_HEADER = 40
ND_BODY = 24
"""ICMPv6 header (4), flags or reserved (4), target (16): the part both messages share."""
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
SO_ATTACH_FILTER = 26
ND_FILTER = (
    # Classic BPF: keep IPv6 frames whose next header is ICMPv6 and type 135 or 136, drop the rest
    # (a probe's socket bound to ETH_P_IPV6 would otherwise copy every IPv6 frame of the link).
    (0x28, 0, 0, 12),  # ldh [12]           EtherType
    (0x15, 0, 6, ETH_P_IPV6),  # jne -> drop
    (0x30, 0, 0, 20),  # ldb [20]           next header
    (0x15, 0, 4, 58),  # jne ICMPv6 -> drop
    (0x30, 0, 0, 54),  # ldb [54]           ICMPv6 type
    (0x35, 0, 2, 135),  # jlt 135 -> drop
    (0x25, 1, 0, 136),  # jgt 136 -> drop
    (0x06, 0, 0, 0xFFFF),  # ret: keep
    (0x06, 0, 0, 0),  # ret: drop
)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF ^ total


def solicited_node(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """`ff02::1:ffXX:XXXX`, the multicast group a holder of `address` listens to (RFC 4291, 2.7.1)."""
    return ipaddress.IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + address.packed[13:])


def multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    """The Ethernet address of an IPv6 multicast group: 33:33 and its last 4 bytes (RFC 2464, 7)."""
    return b"\x33\x33" + group.packed[12:]


def _icmp6(
    kind: int, source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, body: bytes
) -> bytes:
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", 4 + len(body), ICMPV6)
    checksum = _checksum(pseudo + struct.pack("!BBH", kind, 0, 0) + body)
    return struct.pack("!BBH", kind, 0, checksum) + body


def _ipv6_frame(
    destination_mac: bytes,
    source_mac: bytes,
    source: ipaddress.IPv6Address,
    destination: ipaddress.IPv6Address,
    icmp: bytes,
) -> bytes:
    ipv6 = struct.pack("!IHBB", 6 << 28, len(icmp), ICMPV6, ND_HOP_LIMIT) + source.packed + destination.packed
    return destination_mac + source_mac + struct.pack("!H", ETH_P_IPV6) + ipv6 + icmp


def solicitation_frame(
    target: ipaddress.IPv6Address, mac: bytes, source: ipaddress.IPv6Address = UNSPECIFIED
) -> bytes:
    """A neighbour solicitation asking who has `target`, from `mac`, to `target`'s solicited-node
    group. `source` a link-local address of the prober: with the source link-layer option, the
    holder answers unicast; `::` (duplicate address detection form, no option): to all nodes."""
    assert len(mac) == 6
    group = solicited_node(target)
    option = b"" if source.is_unspecified else bytes([SOURCE_LINK_LAYER, 1]) + mac
    icmp = _icmp6(ND_NEIGHBOR_SOLICIT, source, group, bytes(4) + target.packed + option)
    return _ipv6_frame(multicast_mac(group), mac, source, group, icmp)


def advertisement_frame(
    target: ipaddress.IPv6Address, lladdr: bytes, ethernet_source: bytes, source: ipaddress.IPv6Address
) -> bytes:
    """An Ethernet frame to all nodes carrying an unsolicited neighbour advertisement: `target` is at
    `lladdr` (Override set, Solicited and Router clear), sent from `source` and `ethernet_source`."""
    assert len(lladdr) == len(ethernet_source) == 6
    body = struct.pack("!I", OVERRIDE) + target.packed + bytes([TARGET_LINK_LAYER, 1]) + lladdr
    icmp = _icmp6(ND_NEIGHBOR_ADVERT, source, ALL_NODES, body)
    return _ipv6_frame(ALL_NODES_MAC, ethernet_source, source, ALL_NODES, icmp)


@dataclass(frozen=True)
class NdPacket:
    """The fields of one received neighbour solicitation or advertisement that the owner probe
    looks at (MACs as 6 bytes)."""

    kind: int
    """ND_NEIGHBOR_SOLICIT or ND_NEIGHBOR_ADVERT."""
    ethernet_source: bytes
    source: ipaddress.IPv6Address
    target: ipaddress.IPv6Address
    lladdr: bytes | None
    """The link-layer option: the source's (solicitation) or the target's (advertisement)."""
    flags: int = 0


def parse_nd_frame(frame: bytes) -> NdPacket | None:  # noqa: PLR0911 - one None per way a frame is not ND
    """The neighbour solicitation or advertisement in an Ethernet frame, or None for anything else
    (never raises): another EtherType or next header (extension headers included: neighbour
    discovery carries none), a hop limit other than 255 (it crossed a router: RFC 4861 7.1), another
    ICMPv6 type or a code other than 0, a truncated message, a malformed option."""
    if len(frame) < ETH_HEADER + IPV6_HEADER + ND_BODY:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_IPV6 or frame[ETH_HEADER] >> 4 != 6:
        return None
    payload_length, next_header, hop_limit = struct.unpack_from("!HBB", frame, ETH_HEADER + 4)
    if next_header != ICMPV6 or hop_limit != ND_HOP_LIMIT or payload_length < ND_BODY:
        return None
    start = ETH_HEADER + IPV6_HEADER
    message = frame[start : start + payload_length]
    if len(message) != payload_length:
        return None
    kind, code = message[0], message[1]
    if kind not in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT) or code != 0:
        return None
    wanted = SOURCE_LINK_LAYER if kind == ND_NEIGHBOR_SOLICIT else TARGET_LINK_LAYER
    lladdr: bytes | None = None
    options = message[ND_BODY:]
    while options:
        if len(options) < 8 or options[1] == 0 or len(options) < options[1] * 8:
            return None  # RFC 4861 4.6: an option of length 0 (or cut short) voids the message
        if options[0] == wanted and options[1] == 1:
            lladdr = options[2:8]
        options = options[options[1] * 8 :]
    return NdPacket(
        kind=kind,
        ethernet_source=frame[6:12],
        source=ipaddress.IPv6Address(frame[ETH_HEADER + 8 : ETH_HEADER + 24]),
        target=ipaddress.IPv6Address(message[8:24]),
        lladdr=lladdr,
        flags=int.from_bytes(message[4:8], "big"),
    )


def link_local_source(if_inet6: str, interface: str) -> ipaddress.IPv6Address:
    """The owner probe's source on `interface`, from `/proc/net/if_inet6`'s text: a link-local
    address that is neither tentative nor failed duplicate address detection, else `::`."""
    for line in if_inet6.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != interface:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            flags = int(fields[4], 16)
        except ValueError:
            continue
        if address.is_link_local and not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            return address
    return UNSPECIFIED


def attach_nd_filter(sock: socket.socket) -> None:
    """Let only neighbour solicitations and advertisements reach `sock` (a packet socket)."""
    program = b"".join(struct.pack("HBBI", *insn) for insn in ND_FILTER)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(ND_FILTER), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


async def send_frames(interface: str, frames: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6)) as sock:
        sock.setblocking(False)
        sock.bind((interface, ETH_P_IPV6))
        for frame in frames:
            await loop.sock_sendall(sock, frame)
