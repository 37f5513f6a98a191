"""A VIP owner probe that could not look is not a clear LAN (ADR 0083).

Before a takeover, a node asks its clients' LAN who answers for the VIP (a frozen safekitd leaves
the VIP in its node's kernel until the address's lifetime runs out). The probe has a small time
bound; on a busy host it can be cut before it looked. That used to count as "nobody else": in
the short chaos run a secondary took over while its frozen peer's kernel still answered, and the
clients saw two owners for 0.66 s. Now only a probe that looked clears the VIP; one that could
not leaves the takeover to the next answer."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from mirror_driver import second, settings

from safekit.daemon.module_vips import ModuleVips, OwnerCheck
from safekit.daemon.witness_probes import ping_answer, with_owner_check
from safekit.mirror import ModuleState, WitnessMode, WitnessResult
from safekit.vip import VipCheck, VipProvider, VipSpec, VipState
from safekit.vip.provider import OwnerView

VIP = "198.18.4.200"


class Provider(VipProvider):
    """A provider whose owner probe answers `view`, or sleeps past any bound (`view` None)."""

    def __init__(self, view: OwnerView | None, looks: bool) -> None:
        super().__init__(VipSpec(ipaddress.ip_address(VIP)))
        self.view = view
        self.looks = looks

    @property  # type: ignore[override]
    def sees_other_owners(self) -> bool:  # per instance, for the test
        return self.looks

    async def _other_owners(self, timeout: float) -> OwnerView:
        if self.view is None:
            await asyncio.sleep(10 * timeout)
        assert self.view is not None
        return self.view

    async def _acquire(self) -> bool:
        return True

    async def _release(self) -> bool:
        return True

    async def _check(self) -> VipCheck:
        return VipCheck(VipState.HELD, "")


def check_of(*providers: Provider) -> OwnerCheck:
    vips = ModuleVips(list(providers), logging.getLogger("test"), lambda ev: None, split_brain_bound=0.13)
    return asyncio.run(vips.other_owner())


def test_a_probe_cut_by_its_bound_is_unknown_not_clear() -> None:
    check = check_of(Provider(None, looks=True))
    assert not check.clear and check.owner is None
    assert "did not finish within" in check.unknown


def test_a_probe_that_looked_is_clear_or_names_the_owner() -> None:
    assert check_of(Provider(OwnerView(True), looks=True)).clear
    seen = check_of(Provider(OwnerView(True, frozenset({"02:5b:c6:12:04:02"})), looks=True))
    assert seen.owner == f"02:5b:c6:12:04:02 for {VIP}" and not seen.clear


def test_a_provider_that_cannot_look_does_not_block_a_takeover() -> None:
    # the cloud providers: the API moves the address, no LAN to ask
    blind = Provider(OwnerView(False, detail="cannot see other holders (unknown)"), looks=False)
    assert check_of(blind).clear


def test_an_owner_seen_by_one_provider_wins_over_another_that_could_not_look() -> None:
    failed = Provider(OwnerView(False, detail="eth0 has no carrier"), looks=True)
    owner = Provider(OwnerView(True, frozenset({"02:00:00:00:00:02"})), looks=True)
    check = check_of(failed, owner)
    assert check.owner is not None and check.owner.startswith("02:00:00:00:00:02")


def test_a_grant_carries_the_vip_only_from_a_probe_that_looked() -> None:
    grant = WitnessResult(True, 5.0, sent_at=4.9, generation=3)
    assert with_owner_check(grant, OwnerCheck()) == WitnessResult(
        True, 5.0, sent_at=4.9, generation=3, vip_checked=True
    )
    owned = with_owner_check(grant, OwnerCheck(owner="02:00:00:00:00:02 for x"))
    assert owned.vip_checked and owned.vip_owner == "02:00:00:00:00:02 for x"
    assert with_owner_check(grant, OwnerCheck(unknown="did not finish within 0.065 s")) == grant


def test_a_ping_answer_that_would_allow_a_takeover_waits_for_a_probe_that_looked() -> None:
    assert ping_answer(True, 1.0, 1.1, None) == WitnessResult(True, 1.1, sent_at=1.0)
    assert ping_answer(True, 1.0, 1.1, OwnerCheck()) == WitnessResult(True, 1.1, sent_at=1.0)
    assert ping_answer(True, 1.0, 1.1, OwnerCheck(unknown="no carrier")) is None
    owned = ping_answer(True, 1.0, 1.1, OwnerCheck(owner="m for x"))
    assert owned is not None and owned.other == "m for x"


def test_a_secondary_with_the_lease_takes_over_only_after_a_probe_that_looked() -> None:
    d = second(settings(witness_configured=True, witness_mode=WitnessMode.ARBITRATOR, lease_duration=3.0))
    d.later(1.0)
    d.lost()
    grant = WitnessResult(True, d.later(0.1), sent_at=d.now, generation=d.state.generation)
    for _ in range(12):  # probes cut by their bound, each with a fresh grant, past the guard
        d.feed(with_owner_check(grant, OwnerCheck(unknown="did not finish within 0.065 s")))
        d.tick(0.3)
        grant = WitnessResult(True, d.now, sent_at=d.now, generation=d.state.generation)
    assert d.now - 1.0 > 3.0  # the loss was at 1.0; the guard is 2 s
    assert not d.state.vip_held and d.state.module_state is not ModuleState.ALONE, d.state.reason
    d.feed(with_owner_check(grant, OwnerCheck()))
    d.tick(0.1)
    assert d.state.vip_held or d.state.module_state is ModuleState.ALONE, d.state.reason
