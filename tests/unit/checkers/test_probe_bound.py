"""A probe that hangs does not stall its checker: past its bound (the checker's timeout plus a grace)
the round is down, logged once; the hung call is not started again while it runs, and its answer is
taken when it comes."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import cast

import pytest

from safekit.checkers import bounded, probes
from safekit.checkers.bounded import BoundedProbe, ProbeTimeout, probe_limit
from safekit.checkers.icmp import Pinger
from safekit.config.module import Check, CheckTarget, IpCheck
from safekit.daemon.checker_tasks import checker_specs, run_checker


class StuckNetlink:
    """address_present that blocks (a netlink call that never returns) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, address: str) -> bool:
        self.calls += 1
        self.release.wait(timeout=30)
        return True


def test_a_hung_probe_is_down_once_logged_and_its_late_answer_counts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = StuckNetlink()
    monkeypatch.setattr(probes, "address_present", stuck)
    monkeypatch.setattr(bounded, "PROBE_GRACE", 0.05)
    check = Check(
        ip=(IpCheck("vip", (CheckTarget(addr="198.18.0.10", interval=0.02, timeout=0.05),), "prim"),)
    )
    (spec,) = checker_specs(check, cast(Pinger, None))
    log = logging.getLogger("safekit.test.bound")
    reports: list[str] = []

    async def run() -> None:
        task = asyncio.create_task(run_checker(spec, lambda _, value: reports.append(value), log))
        try:
            # Without a bound the checker waits for the probe for good and reports nothing.
            async with asyncio.timeout(5):
                while len(reports) < 4:
                    await asyncio.sleep(0.01)
            assert reports[:4] == ["down"] * 4
            assert stuck.calls == 1, "a hung probe is started again: blocked threads pile up"
            stuck.release.set()  # the call returns at last: up
            async with asyncio.timeout(5):
                while reports[-1] != "up":
                    await asyncio.sleep(0.01)
        finally:
            stuck.release.set()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.INFO, logger="safekit.test.bound"):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "checker ip.vip: the probe failed (ProbeTimeout: no answer in 0.1 s, the probe still runs): "
        "counted as down",
        "checker ip.vip: the probe answers again (it failed with ProbeTimeout: no answer in 0.1 s, "
        "the probe still runs)",
    ]


def test_the_bound_is_the_checkers_timeout_plus_the_grace() -> None:
    assert probe_limit(5.0) == 5.0 + bounded.PROBE_GRACE
    assert BoundedProbe(lambda: asyncio.sleep(0, True), 3.0).limit == 3.0 + bounded.PROBE_GRACE


def test_an_answer_in_time_passes_and_a_cancelled_checker_cancels_its_probe() -> None:
    async def run() -> None:
        async def answer() -> bool:
            return False

        assert await BoundedProbe(answer, 1.0)() is False
        started = asyncio.Event()
        ended: list[str] = []

        async def forever() -> bool:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise
            return True

        probe = BoundedProbe(forever, 0.0, limit=0.05)
        with pytest.raises(ProbeTimeout):
            await probe()
        checker = asyncio.create_task(probe())  # the next round waits for the same call
        await asyncio.sleep(0.01)
        checker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await checker
        await asyncio.sleep(0)
        assert ended == ["cancelled"]

    asyncio.run(run())
