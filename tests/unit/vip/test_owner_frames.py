"""The VIP owner probe's frames, byte by byte: the probe itself (RFC 5227: it must not teach any host
a neighbour entry), which received frames name a holder of the VIP, and malformed frames (never a
crash, never a false holder)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.vip.arp import ARP_REPLY, ARP_REQUEST, garp_frame
from safekit.vip.owner import (
    PACKET_OUTGOING,
    ArpPacket,
    OwnerProbe,
    OwnerSightings,
    ProbeSetupError,
    claimed_owner,
    conflicting_prober,
    normalise_mac,
    parse_arp_frame,
    probe_frame,
)

VIP = ipaddress.IPv4Address("198.18.0.200")
OTHER = ipaddress.IPv4Address("198.18.0.7")
ZERO_IP = ipaddress.IPv4Address("0.0.0.0")
PROBER = bytes.fromhex("025bc6120002")
HOLDER = bytes.fromhex("025bc6120001")
HOLDER_TEXT = "02:5b:c6:12:00:01"
PROBER_TEXT = "02:5b:c6:12:00:02"


def arp_frame(
    op: int,
    sha: bytes,
    spa: ipaddress.IPv4Address,
    tha: bytes,
    tpa: ipaddress.IPv4Address,
    *,
    dst: bytes = b"\xff" * 6,
    header: tuple[int, int, int, int] = (1, 0x0800, 6, 4),
    ethertype: int = 0x0806,
) -> bytes:
    """Any ARP frame, as another host's kernel would put it on the wire (or not quite)."""
    return (
        dst
        + sha
        + struct.pack("!H", ethertype)
        + struct.pack("!HHBBH", *header, op)
        + sha
        + spa.packed
        + tha
        + tpa.packed
    ).ljust(60, b"\x00")


def linux_reply_to_probe(holder: bytes = HOLDER) -> bytes:
    """What Linux's arp_process sends back to a probe: a reply to the prober's MAC with target IP 0."""
    return arp_frame(ARP_REPLY, holder, VIP, PROBER, ZERO_IP, dst=PROBER)


# ----------------------------------------------------------------------------- the probe
def test_probe_is_an_rfc5227_probe_that_teaches_nobody_a_neighbour() -> None:
    frame = probe_frame(PROBER, VIP)
    assert len(frame) == 60
    assert frame[0:6] == b"\xff" * 6  # every host of the LAN hears it
    assert frame[6:12] == PROBER
    assert frame[12:14] == b"\x08\x06"
    assert struct.unpack("!HHBBH", frame[14:22]) == (1, 0x0800, 6, 4, ARP_REQUEST)
    assert frame[22:28] == PROBER
    # Sender IP 0.0.0.0: no receiver creates or updates an entry from it (the no-poisoning rule).
    assert frame[28:32] == b"\x00\x00\x00\x00"
    assert frame[32:38] == b"\x00" * 6
    assert frame[38:42] == VIP.packed
    assert frame[42:] == b"\x00" * 18


def test_probe_parses_back_and_is_not_a_claim_but_a_conflicting_probe() -> None:
    packet = parse_arp_frame(probe_frame(PROBER, VIP))
    assert packet == ArpPacket(ARP_REQUEST, PROBER_TEXT, ZERO_IP, "00:00:00:00:00:00", VIP)
    assert claimed_owner(packet, VIP) is None
    assert conflicting_prober(packet, VIP) == PROBER_TEXT
    assert conflicting_prober(packet, OTHER) is None


@pytest.mark.parametrize(
    ("mac", "address", "message"),
    [
        (b"\x02" * 5, VIP, "6 bytes"),
        (b"\x02" * 7, VIP, "6 bytes"),
        (PROBER, ZERO_IP, "cannot be probed"),
        (PROBER, ipaddress.IPv4Address("224.0.0.18"), "cannot be probed"),
        (PROBER, ipaddress.IPv4Address("255.255.255.255"), "cannot be probed"),
    ],
)
def test_probe_refuses_what_cannot_be_asked(mac: bytes, address: ipaddress.IPv4Address, message: str) -> None:
    with pytest.raises(ProbeSetupError, match=message):
        probe_frame(mac, address)


# ----------------------------------------------------------------------------- what names a holder
@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("reply to our probe", linux_reply_to_probe()),
        ("ordinary reply", arp_frame(ARP_REPLY, HOLDER, VIP, PROBER, OTHER, dst=PROBER)),
        ("gratuitous request (announcement)", garp_frame(HOLDER, VIP, ARP_REQUEST)),
        ("gratuitous reply", garp_frame(HOLDER, VIP, ARP_REPLY)),
        ("request sent from the VIP", arp_frame(ARP_REQUEST, HOLDER, VIP, b"\x00" * 6, OTHER)),
    ],
)
def test_frames_that_use_the_vip_as_sender_name_its_holder(name: str, frame: bytes) -> None:
    packet = parse_arp_frame(frame)
    assert packet is not None, name
    assert claimed_owner(packet, VIP) == HOLDER_TEXT, name
    assert claimed_owner(packet, OTHER) is None, name


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("a client asking who has the VIP", arp_frame(ARP_REQUEST, HOLDER, OTHER, b"\x00" * 6, VIP)),
        ("a reply for another address", arp_frame(ARP_REPLY, HOLDER, OTHER, PROBER, ZERO_IP)),
        ("zero sender MAC", arp_frame(ARP_REPLY, b"\x00" * 6, VIP, PROBER, ZERO_IP)),
        ("broadcast sender MAC", arp_frame(ARP_REPLY, b"\xff" * 6, VIP, PROBER, ZERO_IP)),
        ("multicast sender MAC", arp_frame(ARP_REPLY, bytes.fromhex("01005e000012"), VIP, PROBER, ZERO_IP)),
    ],
)
def test_frames_that_do_not_claim_the_vip_name_no_holder(name: str, frame: bytes) -> None:
    packet = parse_arp_frame(frame)
    assert packet is not None, name
    assert claimed_owner(packet, VIP) is None, name


# ----------------------------------------------------------------------------- malformed frames
@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("empty", b""),
        ("Ethernet header only", linux_reply_to_probe()[:14]),
        ("ARP cut short by one byte", linux_reply_to_probe()[:41]),
        ("IPv4, not ARP", arp_frame(ARP_REPLY, HOLDER, VIP, PROBER, ZERO_IP, ethertype=0x0800)),
        ("802.1Q tag", arp_frame(ARP_REPLY, HOLDER, VIP, PROBER, ZERO_IP, ethertype=0x8100)),
        ("hardware type not Ethernet", arp_frame(2, HOLDER, VIP, PROBER, ZERO_IP, header=(6, 0x0800, 6, 4))),
        ("protocol not IPv4", arp_frame(2, HOLDER, VIP, PROBER, ZERO_IP, header=(1, 0x86DD, 6, 4))),
        ("hardware length 8", arp_frame(2, HOLDER, VIP, PROBER, ZERO_IP, header=(1, 0x0800, 8, 4))),
        ("protocol length 16", arp_frame(2, HOLDER, VIP, PROBER, ZERO_IP, header=(1, 0x0800, 6, 16))),
        ("RARP reply (op 4)", arp_frame(4, HOLDER, VIP, PROBER, ZERO_IP)),
        ("op 0", arp_frame(0, HOLDER, VIP, PROBER, ZERO_IP)),
    ],
)
def test_malformed_or_foreign_frames_are_ignored(name: str, frame: bytes) -> None:
    assert parse_arp_frame(frame) is None, name
    sightings = OwnerSightings(VIP)
    assert sightings.see(frame) is False
    assert (sightings.owners, sightings.frames) == (set(), 0)


def test_unpadded_42_byte_frame_is_read() -> None:
    # Not every sender pads to 60 bytes (a packet socket on the same host sees unpadded frames).
    assert claimed_owner(parse_arp_frame(linux_reply_to_probe()[:42]), VIP) == HOLDER_TEXT  # type: ignore[arg-type]


@given(st.binary(max_size=200))
def test_any_bytes_never_crash_the_parser(frame: bytes) -> None:
    packet = parse_arp_frame(frame)
    OwnerSightings(VIP).see(frame)
    if packet is not None:
        assert frame[12:14] == b"\x08\x06"
        assert packet.op in (ARP_REQUEST, ARP_REPLY)


@given(
    st.binary(min_size=6, max_size=6),
    st.sampled_from([ARP_REQUEST, ARP_REPLY]),
    st.binary(min_size=0, max_size=100),
)
def test_a_claim_survives_any_trailer_and_only_a_unicast_sender_counts(
    mac: bytes, op: int, trailer: bytes
) -> None:
    frame = arp_frame(op, mac, VIP, PROBER, ZERO_IP)[:42] + trailer
    packet = parse_arp_frame(frame)
    assert packet is not None
    unicast = mac != b"\x00" * 6 and not mac[0] & 1
    assert (claimed_owner(packet, VIP) is not None) == unicast


# ----------------------------------------------------------------------------- sightings and result
def test_sightings_leave_out_this_node_its_own_frames_and_count_each_holder_once() -> None:
    third = bytes.fromhex("025bc6120009")
    sightings = OwnerSightings(VIP, excluded=frozenset({PROBER_TEXT}))
    assert sightings.see(garp_frame(PROBER, VIP)) is False  # our own MAC: this node is not "another"
    assert sightings.see(linux_reply_to_probe(), PACKET_OUTGOING) is False  # sent by this host
    assert sightings.see(linux_reply_to_probe()) is True
    assert sightings.see(linux_reply_to_probe()) is False  # the same holder again: not new
    assert sightings.see(garp_frame(third, VIP)) is True
    assert sightings.see(probe_frame(third, VIP)) is False
    assert sightings.owners == {HOLDER_TEXT, "02:5b:c6:12:00:09"}
    assert sightings.probers == {"02:5b:c6:12:00:09"}
    assert sightings.frames == 5


def test_probe_result_says_nobody_only_when_it_completed_without_a_holder() -> None:
    nobody = OwnerProbe("eth0", VIP, sent=3, elapsed=0.111)
    assert nobody.nobody
    assert nobody.summary() == "198.18.0.200 on eth0: nobody answered (3 probe(s), 111 ms)"
    seen = OwnerProbe("eth0", VIP, owners=frozenset({HOLDER_TEXT}), probers=frozenset({PROBER_TEXT}), sent=3)
    assert not seen.nobody
    assert "answered by 02:5b:c6:12:00:01" in seen.summary()
    assert "also probed for by 02:5b:c6:12:00:02" in seen.summary()
    failed = OwnerProbe("eth9", VIP, error="interface eth9 does not exist in this network namespace")
    assert not failed.nobody  # a failed probe proves no absence
    assert "probe failed: interface eth9 does not exist" in failed.summary()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("02:5B:C6:12:00:01", HOLDER_TEXT),
        ("02-5b-c6-12-00-01", HOLDER_TEXT),
        (" 02:5b:c6:12:00:01 ", HOLDER_TEXT),
    ],
)
def test_macs_are_compared_in_one_form(text: str, expected: str) -> None:
    assert normalise_mac(text) == expected


@pytest.mark.parametrize(
    "text", ["", "02:5b:c6:12:00", "02:5b:c6:12:00:zz", "025bc6120001", "2:5b:c6:12:0:1"]
)
def test_not_a_mac_is_refused(text: str) -> None:
    with pytest.raises(ProbeSetupError, match="not an Ethernet MAC address"):
        normalise_mac(text)
