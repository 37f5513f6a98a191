"""A mirror module's virtual IPs as the executor handles them: the providers built from
`<vip>`, acquire and release with their bounds, the leftover of a crashed daemon, the lifetime
renewal of `arp` VIPs, and the clients' view of who answers for them (the owner probe).

What to do with a VIP is the state machine's decision (AcquireVip, ReleaseVip); a failure goes
back to it as `ActionFailed` through `report`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from safekit.config import ModuleConfig
from safekit.daemon.timing import Timing
from safekit.mirror import AcquireVip, Action, ActionFailed, Event
from safekit.vip import VipError, VipProvider, VipSpec, create_provider
from safekit.vip.arp import ArpProvider
from safekit.vip.provider import OwnerView

VIP_CALL_TIMEOUT = 5.0
CLOUD_VIP_CALL_TIMEOUT = 30.0
RENEW_INTERVAL = 1.0
OWNER_PROBE_TIMEOUT = 0.15
"""Bound of one VIP owner probe (ARP) before a takeover (issue 13: < 0.2 s)."""


@dataclass(frozen=True)
class OwnerCheck:
    """What this node's VIP providers saw of another holder before a takeover
    (`ModuleVips.other_owner`).

    `owner`: another node answers for a VIP ("MAC, ... for ADDRESS"). `unknown`: why a provider
    that looks (the `arp` provider's probe) could not - a probe cut by its time bound on a busy
    host, a link without carrier, a socket error. Only an answer with neither is a clear LAN: a
    probe that could not look proves nothing (ADR 0083). Providers that cannot look by design (the
    cloud ones) do not make the answer unknown."""

    owner: str | None = None
    unknown: str = ""

    @property
    def clear(self) -> bool:
        return self.owner is None and not self.unknown


def vip_lifetime(timing: Timing) -> int:
    """Seconds an `arp` VIP lives without renewal: 3, or twice the heartbeat timeout if longer.

    Heartbeats are lost well before that when safekitd cannot run, so the VIP never expires under
    a primary that still works; the kernel removes it 0-0.4 s after the lifetime (measured).
    """
    return max(3, math.ceil(2 * timing.timeout))


def owner_probe_budget(split_brain_bound: float) -> float:
    """The VIP owner probe's time: 0.15 s, or half the split-brain bound on a faster heartbeat
    (the fast profile: 0.065 s) - a takeover must not wait for it much (ARP answers on a LAN
    arrive within a millisecond; the probe then plans fewer milliseconds between its 3 probes)."""
    return min(OWNER_PROBE_TIMEOUT, max(0.045, split_brain_bound / 2))


def providers_for(config: ModuleConfig, timing: Timing) -> list[VipProvider]:
    providers: list[VipProvider] = []
    if config.vip is None:
        return providers
    for interface in config.vip.interfaces:
        for addr in interface.addresses:
            options = dict(addr.options)
            if addr.provider == "arp":
                # A VIP that safekitd does not renew disappears by itself (a dead or frozen daemon
                # must not hold it forever; docs/vip.md): renewed every second by `renew_loop`.
                options.setdefault("lifetime", str(vip_lifetime(timing)))
            spec = VipSpec(
                address=ipaddress.ip_address(addr.addr),
                prefixlen=addr.prefix_length,
                interface=interface.name,
                provider=addr.provider,
                options=options,
            )
            providers.append(create_provider(spec))
    return providers


def call_timeout(provider: VipProvider) -> float:
    return VIP_CALL_TIMEOUT if provider.spec.provider == "arp" else CLOUD_VIP_CALL_TIMEOUT


class ModuleVips:
    def __init__(
        self,
        providers: list[VipProvider],
        log: logging.Logger,
        report: Callable[[Event], None],
        split_brain_bound: float,
        observe: Callable[[str, str, str, float], None] | None = None,
    ) -> None:
        self.providers = providers
        self.observe = observe or (lambda provider, operation, outcome, seconds: None)
        """(provider, acquire|release, ok|failed, seconds) of each VIP operation, for the metrics."""
        self.log = log
        self.report = report
        self.split_brain_bound = split_brain_bound
        self.on_node: set[str] = set()
        """VIPs this executor put on the node and has not begun to release: the machine decides to
        hold them (`vip_held`) before the other actions of the transition (the replication's start)
        and the acquire itself are done, and a VIP not yet acquired is not one that went missing."""

    @property
    def addresses(self) -> list[str]:
        return [str(p.spec.address) for p in self.providers]

    @property
    def expiring(self) -> bool:
        """Whether some VIP lives only while renewed (`renew_loop` must run)."""
        return any(isinstance(p, ArpProvider) and p.lifetime is not None for p in self.providers)

    async def acquire(self, action: AcquireVip) -> None:
        for provider in self.providers:
            began = time.monotonic()
            try:
                await provider.acquire(timeout=call_timeout(provider))
                self.on_node.add(str(provider.spec.address))
                self.observe(provider.spec.provider, "acquire", "ok", time.monotonic() - began)
                self.log.info("virtual IP %s acquired", provider.spec.address)
            except VipError as exc:
                self.observe(provider.spec.provider, "acquire", "failed", time.monotonic() - began)
                self.log.error("virtual IP %s not acquired: %s", provider.spec.address, exc)
                self.report(ActionFailed(action, str(exc), time.monotonic()))
                return

    async def release(self, action: Action) -> None:
        # A VIP that stays on a node that must not serve is how split brain hurts: retry within
        # the split-brain bound before reporting a failure.
        deadline = time.monotonic() + self.split_brain_bound
        for provider in self.providers:
            self.on_node.discard(str(provider.spec.address))
            began = time.monotonic()
            while True:
                try:
                    await provider.release(timeout=max(0.1, deadline - time.monotonic()))
                    self.observe(provider.spec.provider, "release", "ok", time.monotonic() - began)
                    self.log.info("virtual IP %s released", provider.spec.address)
                    break
                except VipError as exc:
                    if time.monotonic() >= deadline:
                        self.observe(provider.spec.provider, "release", "failed", time.monotonic() - began)
                        self.log.error("virtual IP %s not released: %s", provider.spec.address, exc)
                        self.report(ActionFailed(action, str(exc), time.monotonic()))
                        return
                    await asyncio.sleep(0.05)

    def cloud_calls(self) -> Iterator[tuple[str, str, str, int, int]]:
        """(provider, action, ok|failed, calls, attempts) of the cloud providers' API calls."""
        for provider in self.providers:
            for (action, outcome), (calls, attempts) in sorted(getattr(provider, "call_totals", {}).items()):
                yield provider.spec.provider, action, outcome, calls, attempts

    async def release_leftovers(self) -> None:
        """At start, before anything may hold them: a VIP still here was left by a crash."""
        for provider in self.providers:
            try:
                if await provider.release(timeout=call_timeout(provider)):
                    self.log.warning(
                        "virtual IP %s was still here (left by a crash): released", provider.spec.address
                    )
            except VipError as exc:
                self.log.error(
                    "virtual IP %s: could not check for a leftover: %s", provider.spec.address, exc
                )

    async def renew_loop(self, held: Callable[[], bool]) -> None:
        """Renew the lifetime of the VIPs this node holds, every second (see `vip_lifetime`).

        A VIP found gone twice in a row while the machine holds it and after this daemon added it
        (it expired while this daemon was frozen, or someone removed it) is not taken again here:
        the peer may have taken over meanwhile. It is reported as a failed acquire; the machine
        decides (stopstart).
        """
        try:
            await self._renew_every_second(held)
        finally:  # the module is closed: the sockets renew kept go with it
            for provider in self.providers:
                if isinstance(provider, ArpProvider):
                    provider.close_renew_socket()

    async def _renew_every_second(self, held: Callable[[], bool]) -> None:
        missing: dict[str, int] = {}
        while True:
            await asyncio.sleep(RENEW_INTERVAL)
            if not held():
                missing.clear()
                continue
            for provider in self.providers:
                if not isinstance(provider, ArpProvider) or provider.lifetime is None:
                    continue
                address = str(provider.spec.address)
                if address not in self.on_node:  # not acquired yet, or being released
                    missing.pop(address, None)
                    continue
                try:
                    still = await provider.renew()
                except VipError as exc:
                    self.log.warning("virtual IP %s: renewing its lifetime failed: %s", address, exc)
                    continue
                if still or not held() or address not in self.on_node:
                    missing.pop(address, None)
                    continue
                missing[address] = missing.get(address, 0) + 1
                if missing[address] >= 2:
                    missing.pop(address)
                    self.on_node.discard(address)  # reported once; the machine decides
                    detail = f"virtual IP {address} is gone from this node (it expired or was removed)"
                    self.log.error("%s: not taking it again by itself", detail)
                    self.report(ActionFailed(AcquireVip(), detail, time.monotonic()))

    async def other_owner(self) -> OwnerCheck:
        """Another node answering for one of our VIPs, as clients would see it (ARP, IPv6 neighbour
        discovery); or why it could not be seen."""
        budget = owner_probe_budget(self.split_brain_bound)
        unknown: list[str] = []
        for provider in self.providers:
            try:
                view = await provider.other_owners(timeout=budget)
            except VipError as exc:
                view = OwnerView(False, detail=str(exc))
            if view.known and view.owners:
                return OwnerCheck(owner=f"{', '.join(sorted(view.owners))} for {provider.spec.address}")
            if not view.known and provider.sees_other_owners:
                unknown.append(str(view))
        return OwnerCheck(unknown="; ".join(unknown))
