"""The base of every cloud VIP provider: its options (declared, validated at load time), the
deadline of each operation (shared by every call below it), API calls with retries and a record of
each call, the OS side of the address (added with the `arp` provider's netlink code, no gratuitous
ARP, since clouds ignore it), and `validate` for `safekit vip check`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from safekit.vip.arp import ArpProvider
from safekit.vip.cloud import permissions
from safekit.vip.cloud.retry import CallRecord, Verdict, call_with_retry, current_deadline, deadline_scope
from safekit.vip.provider import DEFAULT_TIMEOUT, VipCheck, VipError, VipProvider, VipSpec

T = TypeVar("T")

DEFAULT_ATTEMPT_TIMEOUT = 4.0
"""Seconds one API request may take before it is abandoned and retried."""
DEADLINE_MARGIN = 0.2
"""Part of an operation's time bound kept back so that our own, clearer error arrives first."""


@dataclass(frozen=True)
class Option:
    help: str
    required: bool = False
    default: str | None = None


COMMON_OPTIONS: dict[str, Option] = {
    "endpoint": Option("API endpoint URL (tests, private endpoints); default: the cloud's"),
    "metadata_url": Option("metadata service base URL (tests); default: the cloud's link-local one"),
    "os_address": Option(
        "on: also add the VIP to the node's interface (off for a load balancer)", default="on"
    ),
    "attempt_timeout": Option("seconds one API request may take", default=str(DEFAULT_ATTEMPT_TIMEOUT)),
}


def fixed(call: Callable[..., T], **kwargs: object) -> Callable[[float], T]:
    """`call(**kwargs)` as the `work(timeout)` of `api`, for calls whose timeout is in the client."""
    return lambda _timeout: call(**kwargs)


def split_list(text: str) -> tuple[str, ...]:
    """`a,b c` -> ("a", "b", "c"): lists in options are separated by commas or spaces."""
    return tuple(item for item in text.replace(",", " ").split() if item)


def parse_flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise VipError(f"option {name}={text!r}: give on or off")


def check_options(provider: str, given: Mapping[str, str], declared: Mapping[str, Option]) -> dict[str, str]:
    """The options with defaults filled in; a VipError naming the provider for an unknown or missing one."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise VipError(
            f"{provider}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(declared))}"
        )
    values = {name: opt.default for name, opt in declared.items() if opt.default is not None}
    values.update({k: v.strip() for k, v in given.items()})
    missing = [name for name, opt in declared.items() if opt.required and not values.get(name)]
    if missing:
        details = "; ".join(f"{name}: {declared[name].help}" for name in missing)
        raise VipError(f"{provider}: missing option(s) {details}")
    return values


class CloudVipProvider(VipProvider):
    """Options, deadlines, retried and recorded API calls, and the OS side of the address.

    A subclass sets `cloud`, `OPTIONS` (its own; the common ones are added), implements
    `_classify(exc)` for its SDK's errors, the three operations, and `_validate` (what `safekit vip
    check` runs: the configuration and the permissions, with dry-run calls where the API has them).
    """

    cloud: ClassVar[permissions.Cloud]
    OPTIONS: ClassVar[dict[str, Option]] = {}
    os_address_default: ClassVar[str] = "on"

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        declared = {**COMMON_OPTIONS, **self.OPTIONS}
        declared["os_address"] = Option(COMMON_OPTIONS["os_address"].help, default=self.os_address_default)
        self.options = check_options(self.name, spec.options, declared)
        try:
            self.attempt_timeout = float(self.options["attempt_timeout"])
        except ValueError:
            raise VipError(f"{self.name}: option attempt_timeout: give seconds, e.g. 4") from None
        if not 0 < self.attempt_timeout <= 60:
            raise VipError(f"{self.name}: option attempt_timeout must be in (0, 60] seconds")
        self.os_address = parse_flag("os_address", self.options["os_address"])
        self.calls: list[CallRecord] = []
        """Every API call made (action, mutating, attempts, ok), in order."""
        self.call_totals: dict[tuple[str, str], tuple[int, int]] = {}
        """(action, ok|failed) -> (calls, attempts) since the start: the metrics' counters."""

    # -- deadlines: one budget per operation, for every call below it
    async def acquire(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        with deadline_scope(_budget(timeout)):
            return await super().acquire(timeout)

    async def release(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        with deadline_scope(_budget(timeout)):
            return await super().release(timeout)

    async def check(self, timeout: float = DEFAULT_TIMEOUT) -> VipCheck:
        with deadline_scope(_budget(timeout)):
            return await super().check(timeout)

    async def validate(self, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """What `safekit vip check` shows: one line per thing checked; VipError on the first problem."""
        with deadline_scope(_budget(timeout)):
            return await self._bounded(self._validate, timeout, "check of configuration and permissions")

    async def _validate(self) -> list[str]:
        return []

    def _classify(self, exc: BaseException) -> Verdict:
        return Verdict.FAIL

    # -- API calls
    async def api(self, action: str, work: Callable[[float], T]) -> T:
        """`work(timeout)` in a worker thread, retried per `_classify` within the deadline, recorded.

        `action` must be declared for this provider in `safekit.vip.cloud.permissions`.
        """
        permission = permissions.require(self.name, action)
        record = CallRecord(action, permission.mutating, 0, False)
        self.calls.append(record)
        run = functools.partial(
            call_with_retry, action, work, self._classify, attempt_timeout=self.attempt_timeout
        )
        try:
            result, record.attempts = await asyncio.to_thread(run)
        except Exception:
            record.attempts = max(record.attempts, 1)
            self._count(record)
            raise
        record.ok = True
        self._count(record)
        return result

    def _count(self, record: CallRecord) -> None:
        key = (record.action, "ok" if record.ok else "failed")
        calls, attempts = self.call_totals.get(key, (0, 0))
        self.call_totals[key] = (calls + 1, attempts + record.attempts)

    def mutating_calls(self) -> int:
        return sum(1 for c in self.calls if c.mutating)

    # -- the OS side of the address
    def _local_provider(self) -> VipProvider:
        spec = VipSpec(
            self.spec.address, self.spec.prefixlen or 32, self.spec.interface, "arp", {}, garp_count=0
        )
        return ArpProvider(spec)

    async def add_os_address(self) -> bool:
        if not self.os_address:
            return False
        return await self._local_provider().acquire(timeout=_remaining_or(2.0))

    async def remove_os_address(self) -> bool:
        if not self.os_address:
            return False
        return await self._local_provider().release(timeout=_remaining_or(2.0))

    async def os_address_check(self) -> VipCheck | None:
        if not self.os_address:
            return None
        return await self._local_provider().check(timeout=_remaining_or(2.0))

    def fail(self, what: str) -> VipError:
        return VipError(f"{self.name} {self.spec.address}: {what}")


def _budget(timeout: float) -> float:
    return max(0.05, timeout - min(DEADLINE_MARGIN, timeout * 0.1))


def _remaining_or(seconds: float) -> float:
    return current_deadline().bound(seconds)
