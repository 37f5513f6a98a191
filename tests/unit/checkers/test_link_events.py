"""Interface checkers woken by the kernel's link notifications (checkers.link_events, ADR 0079): a
link change makes an `<intf>` checker probe at once instead of at its next poll; other checkers
keep their poll; the rtnetlink socket lives while someone listens; without notifications the
checker still polls. The kernel's side: tests/integration/checkers/test_interface_check_live.py."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from safekit.checkers import link_events
from safekit.checkers.link_events import SETTLE, LinkEvents
from safekit.daemon.checker_tasks import CheckerSpec, run_checker

pytestmark = pytest.mark.wallclock  # liveness on the wall clock: run at normal priority

LOG = logging.getLogger("safekit.test.link_events")


class Cable:
    """A probe reading a cable that the test plugs and pulls; counts the probes."""

    def __init__(self) -> None:
        self.plugged = True
        self.probes = 0

    async def __call__(self) -> bool:
        self.probes += 1
        return self.plugged


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def wait_for_reports(reports: list[str], count: int, within: float) -> float:
    began = asyncio.get_running_loop().time()
    while len(reports) < count:
        if asyncio.get_running_loop().time() - began > within:
            raise AssertionError(f"{len(reports)} reports after {within} s, expected {count}: {reports}")
        await asyncio.sleep(0.005)
    return asyncio.get_running_loop().time() - began


def test_a_pulled_cable_is_reported_at_the_notification_not_at_the_next_poll() -> None:
    async def run() -> tuple[list[str], float, float, int, bool]:
        events, cable, reports = LinkEvents(), Cable(), []
        spec = CheckerSpec("intf.eth1", "prim", "wait", 600.0, cable, on_link_change=True)
        task = asyncio.create_task(run_checker(spec, lambda _, v: reports.append(v), LOG, events))
        await wait_for_reports(reports, 1, 5)
        listening = events.listening
        cable.plugged = False
        events.notify()  # what the rtnetlink socket does when the kernel announces the change
        down_after = await wait_for_reports(reports, 2, 5)
        cable.plugged = True
        events.notify()
        events.notify()  # a burst: one probe
        up_after = await wait_for_reports(reports, 3, 5)
        await asyncio.sleep(SETTLE * 4)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return reports, down_after, up_after, cable.probes, listening and not events.listening

    reports, down_after, up_after, probes, socket_followed_the_checker = asyncio.run(run())
    assert reports == ["up", "down", "up"]  # the 600 s poll never came
    assert down_after < 1.0 and up_after < 1.0
    assert probes == 3
    assert socket_followed_the_checker  # opened for it, closed when it ended


def test_other_checkers_keep_their_poll() -> None:
    async def run() -> list[str]:
        events, cable, reports = LinkEvents(), Cable(), []
        spec = CheckerSpec("tcp.app", "prim", "restart", 600.0, cable)
        task = asyncio.create_task(run_checker(spec, lambda _, v: reports.append(v), LOG, events))
        await wait_for_reports(reports, 1, 5)
        assert not events.listening  # not subscribed: no socket for it
        cable.plugged = False
        events.notify()
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return reports

    assert asyncio.run(run()) == ["up"]


def test_the_socket_is_shared_and_no_descriptor_is_left_after_the_checkers() -> None:
    async def run() -> tuple[int, int, int]:
        events = LinkEvents()
        before = open_fds()
        specs = [
            CheckerSpec(f"intf.eth{i}", "prim", "wait", 600.0, Cable(), on_link_change=True) for i in range(3)
        ]
        reports: list[str] = []
        tasks = [
            asyncio.create_task(run_checker(s, lambda _, v: reports.append(v), LOG, events)) for s in specs
        ]
        await wait_for_reports(reports, 3, 5)
        during = open_fds()
        for _ in range(20):  # modules loaded and unloaded: nothing accumulates
            again = asyncio.create_task(run_checker(specs[0], lambda _, v: None, LOG, events))
            await asyncio.sleep(0)
            again.cancel()
            await asyncio.gather(again, return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return before, during, open_fds()

    before, during, after = asyncio.run(run())
    assert during == before + 1  # one socket for three checkers
    assert after == before


def test_without_notifications_the_checker_polls_and_says_why_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused() -> object:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(link_events, "link_socket", refused)

    async def run() -> list[str]:
        events, cable, reports = LinkEvents(), Cable(), []
        specs = [
            CheckerSpec(f"intf.eth{i}", "prim", "wait", 0.05, cable, on_link_change=True) for i in range(2)
        ]
        tasks = [
            asyncio.create_task(run_checker(s, lambda _, v: reports.append(v), LOG, events)) for s in specs
        ]
        await wait_for_reports(reports, 6, 5)  # the poll goes on
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return reports

    with caplog.at_level(logging.WARNING, logger="safekit.checkers.link_events"):
        reports = asyncio.run(run())
    assert set(reports) == {"up"}
    said = [r.getMessage() for r in caplog.records if "link notifications unavailable" in r.getMessage()]
    assert len(said) == 1 and "Operation not permitted" in said[0]
