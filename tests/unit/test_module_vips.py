"""The module's VIPs in safekitd (safekit.daemon.module_vips): what the lifetime renewal reports."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest

from safekit.daemon import module_vips
from safekit.daemon.module_vips import ModuleVips
from safekit.mirror import AcquireVip, ActionFailed
from safekit.vip.arp import ArpProvider
from safekit.vip.provider import VipSpec


class FakeArp(ArpProvider):
    """An arp VIP with a lifetime, on no interface: present from acquire() to release()."""

    def __init__(self) -> None:
        super().__init__(VipSpec(ipaddress.IPv4Address("198.18.0.200"), options={"lifetime": "3"}))
        self.present = False

    async def acquire(self, timeout: float = 1.0) -> bool:
        self.present = True
        return True

    async def release(self, timeout: float = 1.0) -> bool:
        was, self.present = self.present, False
        return was

    async def renew(self, timeout: float = 1.0) -> bool:
        return self.present


def test_a_vip_asked_for_but_not_added_yet_is_not_reported_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a failover the machine holds the VIP as soon as it asks for it, and the VIP is added
    after the replication has started (seconds): that wait is not a VIP that disappeared. A VIP
    that was added and then disappears is reported (twice in a row) as a failed acquire."""
    monkeypatch.setattr(module_vips, "RENEW_INTERVAL", 0.01)
    reports: list[object] = []
    provider = FakeArp()
    vips = ModuleVips([provider], logging.getLogger("test"), reports.append, split_brain_bound=1.0)

    async def scenario() -> None:
        # the machine holds the VIP until it hears of a failure (then it releases it: stopstart)
        renewing = asyncio.create_task(vips.renew_loop(lambda: not reports))
        await asyncio.sleep(0.2)  # held by the machine, the replication still starting
        assert reports == []
        await vips.acquire(AcquireVip())
        await asyncio.sleep(0.1)
        assert reports == []
        provider.present = False  # removed by someone else, or expired while frozen
        await asyncio.sleep(0.1)
        renewing.cancel()

    asyncio.run(scenario())
    assert len(reports) == 1
    (failed,) = reports
    assert isinstance(failed, ActionFailed) and isinstance(failed.action, AcquireVip)
    assert "gone from this node" in failed.detail
