"""The farm's VIP provider: a /32, gratuitous ARP naming the shared virtual MAC from the real one."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from safekit.farm.nft import vmac_for
from safekit.vip.arp import garp_frame, mac_bytes
from safekit.vip.vmac import GARP_ROUNDS, VmacProvider

VIP = ipaddress.IPv4Address("198.18.0.200")
REAL = bytes.fromhex("0a1b2c3d4e5f")


def provider(interface: str | None = None) -> VmacProvider:
    return VmacProvider.for_farm(VIP, interface, vmac_for(VIP))


def test_the_announcement_says_the_vip_is_at_the_vmac_from_the_real_mac() -> None:
    vmac = mac_bytes(vmac_for(VIP))
    (frame,) = provider()._frames(REAL)
    # Byte for byte the frame the farm sent before it went through vip/: Ethernet from the real
    # MAC to broadcast, an ARP request whose sender is the vMAC, target MAC zero, padded to 60.
    expected = (
        b"\xff" * 6
        + REAL
        + struct.pack("!H", 0x0806)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
        + vmac
        + VIP.packed
        + b"\x00" * 6
        + VIP.packed
    ).ljust(60, b"\x00")
    assert frame == expected
    assert frame == garp_frame(vmac, VIP, ethernet_source=REAL)
    assert frame[6:12] != vmac  # switches must never learn where the vMAC is


def test_the_vip_is_a_32_on_the_configured_or_chosen_interface() -> None:
    assert provider().spec.prefixlen == 32
    assert provider().spec.interface is None
    assert provider("eth1").spec.interface == "eth1"
    assert provider().lifetime is None  # held as long as the node serves
    assert provider().vmac == "02:5a:fe:12:00:c8"


def test_three_rounds_backing_off() -> None:
    p = provider()
    assert p.spec.garp_count == GARP_ROUNDS == 3
    assert [p._gap(i) for i in range(GARP_ROUNDS - 1)] == [0.2, 0.4]  # rounds at 0, 0.2, 0.6 s


def test_other_holders_are_the_farm_itself() -> None:
    view = asyncio.run(provider().other_owners(timeout=1.0))
    assert not view.known
