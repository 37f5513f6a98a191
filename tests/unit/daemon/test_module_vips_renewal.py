"""The lifetime renewal of `arp` VIPs tells a VIP that went missing from one not acquired yet.

The machine decides to hold the VIP (`vip_held`) before the transition's other actions (the
replication's start, which takes seconds on a loaded host) and the acquire itself are done; a
VIP not yet on the node must not be reported as "gone" (that made a starting primary stop and
start again: seen in the module-template lab test under load).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest

from safekit.daemon import module_vips
from safekit.daemon.module_vips import ModuleVips
from safekit.mirror import ActionFailed, Event
from safekit.vip import VipSpec
from safekit.vip.arp import ArpProvider


class KernelStandIn(ArpProvider):
    """An `arp` provider whose address lives in a flag instead of the kernel."""

    def __init__(self) -> None:
        spec = VipSpec(
            address=ipaddress.IPv4Address("198.18.16.202"),
            prefixlen=24,
            interface=None,
            provider="arp",
            options={"lifetime": "3"},
        )
        super().__init__(spec)
        self.present = False

    async def _acquire(self) -> bool:
        self.present = True
        return True

    async def _release(self) -> bool:
        was, self.present = self.present, False
        return was

    async def renew(self, timeout: float = 1.0) -> bool:
        return self.present


def test_a_vip_not_acquired_yet_is_not_reported_gone_but_a_vanished_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module_vips, "RENEW_INTERVAL", 0.01)
    provider = KernelStandIn()
    reports: list[Event] = []
    vips = ModuleVips([provider], logging.getLogger("test"), reports.append, split_brain_bound=1.0)

    async def scenario() -> None:
        renewer = asyncio.create_task(vips.renew_loop(lambda: True))  # the machine holds it already
        await asyncio.sleep(0.2)  # ~20 renewals while the replication starts: not acquired yet
        assert reports == []
        await vips.acquire(module_vips.AcquireVip())
        await asyncio.sleep(0.1)
        assert reports == [] and provider.present
        provider.present = False  # expired while the daemon was frozen, or removed by someone
        await asyncio.sleep(0.1)
        renewer.cancel()

    asyncio.run(scenario())
    assert len(reports) == 1 and isinstance(reports[0], ActionFailed)
    assert "198.18.16.202 is gone from this node" in reports[0].detail


def test_a_vip_being_released_is_not_reported_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module_vips, "RENEW_INTERVAL", 0.01)
    provider = KernelStandIn()
    reports: list[Event] = []
    vips = ModuleVips([provider], logging.getLogger("test"), reports.append, split_brain_bound=1.0)

    async def scenario() -> None:
        await vips.acquire(module_vips.AcquireVip())
        renewer = asyncio.create_task(vips.renew_loop(lambda: True))
        await vips.release(module_vips.AcquireVip())
        await asyncio.sleep(0.1)  # the machine still says held until the release is reported
        renewer.cancel()

    asyncio.run(scenario())
    assert reports == [] and not provider.present
