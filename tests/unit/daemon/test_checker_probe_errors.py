"""A checker whose probe raises: the error is a failed probe (down), logged once per change, and the
checker goes on; a checker still down after the module's reaction acts again (CheckerVerdicts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from safekit.checkers import probes
from safekit.daemon.checker_tasks import CheckerSpec, CheckerVerdicts, run_checker
from safekit.daemon.node import Module, Node
from safekit.host.paths import Paths
from safekit.membership import clusterkey


class FlakyProbe:
    """Answers from a script of outcomes: True/False, or an exception to raise."""

    def __init__(self, outcomes: list[bool | Exception]) -> None:
        self.outcomes = outcomes
        self.calls = 0

    async def __call__(self) -> bool:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def run_rounds(probe: FlakyProbe, rounds: int) -> list[str]:
    reports: list[str] = []
    log = logging.getLogger("safekit.test.checker")

    async def run() -> None:
        spec = CheckerSpec("ip.app", "prim", "stopstart", 0.0, probe)
        task = asyncio.create_task(run_checker(spec, lambda _, value: reports.append(value), log))
        while len(reports) < rounds:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return reports[:rounds]


def test_a_raising_probe_is_down_logged_once_and_the_checker_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = OSError(19, "No such device")
    probe = FlakyProbe([True, error, error, error, ValueError("bad answer"), True, True])
    with caplog.at_level(logging.INFO, logger="safekit.test.checker"):
        reports = run_rounds(probe, 7)
    assert reports == ["up", "down", "down", "down", "down", "up", "up"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "checker ip.app: the probe failed (OSError: [Errno 19] No such device): counted as down",
        "checker ip.app: the probe failed (ValueError: bad answer): counted as down",
        "checker ip.app: the probe answers again (it failed with ValueError: bad answer)",
    ]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


def test_a_verdict_is_given_once_per_down_and_again_after_the_module_moved_on() -> None:
    verdicts = CheckerVerdicts()
    assert verdicts.on_report("tcp.app", "down", counts=True)
    assert not verdicts.on_report("tcp.app", "down", counts=True)  # the same down: once
    verdicts.rearm(lambda _: True)  # a step with no script, still counting: still given
    assert not verdicts.on_report("tcp.app", "down", counts=True)
    verdicts.rearm(lambda _: False)  # a script ran (the stopstart): the next down acts again
    assert verdicts.on_report("tcp.app", "down", counts=True)
    assert not verdicts.on_report("tcp.app", "up", counts=False)
    assert verdicts.on_report("tcp.app", "down", counts=True)  # a new down after an up


def test_a_down_that_does_not_count_yet_acts_when_it_counts() -> None:
    verdicts = CheckerVerdicts()
    assert not verdicts.on_report("ip.vip", "down", counts=False)  # VIP not held yet
    assert not verdicts.on_report("ip.vip", "down", counts=False)
    assert verdicts.on_report("ip.vip", "down", counts=True)  # held, still absent: act


# ---------------------------------------------------------------- a real module on loopback

CLUSTER = """<cluster><lans><lan name="default">
  <node name="n1" addr="127.0.0.1"/><node name="n2" addr="127.0.0.2"/>
</lan></lans></cluster>
"""

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" maxloop="{maxloop}">
  <heart port="{port}"><heartbeat name="default"/></heart>
  <user/>
  <check>
    <tcp ident="app" action="{action}"><to addr="127.0.0.1" port="9" interval="200ms" timeout="100ms"/></tcp>
  </check>
</service>
</safe>
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str, maxloop: int) -> Paths:
    for name, sub in {"SAFE": "safe", "SAFEKIT_CONF": "etc", "SAFEVAR": "var", "SAFEKIT_LOG": "log"}.items():
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("SAFEKIT_RUN", str(tmp_path / "run"))
    monkeypatch.delenv("SAFEKIT_SOCKET", raising=False)
    paths = Paths.from_env()
    paths.conf.mkdir(parents=True, exist_ok=True)
    paths.cluster_xml.write_text(CLUSTER)
    clusterkey.save_key(paths.cluster_key, clusterkey.generate_key())
    conf = paths.module_dir("AM") / "conf" / "userconfig.xml"
    conf.parent.mkdir(parents=True)
    conf.write_text(USERCONFIG.format(port=free_udp_port(), action=action, maxloop=maxloop))
    start_prim = paths.module_dir("AM") / "bin" / "start_prim"
    start_prim.parent.mkdir(parents=True)
    start_prim.write_text("#!/bin/sh\nexit 0\n")
    start_prim.chmod(start_prim.stat().st_mode | stat.S_IXUSR)
    return paths


@pytest.fixture(autouse=True)
def _close_module_log() -> Iterator[None]:
    yield
    logger = logging.getLogger("safekit.module.AM")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


class ProbeSwitch:
    """Stands for the tcp probe: raises while `failing`, else answers up."""

    def __init__(self) -> None:
        self.failing = False
        self.raised = 0

    async def __call__(self, address: str, port: int, timeout: float) -> bool:
        if self.failing:
            self.raised += 1
            raise RuntimeError("probe bug")
        return True


async def _until(predicate: object, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@contextlib.asynccontextmanager
async def alone(paths: Paths) -> AsyncIterator[Module]:
    """A node started on `paths`, its module AM made primary by `prim` and ALONE (Ready); stopped
    at the end."""
    node = Node(paths, node_name="n1", health_address="127.0.0.1", health_port=0)
    await node.start()
    try:
        module = node.modules["AM"]
        assert (await module.command("prim")).accepted
        assert await _until(lambda: (module.module_state, module.readiness) == ("ALONE", "Ready"), 10)
        yield module
    finally:
        await node.stop()


def test_a_raising_probe_takes_the_checkers_action_and_the_checker_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = make_paths(tmp_path, monkeypatch, action="stop", maxloop=3)
    probe = ProbeSwitch()
    monkeypatch.setattr(probes, "tcp", probe)

    async def run() -> None:
        async with alone(paths) as module:
            assert await _until(lambda: module.resources.get("tcp.app") == "up", 2)
            probe.failing = True
            # the first raising round is a down: the checker's action (stop) is taken
            assert await _until(lambda: module.module_state == "STOP", 10), module.reason
            assert module.resources["tcp.app"] == "down"
            raised = probe.raised
            assert await _until(lambda: probe.raised >= raised + 2, 2)  # the checker goes on
            probe.failing = False
            assert await _until(lambda: module.resources["tcp.app"] == "up", 2)

    with caplog.at_level(logging.INFO, logger="safekit.module.AM"):
        asyncio.run(run())
    log = "\n".join(r.getMessage() for r in caplog.records if r.name == "safekit.module.AM")
    assert log.count("checker tcp.app: the probe failed (RuntimeError: probe bug): counted as down") == 1
    assert log.count("checker tcp.app: the probe answers again") == 1
    assert not [r for r in caplog.records if r.exc_info]


def test_a_checker_still_down_after_a_stopstart_acts_again_until_maxloop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module stopstarts on the first down; the checker is still down when the module is ALONE
    again, so it stopstarts again (it used to stay ALONE with the resource down for good); past
    maxloop=1 the module stops."""
    paths = make_paths(tmp_path, monkeypatch, action="stopstart", maxloop=1)
    probe = ProbeSwitch()
    monkeypatch.setattr(probes, "tcp", probe)

    async def run() -> None:
        async with alone(paths) as module:
            probe.failing = True
            assert await _until(lambda: module.module_state == "STOP", 20), module.reason

    asyncio.run(run())
    log = paths.module_log("AM").read_text()
    assert log.count("tcp.app asks stopstart") == 2, log
    assert "resource tcp.app still down after the module's reaction: stopstart again" in log
