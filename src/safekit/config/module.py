"""The model of a module's `userconfig.xml`: frozen dataclasses, durations in float seconds.

Names follow SafeKit's elements (`Heart`, `Heartbeat`, `Vip`, `Rfs`, `Errd`, ...). Defaults are the
values used when the file is silent; where they differ from SafeKit's (heartbeat timing) the
constant below says so. Every list is a tuple so that a loaded configuration can be shared
between tasks without copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from safekit.config.failover_rules import FailoverRule

Mode = Literal["mirror", "farm"]
Boot = Literal["on", "off", "auto", "ignore"]
CheckerAction = Literal["wait", "restart", "stopstart", "stop"]
When = Literal["prim", "both", "pre"]

# Faster than SafeKit's 700 ms / 30 s: heartbeats are authenticated and sent on every LAN, so a
# short timeout is safe; a file that spells out SafeKit's values keeps them.
DEFAULT_HEARTBEAT_PULSE: Final = 0.2
DEFAULT_HEARTBEAT_TIMEOUT: Final = 1.5
DEFAULT_FARM_PULSE: Final = 0.1
# SafeKit loses a farm node after 20 missed pulses (2 s); 4 (0.4 s) detects a lost node within
# 0.5 s. Farm heartbeats are authenticated; a file that spells out 20 keeps it.
DEFAULT_FARM_MLOST_COUNT: Final = 4
DEFAULT_CHECK_INTERVAL: Final = 10.0
DEFAULT_CHECK_TIMEOUT: Final = 5.0
DEFAULT_MODULE_PORT: Final = 9010


@dataclass(frozen=True, slots=True)
class Service:
    """`<service>`: the kind of module and its restart policy."""

    mode: Mode
    boot: Boot = "auto"
    failover: bool = True
    # "alone", "lastprim" or a node name of cluster.xml.
    defaultprim: str = "alone"
    maxloop: int = 3
    loop_interval: float = 24 * 3600.0
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One heartbeat on a LAN of cluster.xml; `ident="flow"` also carries replication."""

    name: str
    pulse: float = DEFAULT_HEARTBEAT_PULSE
    timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    ident: str | None = None
    line: int = field(default=0, compare=False)
    servers: tuple[tuple[str, int], ...] = field(default=(), compare=False)
    """SafeKit's `<server addr>` children, (address, line): not used to send (cluster.xml's LAN
    gives the addresses), only checked against it (ADR 0055)."""

    @property
    def carries_replication(self) -> bool:
        return self.ident == "flow"


@dataclass(frozen=True, slots=True)
class Heart:
    """`<heart>`: mirror heartbeats; pulse and timeout here are the defaults of each heartbeat."""

    heartbeats: tuple[Heartbeat, ...]
    port: int | None = None
    pulse: float = DEFAULT_HEARTBEAT_PULSE
    timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class FarmLan:
    name: str
    power: int = 1
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Farm:
    """`<farm>`: farm membership; a node is lost after `mlost_count` missed pulses.

    `port` (our extension, like `<heart port>`): the UDP port of the farm heartbeats.
    """

    lans: tuple[FarmLan, ...]
    pulse: float = DEFAULT_FARM_PULSE
    mlost_count: int = DEFAULT_FARM_MLOST_COUNT
    slost_count: int = 10
    port: int | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class VirtualAddress:
    addr: str
    where: Literal["one_side_alias", "alias"]
    prefix_length: int | None = None
    check: bool = True
    line: int = field(default=0, compare=False)
    provider: str = "arp"
    """The VIP provider (entry point of `safekit.vip`): `arp` on a LAN, `aws_route`, ... in a cloud."""
    options: tuple[tuple[str, str], ...] = ()
    """The provider's `<option name value/>` children, in order."""


@dataclass(frozen=True, slots=True)
class VipInterface:
    """`<interface>` with either `<real_interface>` (mirror) or `<virtual_interface>` (farm)."""

    addresses: tuple[VirtualAddress, ...]
    kind: Literal["real", "virtual"]
    name: str | None = None
    check: bool = False
    arpinterval: float = 60.0
    vmac_type: Literal["vmac_directed", "vmac_invisible"] | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class LoadBalancingHost:
    name: str
    power: int = 1
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class LoadBalancingRule:
    # "*" means every virtual address of the module; port None means every port.
    virtual_addr: str
    port: int | None
    proto: Literal["tcp", "udp", "arp"]
    filter: Literal["on_addr", "on_port", "on_ipid"]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class LoadBalancing:
    """`<group>` of `<loadbalancing_list>`: which hosts share which traffic, with what weight.

    `hosts` empty: the group had no `<cluster>`, so (as in SafeKit) every node of the cluster shares
    it with power 1.
    """

    name: str
    hosts: tuple[LoadBalancingHost, ...]
    rules: tuple[LoadBalancingRule, ...]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Vip:
    interfaces: tuple[VipInterface, ...]
    loadbalancing: tuple[LoadBalancing, ...] = ()
    tcpreset: bool = True
    line: int = field(default=0, compare=False)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a.addr for i in self.interfaces for a in i.addresses)


@dataclass(frozen=True, slots=True)
class NotReplicated:
    """Excluded from replication: `path` relative to the replicated dir, or a `regexpath`."""

    path: str | None = None
    regexpath: str | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ReplicatedDir:
    dir: str
    read_only: bool = False
    notreplicated: tuple[NotReplicated, ...] = ()
    tocheck: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Rfs:
    """`<rfs>`: replicated directories. `async_mode="second"`: acknowledged on receipt by the
    secondary; `"none"`: after its disk write."""

    replicated: tuple[ReplicatedDir, ...]
    async_mode: Literal["second", "none"] = "second"
    locktimeout: float = 100.0
    sendtimeout: float = 30.0
    reitimeout: float = 150.0
    nbrei: int = 3
    packetsize: int | None = None
    syncdelta: float | None = None
    namespacepolicy: int | None = None
    line: int = field(default=0, compare=False)
    # Extension: what a node that lost a split brain must leave free when it saves its changed
    # files aside (docs/replication.md, "When a split brain happened"): "10%" or a size ("2G").
    splitbrain_keep_free: str = "10%"
    # Extension: the kernel's writeback cache on the native FUSE front (`writeback="on"`;
    # docs/replication.md, "The writeback cache", ADR 0030). Off: every write reaches the stream.
    writeback: bool = False


@dataclass(frozen=True, slots=True)
class UserVar:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class User:
    """`<user>`: the restart scripts run only when it is present; `<var>` become environment."""

    nicestoptimeout: float = 300.0
    forcestoptimeout: float = 300.0
    logging: Literal["userlog", "none"] = "userlog"
    vars: tuple[UserVar, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ProcCheck:
    """`<proc>` of `<errd>`: a process (or service) to watch; `atmax=-1` means no upper bound.
    With both `name` and `nameregex`, `nameregex` matches and `name` is the check's ident."""

    action: Literal["restart", "stopstart", "stop", "noaction"]
    process_class: Literal["prim", "both", "pre", "second", "sec"]
    name: str | None = None
    nameregex: str | None = None
    argregex: str | None = None
    service: bool = False
    atleast: int = 1
    atmax: int = -1
    start_after: int | None = None
    line: int = field(default=0, compare=False)

    @property
    def ident(self) -> str:
        """What the check is called (resource proc.IDENT): its name, else its nameregex."""
        return self.name or self.nameregex or "proc"

    @property
    def matched_name(self) -> str | None:
        """The exact process name to match: none when nameregex is given (then name is only the
        check's ident, as in SafeKit's templates that give both)."""
        return None if self.nameregex is not None else self.name


@dataclass(frozen=True, slots=True)
class Errd:
    procs: tuple[ProcCheck, ...]
    polltimer: float = 30.0
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class CheckTarget:
    """`<to>` of a checker: what it probes (address, port or interface name) and how often."""

    addr: str | None = None
    port: int | None = None
    interface: str | None = None
    interval: float = DEFAULT_CHECK_INTERVAL
    timeout: float = DEFAULT_CHECK_TIMEOUT
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class TcpCheck:
    ident: str
    targets: tuple[CheckTarget, ...]
    when: When
    action: CheckerAction = "restart"
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class PingCheck:
    ident: str
    targets: tuple[CheckTarget, ...]
    when: When
    action: CheckerAction = "wait"
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class IntfCheck:
    """`<intf ident>`: the network interface must be up with carrier. `vip=True`: not written by the
    user but added for an `<interface check="on">` of `<vip>`; a target without an interface name
    then stands for the interface that carries its `addr` (the VIP's network)."""

    ident: str
    targets: tuple[CheckTarget, ...]
    when: When
    action: CheckerAction = "wait"
    line: int = field(default=0, compare=False)
    vip: bool = False


@dataclass(frozen=True, slots=True)
class IpCheck:
    """`<ip ident>`: the address must be configured on a local interface. `vip=True`: not written by
    the user but added for a `<virtual_addr check="on">` (SafeKit does the same): it acts only while
    the module holds its virtual IPs."""

    ident: str
    targets: tuple[CheckTarget, ...]
    when: When
    action: CheckerAction = "stopstart"
    line: int = field(default=0, compare=False)
    vip: bool = False


@dataclass(frozen=True, slots=True)
class ModuleCheck:
    """`<module name>`: another module, probed through its API (default port 9010)."""

    name: str
    targets: tuple[CheckTarget, ...]
    when: When
    action: CheckerAction = "wait"
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class CustomCheck:
    ident: str
    exec: str
    when: When
    arg: str | None = None
    action: CheckerAction = "stopstart"
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class SplitBrain:
    """`<splitbrain>`: the witness(es) a node must reach to stay or become primary alone.

    `exec="ping"` (SafeKit's): any of `witnesses` answering pings. `exec="arbitrator"` (our
    extension, docs/arbiter.md): the one `safekit arbiter` service at `witnesses[0]:port`, which
    leases the right to serve without the peer to one node at a time.
    """

    witnesses: tuple[str, ...]
    ident: str = "witness"
    exec: str = "ping"
    line: int = field(default=0, compare=False)
    port: int = 9455  # arbitrator only


@dataclass(frozen=True, slots=True)
class Check:
    tcp: tuple[TcpCheck, ...] = ()
    ping: tuple[PingCheck, ...] = ()
    intf: tuple[IntfCheck, ...] = ()
    ip: tuple[IpCheck, ...] = ()
    module: tuple[ModuleCheck, ...] = ()
    custom: tuple[CustomCheck, ...] = ()
    splitbrain: SplitBrain | None = None

    def resource_names(self) -> frozenset[str]:
        """Resources the checkers publish (`tcp.x`, `custom.y`, `splitbrain.uptodate`, ...)."""
        names = {f"tcp.{c.ident}" for c in self.tcp}
        names |= {f"ping.{c.ident}" for c in self.ping}
        names |= {f"intf.{c.ident}" for c in self.intf}
        names |= {f"ip.{c.ident}" for c in self.ip}
        names |= {f"module.{c.name}" for c in self.module}
        names |= {f"custom.{c.ident}" for c in self.custom}
        if self.splitbrain is not None:
            names.add("splitbrain.uptodate")
        return frozenset(names)


@dataclass(frozen=True, slots=True)
class Failover:
    """`<failover>`: user rules, evaluated every `period`; an action must hold `handle_time`.

    `extends=True`: the rules add to the built-in ones instead of replacing them.
    """

    rules: tuple[FailoverRule, ...] = ()
    extends: bool = True
    period: float = 5.0
    handle_time: float = 15.0
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ModuleConfig:
    """A whole `userconfig.xml`, with macros already expanded."""

    service: Service
    heart: Heart | None = None
    farm: Farm | None = None
    vip: Vip | None = None
    rfs: Rfs | None = None
    user: User | None = None
    errd: Errd | None = None
    check: Check = field(default_factory=Check)
    failover: Failover = field(default_factory=Failover)
    macros: tuple[tuple[str, str], ...] = ()
    filename: str = field(default="userconfig.xml", compare=False)

    @property
    def mode(self) -> Mode:
        return self.service.mode

    @property
    def runs_scripts(self) -> bool:
        return self.user is not None
