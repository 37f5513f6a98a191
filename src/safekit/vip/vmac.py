"""The `vmac` VIP provider: a farm's virtual IP (`vmac_invisible`), held on every serving node behind
one shared virtual MAC.

The `arp` provider in all but three points (its netlink placement, locking and time bounds are
reused as they are):

- the address is added as a /32: it brings no route, and the node's own address keeps carrying the
  traffic the node starts itself;
- the gratuitous ARP says the VIP is at the *virtual* MAC, and leaves from the interface's real
  MAC: a frame sent from the vMAC would teach switches where the vMAC is, and they would stop
  flooding the VIP's frames to every node (`arping -U` cannot do this: it announces the real MAC
  and poisons clients). Three rounds, 0.2 s then 0.4 s apart;
- every serving node holds the address, so there is no "other holder" to look for.

The nftables rules that make a node's kernel take frames for the vMAC, answer ARP with it and
serve only its buckets are the farm's (`safekit.farm.nft`).
"""

from __future__ import annotations

import ipaddress

from safekit.vip.arp import ArpProvider, garp_frame, mac_bytes
from safekit.vip.frames import ARP_REQUEST
from safekit.vip.provider import OwnerView, VipProvider, VipSpec

GARP_ROUNDS = 3
GARP_FIRST_GAP = 0.2
"""Seconds before the second round; each later gap is one more of these (rounds at 0, 0.2, 0.6 s)."""


class VmacProvider(ArpProvider):
    """A farm VIP on a LAN: a /32 and gratuitous ARP naming the shared virtual MAC."""

    name = "vmac"
    ipv6 = False  # a farm's IPv6 VIP is `farm_kernel.Ipv6FarmVip`

    def __init__(self, spec: VipSpec, vmac: str) -> None:
        super().__init__(spec)
        self.vmac = vmac
        self._vmac = mac_bytes(vmac)

    @classmethod
    def for_farm(cls, address: ipaddress.IPv4Address, interface: str | None, vmac: str) -> VmacProvider:
        """The provider of one farm VIP; `interface` None: the one whose network contains it."""
        spec = VipSpec(
            address,
            prefixlen=32,
            interface=interface or None,
            provider=cls.name,
            garp_count=GARP_ROUNDS,
            garp_interval=GARP_FIRST_GAP,
        )
        return cls(spec, vmac)

    def _frames(self, mac: bytes) -> list[bytes]:
        address = self.spec.address
        assert isinstance(address, ipaddress.IPv4Address)  # refused at construction (ipv6 False)
        return [garp_frame(self._vmac, address, ARP_REQUEST, ethernet_source=mac)]

    def _gap(self, round_: int) -> float:
        return self.spec.garp_interval * (round_ + 1)

    sees_other_owners = False  # every serving farm node holds the address

    async def _other_owners(self, timeout: float) -> OwnerView:
        # Every serving farm node holds the address: the others are the farm, not a conflict.
        return await VipProvider._other_owners(self, timeout)
