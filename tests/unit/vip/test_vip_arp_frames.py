"""Gratuitous ARP frames, byte by byte, and the other pure parts of the arp provider."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.vip import VipError, VipSpec, VipState
from safekit.vip.arp import (
    ARP_REPLY,
    ARP_REQUEST,
    ArpProvider,
    Link,
    alias_label,
    assess,
    garp_frame,
    garp_frames,
    mac_bytes,
)

VIP = ipaddress.IPv4Address("198.18.0.200")
MAC = bytes.fromhex("025bc6120002")


def fields(frame: bytes) -> dict[str, object]:
    dst, src, ethertype = frame[0:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    return {
        "dst": dst,
        "src": src,
        "ethertype": ethertype,
        "htype": htype,
        "ptype": ptype,
        "hlen": hlen,
        "plen": plen,
        "op": op,
        "sha": frame[22:28],
        "spa": ipaddress.IPv4Address(frame[28:32]),
        "tha": frame[32:38],
        "tpa": ipaddress.IPv4Address(frame[38:42]),
        "padding": frame[42:],
    }


def test_request_is_an_rfc5227_announcement_to_broadcast() -> None:
    f = fields(garp_frame(MAC, VIP, ARP_REQUEST))
    assert f["dst"] == b"\xff" * 6
    assert f["src"] == MAC
    assert f["ethertype"] == 0x0806
    assert (f["htype"], f["ptype"], f["hlen"], f["plen"]) == (1, 0x0800, 6, 4)
    assert f["op"] == 1
    assert f["sha"] == MAC
    assert f["spa"] == f["tpa"] == VIP
    assert f["tha"] == b"\x00" * 6


def test_reply_carries_the_sender_mac_as_target_mac() -> None:
    # Linux only treats a reply as gratuitous when the target MAC equals the sender MAC.
    f = fields(garp_frame(MAC, VIP, ARP_REPLY))
    assert f["op"] == 2
    assert f["dst"] == b"\xff" * 6
    assert f["sha"] == f["tha"] == MAC
    assert f["spa"] == f["tpa"] == VIP


def test_frames_are_padded_to_the_ethernet_minimum() -> None:
    frame = garp_frame(MAC, VIP)
    assert len(frame) == 60
    assert fields(frame)["padding"] == b"\x00" * 18


@given(mac=st.binary(min_size=6, max_size=6), ip=st.integers(min_value=1, max_value=2**32 - 2))
def test_any_address_and_mac_round_trip(mac: bytes, ip: int) -> None:
    address = ipaddress.IPv4Address(ip)
    f = fields(garp_frame(mac, address))
    assert (f["src"], f["sha"], f["spa"], f["tpa"]) == (mac, mac, address, address)


def test_forms_send_request_reply_or_both_in_that_order() -> None:
    ops = {
        form: [fields(fr)["op"] for fr in garp_frames(MAC, VIP, form)]
        for form in ("request", "reply", "both")
    }
    assert ops == {"request": [1], "reply": [2], "both": [1, 2]}


def test_bad_frame_inputs_are_refused() -> None:
    with pytest.raises(VipError, match="6 bytes"):
        garp_frame(b"\x02\x5b", VIP)
    with pytest.raises(VipError, match="neither a request"):
        garp_frame(MAC, VIP, 3)


def test_mac_text_to_bytes() -> None:
    assert mac_bytes("02:5b:c6:12:00:02") == MAC
    for bad in ("02:5b:c6:12:00", "02:5b:c6:12:00:zz", "025bc6120002", "2:5b:c6:12:00:02"):
        with pytest.raises(VipError, match="not an Ethernet MAC"):
            mac_bytes(bad)


def test_alias_label_fits_linux_limits() -> None:
    assert alias_label("eth0") == "eth0:sk"
    assert alias_label("enp0s31f6") == "enp0s31f6:sk"
    assert alias_label("abcdefghijkl") == "abcdefghijkl:sk"  # 15 bytes: the limit
    assert alias_label("abcdefghijklm") == "abcdefghijklm"  # 16 would not fit


def link(up: bool = True, carrier: bool = True) -> Link:
    return Link(index=2, name="eth0", mac="02:5b:c6:12:00:02", up=up, carrier=carrier)


def test_assess_held_not_held_degraded() -> None:
    assert assess(VIP, "eth0", link(), True).state is VipState.HELD
    assert assess(VIP, "eth0", link(), False).state is VipState.NOT_HELD
    missing = assess(VIP, "eth9", None, False)
    assert missing.state is VipState.NOT_HELD
    assert "eth9 does not exist" in missing.reason
    down = assess(VIP, "eth0", link(up=False, carrier=False), True)
    assert down.state is VipState.DEGRADED
    assert "is down" in down.reason
    no_carrier = assess(VIP, "eth0", link(carrier=False), True)
    assert no_carrier.state is VipState.DEGRADED
    assert "no carrier" in no_carrier.reason
    # Without the address, a dead link is simply "not held": there is nothing to degrade.
    assert assess(VIP, "eth0", link(carrier=False), False).state is VipState.NOT_HELD


def test_arp_provider_options() -> None:
    assert ArpProvider(VipSpec(VIP)).garp_form == "request"
    assert ArpProvider(VipSpec(VIP, options={"garp_form": "both"})).garp_form == "both"
    with pytest.raises(VipError, match="garp_form='gratuitous': give one of request, reply, both"):
        ArpProvider(VipSpec(VIP, options={"garp_form": "gratuitous"}))
    with pytest.raises(VipError, match=r"unknown option.*route_table.*known options are garp_form"):
        ArpProvider(VipSpec(VIP, options={"route_table": "rtb-1"}))
