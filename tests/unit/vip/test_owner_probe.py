"""The VIP owner probe around its frames: the timing plan and its bound, `VipProvider.other_owners`
(unknown unless a provider can look; never an exception), the arp provider's use of the probe, and
the exit codes of `safekit vip owner`. Socket I/O itself is tested on lab hosts
(tests/integration/vip/test_vip_owner_probe.py)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Collection
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.vip import VipCheck, VipError, VipProvider, VipSpec, VipState, cli
from safekit.vip import arp as arp_module
from safekit.vip.arp import Address, ArpProvider, Link
from safekit.vip.owner import (
    DEFAULT_ATTEMPTS,
    DEFAULT_INTERVAL,
    DEFAULT_WAIT,
    OwnerProbe,
    ProbeSetupError,
    check_timing,
    link_problem,
    probe_duration,
    probe_plan,
    probe_vip_owners,
)
from safekit.vip.provider import OwnerView

VIP = ipaddress.IPv4Address("198.18.0.200")
HOLDER = "02:5b:c6:12:00:01"


# ----------------------------------------------------------------------------- timing
def test_default_probe_fits_the_takeover_budget() -> None:
    # Issue 13: a probe on the takeover path must add well under 0.2 s.
    assert probe_duration(DEFAULT_ATTEMPTS, DEFAULT_INTERVAL, DEFAULT_WAIT) < 0.15
    assert DEFAULT_ATTEMPTS >= 2  # one lost frame must not turn into "nobody"


@given(st.floats(min_value=0.001, max_value=60))
def test_the_plan_for_a_budget_keeps_a_third_of_it_spare(budget: float) -> None:
    attempts, interval, wait = probe_plan(budget)
    check_timing(attempts, interval, wait)
    assert attempts == DEFAULT_ATTEMPTS
    assert probe_duration(attempts, interval, wait) <= budget * 2 / 3 + 1e-9
    assert probe_duration(attempts, interval, wait) <= probe_duration(
        DEFAULT_ATTEMPTS, DEFAULT_INTERVAL, DEFAULT_WAIT
    )


def test_a_generous_budget_gets_the_default_plan() -> None:
    assert probe_plan(1.0) == (DEFAULT_ATTEMPTS, DEFAULT_INTERVAL, DEFAULT_WAIT)


@pytest.mark.parametrize(
    ("attempts", "interval", "wait", "message"),
    [
        (0, 0.03, 0.05, "attempts"),
        (True, 0.03, 0.05, "attempts"),
        (2.0, 0.03, 0.05, "attempts"),
        (3, -0.01, 0.05, "interval"),
        (3, 0.03, float("nan"), "wait"),
        (3, 0.03, "0.05", "wait"),
        (1000, 1.0, 0.05, "longer than"),
    ],
)
def test_nonsensical_timing_is_refused(attempts: Any, interval: Any, wait: Any, message: str) -> None:
    with pytest.raises(ProbeSetupError, match=message):
        check_timing(attempts, interval, wait)


@pytest.mark.parametrize("budget", [0, -1.0])
def test_no_budget_no_plan(budget: float) -> None:
    with pytest.raises(ProbeSetupError, match="positive time budget"):
        probe_plan(budget)


def test_a_probe_that_cannot_open_its_socket_reports_instead_of_raising() -> None:
    # As root: no such interface; without root: no permission. Either way a result, not an exception.
    probe = asyncio.run(probe_vip_owners("nosuchif0", VIP))
    assert probe.error is not None
    assert "nosuchif0 does not exist" in probe.error or "CAP_NET_RAW" in probe.error
    assert not probe.nobody
    assert probe.sent == 0


# ----------------------------------------------------------------------------- provider contract
class Blind(VipProvider):
    """A provider with no way to look (as the cloud providers today)."""

    name = "blind"

    async def _acquire(self) -> bool:
        return True

    async def _release(self) -> bool:
        return True

    async def _check(self) -> VipCheck:
        return VipCheck(VipState.NOT_HELD)


class Looking(Blind):
    name = "looking"

    def __init__(self, spec: VipSpec, behaviour: str) -> None:
        super().__init__(spec)
        self.behaviour = behaviour

    async def _other_owners(self, timeout: float) -> OwnerView:
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        if self.behaviour == "oserror":
            raise OSError(100, "Network is down")
        if self.behaviour == "timeout-inside":
            raise TimeoutError
        return OwnerView(True, frozenset({HOLDER}), "seen")


def test_a_provider_that_cannot_look_says_unknown() -> None:
    view = asyncio.run(Blind(VipSpec(VIP)).other_owners(1.0))
    assert not view.known
    assert not view.nobody_else  # "cannot tell" is never "nobody else"
    assert "cannot see other holders" in view.detail


@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [
        ("hang", "did not finish within 0.05 s"),
        ("oserror", "failed: [Errno 100] Network is down"),
        ("timeout-inside", "a timeout inside"),
    ],
)
def test_a_failed_look_is_unknown_within_the_bound(behaviour: str, detail: str) -> None:
    async def look() -> tuple[OwnerView, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        view = await Looking(VipSpec(VIP), behaviour).other_owners(0.05)
        return view, loop.time() - start

    view, took = asyncio.run(look())
    assert not view.known
    assert detail in view.detail
    assert "looking 198.18.0.200" in view.detail
    assert took < 2.0  # bounded (0.05 s asked; generous for a loaded machine)


def test_a_successful_look_passes_through() -> None:
    view = asyncio.run(Looking(VipSpec(VIP), "ok").other_owners(1.0))
    assert view == OwnerView(True, frozenset({HOLDER}), "seen")
    assert not view.nobody_else
    assert OwnerView(True).nobody_else


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_other_owners_needs_a_positive_timeout(timeout: float) -> None:
    with pytest.raises(VipError, match="timeout must be positive"):
        asyncio.run(Blind(VipSpec(VIP)).other_owners(timeout))


# ----------------------------------------------------------------------------- the arp provider
LINKS = [
    Link(1, "lo", "00:00:00:00:00:00", True, True),
    Link(2, "eth0", "02:5b:c6:12:00:02", True, True),
    Link(3, "eth1", "02:5b:c6:12:00:22", True, True),
]
ADDRESSES = [
    Address(1, ipaddress.IPv4Interface("127.0.0.1/8"), "lo"),
    Address(2, ipaddress.IPv4Interface("198.18.0.2/24"), "eth0"),
    Address(3, ipaddress.IPv4Interface("198.19.0.2/24"), "eth1"),
]


class FakeIPRoute:
    async def __aenter__(self) -> FakeIPRoute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def netlink(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arp provider's view of the node, and a record of the probes it makes."""
    node: dict[str, Any] = {"links": list(LINKS), "probes": [], "answer": None}

    async def snapshot(ipr: object, family: int = 2) -> tuple[list[Link], list[Address]]:
        return node["links"], ADDRESSES

    async def probe(
        interface: str,
        address: ipaddress.IPv4Address,
        *,
        attempts: int,
        interval: float,
        wait: float,
        exclude_macs: Collection[str],
    ) -> OwnerProbe:
        node["probes"].append((interface, address, attempts, interval, wait, set(exclude_macs)))
        return node["answer"] or OwnerProbe(interface, address, sent=attempts)

    monkeypatch.setattr(arp_module, "AsyncIPRoute", FakeIPRoute)
    monkeypatch.setattr(arp_module, "_snapshot", snapshot)
    monkeypatch.setattr(arp_module, "probe_vip_owners", probe)
    return node


def test_arp_probes_where_acquire_would_hold_the_vip_and_leaves_out_every_local_mac(
    netlink: dict[str, Any],
) -> None:
    view = asyncio.run(ArpProvider(VipSpec(VIP)).other_owners(1.0))
    assert view.known and view.nobody_else
    assert "nobody answered" in view.detail
    ((interface, address, attempts, interval, wait, excluded),) = netlink["probes"]
    assert (interface, address) == ("eth0", VIP)
    assert (attempts, interval, wait) == (DEFAULT_ATTEMPTS, DEFAULT_INTERVAL, DEFAULT_WAIT)
    # This node's other NIC answering for a VIP it still holds is not "another holder".
    assert excluded == {"00:00:00:00:00:00", "02:5b:c6:12:00:02", "02:5b:c6:12:00:22"}


def test_arp_probe_on_a_named_interface_and_a_short_budget(netlink: dict[str, Any]) -> None:
    asyncio.run(ArpProvider(VipSpec(VIP, interface="eth1")).other_owners(0.06))
    ((interface, _, attempts, interval, wait, _),) = netlink["probes"]
    assert interface == "eth1"
    assert probe_duration(attempts, interval, wait) <= 0.04 + 1e-9


def test_arp_reports_holders_and_failures(netlink: dict[str, Any]) -> None:
    netlink["answer"] = OwnerProbe("eth0", VIP, owners=frozenset({HOLDER}), sent=3, elapsed=0.11)
    view = asyncio.run(ArpProvider(VipSpec(VIP)).other_owners(1.0))
    assert view == OwnerView(True, frozenset({HOLDER}), view.detail)
    assert "answered by 02:5b:c6:12:00:01" in view.detail
    netlink["answer"] = OwnerProbe("eth0", VIP, error="interface eth0 is down")
    view = asyncio.run(ArpProvider(VipSpec(VIP)).other_owners(1.0))
    assert not view.known
    assert "interface eth0 is down" in view.detail


def test_arp_does_not_probe_on_a_link_without_carrier(netlink: dict[str, Any]) -> None:
    netlink["links"] = [LINKS[0], Link(2, "eth0", "02:5b:c6:12:00:02", True, False), LINKS[2]]
    view = asyncio.run(ArpProvider(VipSpec(VIP)).other_owners(1.0))
    assert not view.known
    assert "eth0 has no carrier" in view.detail
    assert netlink["probes"] == []


def test_arp_with_no_interface_for_the_vip_is_unknown(netlink: dict[str, Any]) -> None:
    view = asyncio.run(ArpProvider(VipSpec(ipaddress.IPv4Address("203.0.113.5"))).other_owners(1.0))
    assert not view.known
    assert "no interface has a network that contains 203.0.113.5" in view.detail


# ----------------------------------------------------------------------------- safekit vip owner
def probe(**kwargs: Any) -> OwnerProbe:
    return OwnerProbe("eth0", VIP, **kwargs)


@pytest.mark.parametrize(
    ("probes", "code"),
    [
        ([probe(sent=3)], 0),
        ([probe(sent=3), probe(sent=3)], 0),
        ([probe(owners=frozenset({HOLDER}))], 1),
        ([probe(sent=3), probe(owners=frozenset({HOLDER}))], 1),
        ([probe(error="interface eth0 is down")], 2),
        ([probe(owners=frozenset({HOLDER})), probe(error="interface eth0 is down")], 2),
        ([], 2),
    ],
)
def test_owner_exit_codes(probes: list[OwnerProbe], code: int) -> None:
    assert cli.owner_exit_code(probes) == code


def test_timing_figures() -> None:
    figures = cli.timing_figures([0.1 + i / 1000 for i in range(100)])
    assert figures["min"] == pytest.approx(0.1)
    assert figures["p50"] == pytest.approx(0.1495)
    assert figures["p99"] == pytest.approx(0.198)
    assert figures["max"] == pytest.approx(0.199)
    assert cli.timing_figures([0.2]) == {"min": 0.2, "p50": 0.2, "p99": 0.2, "max": 0.2}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["owner", "not-an-ip"], "is not an IP address"),
        (["owner", "ff02::1", "-i", "eth0"], "cannot be probed"),
        (["owner", "0.0.0.0", "-i", "eth0"], "cannot be probed"),
        (["owner", "198.18.0.200", "-i", "eth0", "--attempts", "0"], "attempts"),
        (["owner", "198.18.0.200", "-i", "eth0", "--exclude", "nope"], "not an Ethernet MAC"),
        (["owner", "198.18.0.200", "-i", "eth0", "--repeat", "0"], "--repeat"),
    ],
)
def test_owner_usage_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_owner_probe_failure_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["owner", "198.18.0.200", "-i", "nosuchif0"]) == 2
    assert "probe failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (0x1 | 0x40 | 0x1000, None),
        (0x1000, "interface eth0 is down"),
        (0x1, "interface eth0 has no carrier"),
        (0x40, "interface eth0 is down"),
    ],
)
def test_a_link_without_carrier_cannot_say_nobody(flags: int, problem: str | None) -> None:
    # A packet socket sends into a link without carrier without an error: no answer would then
    # read as "nobody holds it", so the probe refuses such a link.
    found = link_problem(flags, "eth0")
    assert found == problem if problem is None else found is not None and found.startswith(problem)
