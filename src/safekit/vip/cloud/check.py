"""`safekit vip check -m AM`: for each virtual address of a module, load its provider (options are
validated at load), then let a cloud provider check its identity, the resources it names and its
permissions (`validate`: reads, and dry-run writes where the cloud's API has them). Nothing is
changed (except on a stand-in that ignores DryRun, which `validate` reports as an error).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from safekit.vip.cloud.base import CloudVipProvider
from safekit.vip.provider import VipError, VipSpec, create_provider


@dataclass(frozen=True)
class VipTarget:
    """One `<virtual_addr>` as the configuration gives it."""

    address: str
    prefixlen: int | None
    interface: str | None
    provider: str
    options: Mapping[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass
class VipCheckResult:
    target: VipTarget
    ok: bool
    lines: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "address": self.target.address,
            "provider": self.target.provider,
            "line": self.target.line,
            "ok": self.ok,
            "lines": self.lines,
        }


def spec_of(target: VipTarget) -> VipSpec:
    return VipSpec(
        address=ipaddress.ip_address(target.address),
        prefixlen=target.prefixlen,
        interface=target.interface,
        provider=target.provider,
        options=dict(target.options),
    )


async def check_vips(targets: Sequence[VipTarget], timeout: float) -> list[VipCheckResult]:
    results: list[VipCheckResult] = []
    for target in targets:
        try:
            provider = create_provider(spec_of(target))
        except (VipError, ValueError) as exc:
            results.append(VipCheckResult(target, False, [f"configuration: {exc}"]))
            continue
        lines = [f"configuration: {provider.spec}: valid"]
        if not isinstance(provider, CloudVipProvider):
            results.append(VipCheckResult(target, True, [*lines, "no cloud API to check"]))
            continue
        try:
            lines += await provider.validate(timeout)
        except VipError as exc:
            results.append(VipCheckResult(target, False, [*lines, str(exc)]))
            continue
        results.append(VipCheckResult(target, True, lines))
    return results
