"""Who answers for a virtual IP on its LAN, seen the way a client sees it: an ARP probe.

Before a secondary takes over, it must know that the primary has stopped serving the VIP *from the
clients' side* (docs/vip.md, "Who owns the VIP"). On a LAN the clients find the VIP's holder by
ARP, so the question "does anyone still hold it?" is asked the same way: broadcast an ARP request
for the VIP and listen for every host that claims it.

Owns:
- the probe frame (RFC 5227's "ARP Probe": sender IP 0.0.0.0, so no host on the LAN creates or
  updates a neighbour entry from it, target IP = the VIP, target MAC zero, to the broadcast);
- parsing received ARP frames without ever raising, and deciding which of them name a holder of
  the VIP: a reply for it, a gratuitous ARP (request or reply) announcing it, or any request whose
  sender IP is the VIP (the holder resolving someone else); and which are another host's probe for
  the same address (a node about to take it as well: reported, but it is not a holder);
- `probe_vip_owners`, the I/O: an `AF_PACKET` socket bound to one interface, a few probes a few
  tens of milliseconds apart, every ARP frame received until a short wait after the last probe,
  the whole bounded in time (0.11 s with the defaults). Failures (no such interface, no
  permission, link down) come back in `OwnerProbe.error`, never as an exception, so that the
  caller's decision sees "unknown" and can log why.

IPv6 (`nd.py`): the same question by neighbour discovery. The probe is a neighbour solicitation for
the VIP, from this node's link-local address (the holder answers it unicast, so no client hears the
answer), and a holder is any advertisement for the VIP or a solicitation sent from it; a
solicitation from `::` for the VIP is another host's duplicate address detection (a prober).

What it cannot see: a holder cut off from this node at layer 2 (a failed switch, a partition)
does not answer, exactly as it would not answer a client on this side. "Nobody answered" proves
that no host *reachable from here* holds the address; that is why the arbitrating witness exists.
A holder whose kernel does not answer ARP for it (arp_ignore=8, an address on lo with arp_ignore
on the LAN, a filter dropping ARP) is not seen either.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import socket
import struct
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from safekit.vip import nd
from safekit.vip.frames import (
    ARP_BODY,
    ARP_REPLY,
    ARP_REQUEST,
    ARPHRD_ETHER,
    ETH_HEADER,
    ETH_P_ARP,
    ETH_P_IP,
    ZERO_MAC,
    arp_frame,
)

UNSPECIFIED = ipaddress.IPv4Address(0)
"""0.0.0.0, the sender IP of an ARP probe."""
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IF_INET6 = "/proc/net/if_inet6"
PACKET_OUTGOING = 4
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_RUNNING = 0x40
"""Operationally up (RFC 2863), i.e. carrier: a packet socket "sends" on a link without carrier
without an error, and nobody can answer, so the probe checks it."""
"""`sockaddr_ll.sll_pkttype` of a frame this host sent (a packet socket sees those too)."""

DEFAULT_ATTEMPTS = 3
DEFAULT_INTERVAL = 0.03
DEFAULT_WAIT = 0.05
MAX_PROBE_TIME = 10.0
"""Refuse probe plans longer than this: the probe sits on a takeover's critical path."""


class ProbeSetupError(ValueError):
    """The caller asked for a probe that makes no sense (bad address, MAC or timing)."""


# ----------------------------------------------------------------------------- frames (pure)
def mac_text(mac: bytes) -> str:
    """6 bytes -> `02:5b:c6:12:00:01` (lower case, the form `ip link` prints)."""
    return ":".join(f"{b:02x}" for b in mac)


def normalise_mac(mac: str) -> str:
    """`02:5B:C6:12:00:01` or `02-5b-...` -> `02:5b:c6:12:00:01`; ProbeSetupError if it is not one."""
    parts = mac.strip().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ProbeSetupError(f"{mac!r} is not an Ethernet MAC address")
    try:
        return mac_text(bytes(int(p, 16) for p in parts))
    except ValueError:
        raise ProbeSetupError(f"{mac!r} is not an Ethernet MAC address") from None


def _check_probe_target(address: IPAddress) -> None:
    if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise ProbeSetupError(f"{address!r} is not an IP address")
    if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        raise ProbeSetupError(f"{address} cannot be probed: give a unicast address")


def probe_frame(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """One ARP Probe (RFC 5227 section 2.1.1) asking who has `address`, from `mac`, padded to 60 bytes.

    Sender IP 0.0.0.0: hosts that receive it learn nothing from it (Linux answers it and skips the
    neighbour update), so probing never moves a client's or a holder's cache.
    """
    if len(mac) != 6:
        raise ProbeSetupError(f"a MAC address has 6 bytes, not {len(mac)}")
    _check_probe_target(address)
    return arp_frame(ARP_REQUEST, mac, UNSPECIFIED, ZERO_MAC, address, mac)


@dataclass(frozen=True)
class ArpPacket:
    """The fields of one Ethernet/IPv4 ARP frame that the owner probe looks at."""

    op: int
    sender_mac: str
    sender_ip: ipaddress.IPv4Address
    target_mac: str
    target_ip: ipaddress.IPv4Address


def parse_arp_frame(frame: bytes) -> ArpPacket | None:
    """The ARP packet in an Ethernet frame, or None for anything else (never raises).

    None for: a short frame, another EtherType, an ARP for other hardware or protocol types (or
    lengths), an operation other than request and reply (RARP, InARP).
    """
    if len(frame) < ETH_HEADER + ARP_BODY:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, ETH_HEADER)
    if (htype, ptype, hlen, plen) != (ARPHRD_ETHER, ETH_P_IP, 6, 4) or op not in (ARP_REQUEST, ARP_REPLY):
        return None
    body = frame[ETH_HEADER + 8 : ETH_HEADER + ARP_BODY]
    return ArpPacket(
        op=op,
        sender_mac=mac_text(body[0:6]),
        sender_ip=ipaddress.IPv4Address(body[6:10]),
        target_mac=mac_text(body[10:16]),
        target_ip=ipaddress.IPv4Address(body[16:20]),
    )


def _unicast_mac(mac: str) -> bool:
    first = int(mac[:2], 16)
    return mac != mac_text(ZERO_MAC) and not first & 1


def claimed_owner(packet: ArpPacket, address: ipaddress.IPv4Address) -> str | None:
    """The MAC that `packet` says holds `address`, or None when it says nothing about that.

    A host claims an address whenever it uses it as its ARP sender IP: a reply to our probe, a
    gratuitous ARP (request or reply form), or a request it sends for another host from the VIP.
    A sender MAC that is zero, broadcast or multicast names no host and is ignored.
    """
    if packet.sender_ip != address or not _unicast_mac(packet.sender_mac):
        return None
    return packet.sender_mac


def claimed_owner_nd(packet: nd.NdPacket, address: ipaddress.IPv6Address) -> str | None:
    """The MAC that a neighbour discovery `packet` says holds `address`, or None.

    An advertisement for `address` (the answer to the probe, an unsolicited announcement) names
    the MAC of its target link-layer option, or its Ethernet source without one; a solicitation
    sent *from* `address` (the holder resolving another host) names its sender. Zero, broadcast
    and multicast MACs name no host.
    """
    answers = packet.kind == nd.ND_NEIGHBOR_ADVERT and packet.target == address
    asks_from = packet.kind == nd.ND_NEIGHBOR_SOLICIT and packet.source == address
    if not (answers or asks_from):
        return None
    mac = mac_text(packet.lladdr if packet.lladdr is not None else packet.ethernet_source)
    return mac if _unicast_mac(mac) else None


def conflicting_prober_nd(packet: nd.NdPacket, address: ipaddress.IPv6Address) -> str | None:
    """The MAC of another host doing duplicate address detection for `address` (a solicitation
    from `::`: a node about to take it as well), or None."""
    if packet.kind == nd.ND_NEIGHBOR_SOLICIT and packet.source.is_unspecified and packet.target == address:
        mac = mac_text(packet.ethernet_source)
        return mac if _unicast_mac(mac) else None
    return None


def conflicting_prober(packet: ArpPacket, address: ipaddress.IPv4Address) -> str | None:
    """The MAC of another host probing for `address` too (RFC 5227 probe: sender IP 0), or None."""
    if (
        packet.op == ARP_REQUEST
        and packet.sender_ip == UNSPECIFIED
        and packet.target_ip == address
        and _unicast_mac(packet.sender_mac)
    ):
        return packet.sender_mac
    return None


@dataclass
class OwnerSightings:
    """What the frames received during one probe say about `address` (pure: frames in, sets out).

    `excluded` are MACs that do not count as another holder: this node's own interface, and
    whatever the caller adds (other interfaces of this host on the same LAN).
    """

    address: IPAddress
    excluded: frozenset[str] = frozenset()
    owners: set[str] = field(default_factory=set)
    probers: set[str] = field(default_factory=set)
    frames: int = 0
    """ARP (IPv6: neighbour discovery) frames received from other hosts, whatever they were about."""

    def see(self, frame: bytes, pkttype: int = 0) -> bool:
        """Account for one received frame; True when it named a holder not seen before.

        Frames this host sent (PACKET_OUTGOING) are not evidence of anything.
        """
        if pkttype == PACKET_OUTGOING:
            return False
        prober, owner = self._read(frame)
        if prober is not None and prober not in self.excluded:
            self.probers.add(prober)
        if owner is None or owner in self.excluded or owner in self.owners:
            return False
        self.owners.add(owner)
        return True

    def _read(self, frame: bytes) -> tuple[str | None, str | None]:
        """(another prober's MAC, a holder's MAC) in `frame`, counted when it is ARP (or ND)."""
        if isinstance(self.address, ipaddress.IPv6Address):
            nd_packet = nd.parse_nd_frame(frame)
            if nd_packet is None:
                return None, None
            self.frames += 1
            return conflicting_prober_nd(nd_packet, self.address), claimed_owner_nd(nd_packet, self.address)
        packet = parse_arp_frame(frame)
        if packet is None:
            return None, None
        self.frames += 1
        return conflicting_prober(packet, self.address), claimed_owner(packet, self.address)


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class OwnerProbe:
    """The outcome of one probe: who answered for `address` on `interface`, how long it took.

    `error` set means the probe could not be made or finished (the owners then are what was seen
    before it failed, and prove nothing about absence).
    """

    interface: str
    address: IPAddress
    owners: frozenset[str] = frozenset()
    probers: frozenset[str] = frozenset()
    sent: int = 0
    frames: int = 0
    elapsed: float = 0.0
    error: str | None = None
    local_mac: str | None = None
    first_owner_after: float | None = None
    """Seconds from the start of the probe to the first frame naming another holder."""

    @property
    def nobody(self) -> bool:
        """True only when the probe ran to its end and no other host claimed the address."""
        return self.error is None and not self.owners

    def summary(self) -> str:
        """One line for a log or a terminal."""
        timing = f"{self.sent} probe(s), {self.elapsed * 1000:.0f} ms"
        if self.error is not None:
            return f"{self.address} on {self.interface}: probe failed: {self.error} ({timing})"
        if self.owners:
            who = ", ".join(sorted(self.owners))
            text = f"{self.address} on {self.interface}: answered by {who} ({timing})"
        else:
            text = f"{self.address} on {self.interface}: nobody answered ({timing})"
        if self.probers:
            text += f"; also probed for by {', '.join(sorted(self.probers))}"
        return text


def describe_socket_error(exc: OSError, interface: str) -> str:
    """A one-line reason a user can act on, from the OSError of a packet socket call."""
    if exc.errno in (errno.EPERM, errno.EACCES):
        return "no permission to open a packet socket: it needs CAP_NET_RAW (run as root, as safekitd does)"
    if exc.errno == errno.ENODEV:
        return f"interface {interface} does not exist in this network namespace"
    if exc.errno == errno.ENETDOWN:
        return f"interface {interface} is down"
    if exc.errno == errno.ENXIO:
        return f"interface {interface} has no carrier or went away"
    return f"packet socket on {interface}: {exc.strerror or exc}"


def link_problem(flags: int, interface: str) -> str | None:
    """Why a link with these interface flags cannot be probed on, or None when it can."""
    if not flags & IFF_UP:
        return f"interface {interface} is down"
    if not flags & IFF_RUNNING:
        return f"interface {interface} has no carrier (cable, switch port or peer down)"
    return None


def check_timing(attempts: int, interval: float, wait: float) -> None:
    """ProbeSetupError unless the plan is at least one probe, non-negative and bounded."""
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ProbeSetupError(f"attempts must be a whole number of probes >= 1, not {attempts!r}")
    for name, value in (("interval", interval), ("wait", wait)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ProbeSetupError(f"{name} must be a number of seconds >= 0, not {value!r}")
    if (attempts - 1) * interval + wait > MAX_PROBE_TIME:
        raise ProbeSetupError(
            f"a probe of {attempts} x {interval:g} s + {wait:g} s is longer than {MAX_PROBE_TIME:g} s"
        )


def probe_duration(attempts: int, interval: float, wait: float) -> float:
    """Seconds a probe listens, from the first frame sent to the end (without scheduling delays)."""
    return (attempts - 1) * interval + wait


def probe_plan(budget: float) -> tuple[int, float, float]:
    """(attempts, interval, wait) for a probe that must finish within `budget` seconds.

    The default plan when it fits with a third of the budget to spare (socket setup, a late
    wake-up on a busy host); otherwise the same plan scaled down (fewer milliseconds between
    probes and after the last, never fewer probes).
    """
    if not budget > 0:
        raise ProbeSetupError(f"a probe needs a positive time budget, not {budget!r}")
    full = probe_duration(DEFAULT_ATTEMPTS, DEFAULT_INTERVAL, DEFAULT_WAIT)
    room = budget * 2 / 3
    if room >= full:
        return DEFAULT_ATTEMPTS, DEFAULT_INTERVAL, DEFAULT_WAIT
    scale = room / full
    return DEFAULT_ATTEMPTS, DEFAULT_INTERVAL * scale, DEFAULT_WAIT * scale


# ----------------------------------------------------------------------------- I/O
def _open(interface: str, ipv6: bool = False) -> socket.socket:
    # Protocol 0 at creation: the socket receives nothing until it is bound to the interface, so
    # no frame of another interface slips in between socket() and bind().
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setblocking(False)
        if ipv6:
            nd.attach_nd_filter(sock)
        sock.bind((interface, nd.ETH_P_IPV6 if ipv6 else ETH_P_ARP))
    except BaseException:
        sock.close()
        raise
    return sock


def _link_flags(sock: socket.socket, interface: str) -> int:
    request = struct.pack("16sH", interface.encode(), 0)
    (flags,) = struct.unpack_from("16sH", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1:]
    return int(flags)


class _ProbeRun:
    """The state of one probe on an open socket: what was sent, what was seen, when."""

    def __init__(self, sock: socket.socket, interface: str, sightings: OwnerSightings, start: float) -> None:
        self.sock = sock
        self.interface = interface
        self.sightings = sightings
        self.start = start
        self.sent = 0
        self.first_owner: float | None = None
        self.error: str | None = None

    def drain(self) -> None:
        """Read every frame queued on the socket (the event loop calls it when it is readable)."""
        while self.error is None:
            try:
                frame, where = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error = describe_socket_error(exc, self.interface)
                return
            new_owner = self.sightings.see(frame, where[2] if len(where) > 2 else 0)
            if new_owner and self.first_owner is None:
                self.first_owner = time.monotonic()

    def check_link(self) -> None:
        """Record an error when the link cannot carry the probe (down, no carrier)."""
        if self.error is None:
            try:
                self.error = link_problem(_link_flags(self.sock, self.interface), self.interface)
            except OSError as exc:
                self.error = describe_socket_error(exc, self.interface)

    async def run(self, frame: bytes, attempts: int, interval: float, wait: float) -> None:
        """Probe, listen, and check the link before and after: a carrier lost meanwhile voids the probe."""
        self.check_link()
        if self.error is not None:
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self.drain)
        try:
            last_sent = self.start
            for attempt in range(attempts):
                if attempt:
                    # Absolute schedule: a late wake-up on a busy host does not push every later probe.
                    await asyncio.sleep(max(0.0, self.start + attempt * interval - time.monotonic()))
                try:
                    await loop.sock_sendall(self.sock, frame)
                except OSError as exc:
                    self.error = describe_socket_error(exc, self.interface)
                if self.error is not None:
                    return
                self.sent += 1
                last_sent = time.monotonic()
            # The answer to the last probe gets `wait` after it was really sent, however late that was.
            await asyncio.sleep(max(0.0, last_sent + wait - time.monotonic()))
            self.drain()  # frames queued but not yet signalled
            self.check_link()
        finally:
            loop.remove_reader(self.sock.fileno())

    def result(self, address: IPAddress, local: str) -> OwnerProbe:
        return OwnerProbe(
            interface=self.interface,
            address=address,
            owners=frozenset(self.sightings.owners),
            probers=frozenset(self.sightings.probers),
            sent=self.sent,
            frames=self.sightings.frames,
            elapsed=time.monotonic() - self.start,
            error=self.error,
            local_mac=local,
            first_owner_after=None if self.first_owner is None else self.first_owner - self.start,
        )


def _if_inet6() -> str:
    try:
        with open(IF_INET6, encoding="ascii") as file:
            return file.read()
    except OSError:  # IPv6 disabled in this kernel: the duplicate address detection form
        return ""


def question(address: IPAddress, mac: bytes, interface: str, if_inet6: str = "") -> bytes:
    """The probe frame: an ARP probe, or (IPv6) a neighbour solicitation from the link-local
    address `if_inet6` (the text of /proc/net/if_inet6) gives `interface`."""
    if isinstance(address, ipaddress.IPv6Address):
        return nd.solicitation_frame(address, mac, nd.link_local_source(if_inet6, interface))
    return probe_frame(mac, address)


async def probe_vip_owners(
    interface: str,
    address: IPAddress,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    interval: float = DEFAULT_INTERVAL,
    wait: float = DEFAULT_WAIT,
    exclude_macs: Collection[str] = frozenset(),
) -> OwnerProbe:
    """Ask the LAN of `interface` who has `address`, and return every other host that claimed it.

    Sends `attempts` ARP probes (IPv6: neighbour solicitations) `interval` seconds apart and listens
    until `wait` seconds after the last one; every ARP (neighbour discovery) frame received
    meanwhile counts (replies, gratuitous ARPs, requests from the address; advertisements,
    solicitations from the address). This host's interface MAC and `exclude_macs` are not
    reported. Acts in the calling process's network namespace; needs CAP_NET_RAW. Socket failures
    are returned in `OwnerProbe.error`; a nonsensical plan or address raises ProbeSetupError.
    """
    _check_probe_target(address)
    check_timing(attempts, interval, wait)
    excluded = {normalise_mac(mac) for mac in exclude_macs}
    start = time.monotonic()

    def failed(error: str) -> OwnerProbe:
        return OwnerProbe(interface, address, elapsed=time.monotonic() - start, error=error)

    ipv6 = isinstance(address, ipaddress.IPv6Address)
    try:
        sock = _open(interface, ipv6)
    except OSError as exc:
        return failed(describe_socket_error(exc, interface))
    except (ValueError, TypeError) as exc:  # a name the kernel cannot even take (NUL, too long)
        return failed(f"{interface!r} is not an interface name: {exc}")
    with sock:
        _name, _proto, _pkttype, hatype, raw_mac = sock.getsockname()
        if hatype != ARPHRD_ETHER or len(raw_mac) != 6:
            how = "neighbour discovery" if ipv6 else "ARP"
            return failed(f"interface {interface} is not Ethernet: {how} cannot find an owner")
        local = mac_text(raw_mac)
        run = _ProbeRun(sock, interface, OwnerSightings(address, frozenset(excluded | {local})), start)
        frame = question(address, raw_mac, interface, _if_inet6() if ipv6 else "")
        await run.run(frame, attempts, interval, wait)
        return run.result(address, local)
