"""The VIP provider contract: what a virtual IP is (`VipSpec`), the three operations every provider
offers (`acquire`, `release`, `check`), their errors, and how a provider is found by name.

A provider moves one virtual address to or from *this* node: on a LAN by adding the address and
announcing it with gratuitous ARP (`arp`), in a cloud by calling the cloud's API (later providers).
The daemon calls `acquire` when the node becomes the one that serves (PRIM, ALONE, UP), `release`
when it stops serving, and `check` periodically for the `ip` checker and `safekit state -v`.
`other_owners` (optional) tells what the provider sees of *another* holder of the address, the way
clients would find it (an ARP probe on a LAN): evidence for or against a takeover.

Every operation is idempotent (calling it again after it succeeded changes nothing and succeeds)
and bounded in time (it finishes, or fails with `VipError`, within its `timeout`). The base class
enforces both bounds and error wrapping once, so that a provider only writes the work itself.

Providers are found through the entry point group `safekit.vip`: a package registers
`name = "module:Class"` and a module's configuration names the provider (default `arp`).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, TypeVar

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "safekit.vip"
DEFAULT_PROVIDER = "arp"
DEFAULT_TIMEOUT = 10.0
"""Seconds an operation may take when the caller gives no timeout (a cloud API call with retries
fits; the arp provider needs well under one second)."""
DEFAULT_GARP_COUNT = 3
DEFAULT_GARP_INTERVAL = 0.1
MAX_GARP_COUNT = 100
MAX_GARP_INTERVAL = 10.0
# Linux interface names: at most 15 bytes, no '/', no whitespace, not "." or "..".
_IFNAME_RE = re.compile(r"^[^/\s:]{1,15}$")
_OPTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

LOOKING = "looking for other holders of the address"

T = TypeVar("T")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
"""A VIP: IPv4 (announced by ARP) or IPv6 (by neighbour discovery; the `arp` provider only)."""


class VipError(Exception):
    """A VIP operation failed or was refused; the message is one line saying what, where and what to do."""


class VipState(enum.Enum):
    HELD = "held"
    """This node holds the address and can serve it."""
    NOT_HELD = "not held"
    """This node does not hold the address (the normal state of a secondary)."""
    DEGRADED = "degraded"
    """This node holds the address but cannot serve it (link down, no carrier, cloud says otherwise)."""


@dataclass(frozen=True)
class OwnerView:
    """What a provider sees of other holders of its VIP (`VipProvider.other_owners`).

    `known` False: the provider cannot tell (it has no way to look, or looking failed); `owners`
    then proves nothing, and `detail` says why. `known` True with no owners: the provider looked
    and no one else holds the address *as far as it can see* (on a LAN: no host reachable from
    this node answers for it). `owners` are provider-specific names of the holders (MAC addresses
    for `arp`). `detail` is one line for the log.
    """

    known: bool
    owners: frozenset[str] = frozenset()
    detail: str = ""

    @property
    def nobody_else(self) -> bool:
        """True only when the provider looked and saw no other holder."""
        return self.known and not self.owners

    def __str__(self) -> str:
        return self.detail or ("unknown" if not self.known else ", ".join(sorted(self.owners)) or "nobody")


@dataclass(frozen=True)
class VipCheck:
    """The outcome of `VipProvider.check`: a state and, unless all is well, a reason a user can act on."""

    state: VipState
    reason: str = ""

    @property
    def held(self) -> bool:
        return self.state is VipState.HELD

    def __str__(self) -> str:
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value


def max_prefix(address: IPAddress) -> int:
    """32 for an IPv4 address, 128 for an IPv6 one."""
    return address.max_prefixlen


def parse_prefix(text: str, bits: int = 32) -> int:
    """A prefix length from `24` or a netmask `255.255.255.0` (SafeKit's `netmask` attribute);
    `bits` 128: an IPv6 prefix length (IPv6 has no netmask form)."""
    text = text.strip()
    if text.isdigit():
        prefixlen = int(text)
        if not 0 < prefixlen <= bits:
            raise VipError(f"prefix length {text} is out of range: give 1 to {bits}")
        return prefixlen
    if bits != 32:
        raise VipError(f"{text!r} is not an IPv6 prefix length (1 to 128)")
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        raise VipError(f"{text!r} is neither a prefix length (24) nor a netmask (255.255.255.0)") from None


def parse_vip_address(text: str) -> tuple[IPAddress, int | None]:
    """`A`, `A/24`, `A/255.255.255.0` or `fd00::10/64` -> (address, prefix length or None)."""
    address_text, _, prefix_text = text.strip().partition("/")
    try:
        address: IPAddress = ipaddress.ip_address(address_text)
    except ValueError:
        raise VipError(f"{address_text!r} is not an IP address (e.g. 192.168.1.10 or fd00::10)") from None
    return address, parse_prefix(prefix_text, max_prefix(address)) if prefix_text else None


def _check_address(address: IPAddress) -> None:
    if address.is_unspecified or address.is_loopback or address.is_multicast or address.is_link_local:
        raise VipError(f"{address} cannot be a virtual IP: give a unicast address of the node's network")
    if address == ipaddress.IPv4Address("255.255.255.255"):
        raise VipError(f"{address} cannot be a virtual IP: it is the broadcast address")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise VipError(f"{address} cannot be a virtual IP: give the IPv4 address itself")


@dataclass(frozen=True)
class VipSpec:
    """One virtual IP as the configuration describes it: what to hold, where, and with which provider.

    `prefixlen` None means "the prefix of the interface's network that contains the address"
    (SafeKit's default netmask). `interface` None means "the interface whose connected network
    contains the address". `options` are the provider's own settings (strings, from the config).
    """

    address: IPAddress
    prefixlen: int | None = None
    interface: str | None = None
    provider: str = DEFAULT_PROVIDER
    options: Mapping[str, str] = field(default_factory=dict, hash=False)
    garp_count: int = DEFAULT_GARP_COUNT
    garp_interval: float = DEFAULT_GARP_INTERVAL
    """Seconds between two gratuitous ARP packets of one burst."""

    def __post_init__(self) -> None:
        if not isinstance(self.address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise VipError(f"virtual IP {self.address!r} must be an IPv4 or IPv6 address")
        _check_address(self.address)
        bits = max_prefix(self.address)
        if self.prefixlen is not None and not (
            isinstance(self.prefixlen, int)
            and not isinstance(self.prefixlen, bool)
            and 0 < self.prefixlen <= bits
        ):
            raise VipError(
                f"{self.address}: prefix length {self.prefixlen!r} is out of range: give 1 to {bits}"
            )
        if self.interface is not None and (
            not _IFNAME_RE.match(self.interface) or self.interface in (".", "..")
        ):
            raise VipError(
                f"{self.address}: {self.interface!r} is not a Linux interface name "
                "(1-15 characters, no '/', ':' or spaces)"
            )
        if not _OPTION_NAME_RE.match(self.provider):
            raise VipError(
                f"{self.address}: {self.provider!r} is not a provider name (lower-case, e.g. 'arp')"
            )
        frozen: dict[str, str] = {}
        for key, value in dict(self.options).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise VipError(
                    f"{self.address}: provider option {key!r}={value!r}: names and values are strings"
                )
            frozen[key] = value
        # A read-only copy: a spec never changes after it was validated, even if the caller's dict does.
        object.__setattr__(self, "options", MappingProxyType(frozen))
        if isinstance(self.garp_count, bool) or not isinstance(self.garp_count, int):
            raise VipError(f"{self.address}: garp_count {self.garp_count!r} must be an integer")
        if not 0 <= self.garp_count <= MAX_GARP_COUNT:
            raise VipError(
                f"{self.address}: garp_count {self.garp_count} is out of range: give 0 to {MAX_GARP_COUNT}"
            )
        if isinstance(self.garp_interval, bool) or not isinstance(self.garp_interval, int | float):
            raise VipError(
                f"{self.address}: garp_interval {self.garp_interval!r} must be a number of seconds"
            )
        if not 0 <= self.garp_interval <= MAX_GARP_INTERVAL:
            raise VipError(
                f"{self.address}: garp_interval {self.garp_interval} s is out of range: "
                f"give 0 to {MAX_GARP_INTERVAL:g} s"
            )

    def __str__(self) -> str:
        prefix = f"/{self.prefixlen}" if self.prefixlen is not None else ""
        where = f" on {self.interface}" if self.interface else ""
        return f"{self.address}{prefix}{where} ({self.provider})"


class VipProvider(abc.ABC):
    """Moves one virtual IP to or from this node.

    Subclasses implement `_acquire`, `_release` and `_check`; the public methods add what every
    provider must guarantee: one operation at a time per provider, a time bound, and `VipError`
    (never a bare OSError or SDK exception) on failure.

    Contract of the public methods:
    - `acquire()`: on return, this node holds the address and has announced it (GARP, cloud API
      accepted). Calling it on a held address re-announces it and succeeds. Returns True when it
      changed something, False when the address was already in place.
    - `release()`: on return, this node no longer holds the address. Not holding it is success.
      Returns True when it changed something.
    - `check()`: observes, changes nothing. `VipError` only when the observation itself failed.
    - `other_owners(timeout)`: observes who *else* holds the address, changes nothing, never
      raises for a failed observation (it answers "unknown" with the reason). Not serialised with
      acquire/release: it reads the network, not this node's state. Providers that cannot look
      (the cloud providers today) answer "unknown", and say so with `sees_other_owners` False.
    """

    name: ClassVar[str] = ""
    """The entry point name (`arp`, ...), used in messages."""
    ipv6: ClassVar[bool] = False
    """Whether the provider can hold an IPv6 VIP (the `arp` provider, by neighbour discovery)."""
    sees_other_owners: ClassVar[bool] = False
    """Whether `other_owners` looks (the `arp` provider: an ARP or neighbour discovery probe of
    the LAN). For such a provider an "unknown" answer is a probe that failed, not a LAN without
    another holder (ADR 0083); one that cannot look always answers "unknown"."""

    def __init__(self, spec: VipSpec) -> None:
        if isinstance(spec.address, ipaddress.IPv6Address) and not self.ipv6:
            raise VipError(
                f"{self.name or type(self).__name__} {spec.address}: this provider holds IPv4 "
                "virtual IPs only (IPv6 ones: the arp provider, by neighbour discovery)"
            )
        self.spec = spec
        self._lock = asyncio.Lock()

    async def acquire(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        return await self._bounded(self._acquire, timeout, "acquire")

    async def release(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        return await self._bounded(self._release, timeout, "release")

    async def check(self, timeout: float = DEFAULT_TIMEOUT) -> VipCheck:
        return await self._bounded(self._check, timeout, "check")

    async def other_owners(self, timeout: float) -> OwnerView:
        """Who else holds this VIP, as this provider can see it; bounded by `timeout` seconds."""
        if not timeout > 0:
            raise VipError(f"{self._where()}: other_owners timeout must be positive, not {timeout!r}")
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await self._other_owners(timeout)
        except TimeoutError:
            if not deadline.expired():
                return OwnerView(False, detail=f"{self._where()}: {LOOKING} failed: a timeout inside")
            return OwnerView(False, detail=f"{self._where()}: {LOOKING} did not finish within {timeout:g} s")
        except Exception as exc:
            return OwnerView(False, detail=f"{self._where()}: {LOOKING} failed: {exc}")

    async def _other_owners(self, timeout: float) -> OwnerView:
        """Override to look; `timeout` is the caller's bound (the base class enforces it as well)."""
        return OwnerView(False, detail=f"{self._where()}: this provider cannot see other holders (unknown)")

    async def settle(self) -> None:  # noqa: B027 - an optional hook: most providers have nothing to wait for
        """Wait for work `acquire` left running in the background (a one-shot caller exits after it)."""

    @abc.abstractmethod
    async def _acquire(self) -> bool: ...

    @abc.abstractmethod
    async def _release(self) -> bool: ...

    @abc.abstractmethod
    async def _check(self) -> VipCheck: ...

    def _where(self) -> str:
        return f"{self.name or type(self).__name__} {self.spec.address}"

    async def _bounded(self, work: Callable[[], Awaitable[T]], timeout: float, operation: str) -> T:
        if not timeout > 0:
            raise VipError(f"{self._where()}: {operation} timeout must be positive, not {timeout!r}")
        deadline = asyncio.timeout(timeout)
        try:
            # acquire and release of the same address must not interleave (a release half-way
            # through an acquire would leave an announcement without the address); waiting for
            # the other operation counts in this one's time bound.
            async with deadline, self._lock:
                return await work()
        except TimeoutError:
            if not deadline.expired():
                raise VipError(
                    f"{self._where()}: {operation} failed: a timeout inside the provider"
                ) from None
            raise VipError(
                f"{self._where()}: {operation} did not finish within {timeout:g} s "
                "(abandoned; check the node's interfaces, or the cloud API's reachability)"
            ) from None
        except VipError:
            raise
        except Exception as exc:
            raise VipError(f"{self._where()}: {operation} failed: {exc}") from exc


def _registered() -> list[EntryPoint]:
    """The entry points of the group `safekit.vip` (importlib.metadata is loaded here, on first need:
    the `safekit` command line imports this module for its constants)."""
    from importlib.metadata import entry_points  # noqa: PLC0415

    return list(entry_points(group=ENTRY_POINT_GROUP))


def available_providers() -> list[str]:
    """Names registered in the entry point group `safekit.vip`, sorted."""
    return sorted({ep.name for ep in _registered()})


def load_provider(name: str) -> type[VipProvider]:
    """The provider class registered under `name` in the entry point group `safekit.vip`."""
    matches = [ep for ep in _registered() if ep.name == name]
    if not matches:
        known = ", ".join(available_providers()) or "none (is safekit installed?)"
        raise VipError(
            f"unknown VIP provider {name!r}: known providers are {known} "
            f"(providers register in the entry point group {ENTRY_POINT_GROUP!r}; "
            "cloud providers need the extra, e.g. pip install 'safekit[aws]')"
        )
    entry_point = matches[0]
    try:
        loaded = entry_point.load()
    except Exception as exc:
        raise VipError(f"VIP provider {name!r} ({entry_point.value}) cannot be loaded: {exc}") from exc
    if not (isinstance(loaded, type) and issubclass(loaded, VipProvider)):
        raise VipError(f"VIP provider {name!r} ({entry_point.value}) is not a VipProvider subclass")
    return loaded


def create_provider(spec: VipSpec) -> VipProvider:
    """A provider instance for `spec`, found by `spec.provider`."""
    return load_provider(spec.provider)(spec)
