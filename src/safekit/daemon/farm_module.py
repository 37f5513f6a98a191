"""One farm module at run time: the executor of the farm state machine's actions.

Runs the farm membership (`HeartbeatLink`: authenticated heartbeats to every other farm node, every
`pulse`, on every LAN of `<farm>`, with the farm's status codec), the VIP held on every serving
node (`vip.vmac` providers), the nftables rules that make each node serve only its buckets
(`safekit.farm.nft`, loaded by `farm_kernel`), scripts, errd and checkers. Decisions are the pure
machine's (`safekit.farm.machine`); events go through one queue and one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from safekit import farm as fm
from safekit.config import ClusterConfig, ModuleConfig
from safekit.daemon import farm_kernel, libnft
from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink, StatusCodec
from safekit.daemon.module_executor import (
    ModuleContext,
    ModuleError,
    ModuleExecutor,
    Shared,
    previous_incarnation,
    record_incarnation,
)
from safekit.farm import directed, nft
from safekit.farm.groups import GroupError, by_group, group_maps, resolve_groups
from safekit.farm.status_codec import FarmStatus, status_from, wire_fields
from safekit.membership.liveness import LanDown, LanUp, LivenessEvent, PeerLost, PeerUp
from safekit.vip import VipError
from safekit.vip.vmac import VmacProvider

DEFAULT_FARM_PORT = 4800
HANDOVER_PULSES = 3
FARM_STATUS = StatusCodec(wire_fields, status_from)
_FARM_COMMANDS = {kind.value: kind for kind in fm.CommandKind}

log = logging.getLogger("safekit.farm")


class FarmModule(ModuleExecutor[fm.FarmMachine, fm.Event, fm.Action]):
    kind: ClassVar[str] = "farm"
    failover_means: ClassVar[str] = "recorded only: the others always take a lost node's buckets"

    def __init__(self, context: ModuleContext) -> None:
        super().__init__(context)
        name, config, cluster, local_node = context.name, context.config, context.cluster, context.local_node
        key, paths, metrics = context.key, context.paths, context.metrics
        farm = config.farm
        if farm is None:
            raise ModuleError(f"module {name}: a farm module needs <farm>")
        self.timeout = farm.pulse * farm.mlost_count
        lans = _farm_lans(name, config, cluster, local_node, self.timeout)
        self.groups = _groups(name, config, lans, local_node)
        self.settings = fm.settings_for(
            local_node,
            self.groups,
            join_after=self.timeout,
            handover_delay=HANDOVER_PULSES * farm.pulse,
            maxloop=config.service.maxloop,
            loop_interval=config.service.loop_interval,
        )
        self.rules = _farm_rules(name, config, self.groups)
        self.mode = _vmac_mode(name, config)
        self._lan_addresses = _lan_addresses(config, cluster)
        # vmac_directed: what the last load was made from (its flow tables persist between loads).
        self._directed_loaded = False
        self._programmed_members: frozenset[str] = frozenset()
        # vmac_directed: the rulesets of "one member is lost", built while nothing happens, by plan.
        self._takeovers: dict[directed.DirectedPlan, tuple[str, str]] = {}
        self._takeover_task: asyncio.Task[None] | None = None
        self._resolved: tuple[nft.FarmRules, dict[str, ipaddress.IPv4Address], dict[str, str]] | None = None
        self.state = fm.initial_state(time.monotonic())
        self.resources.update({f"farm.{peer}": "init" for lan in lans for peer, _ in lan.peers})
        self.resources["farm.rules"] = "init"
        self.link = HeartbeatLink(
            module=name,
            local_node=local_node,
            key=key,
            lans=lans,
            codec=FARM_STATUS,
            on_status=self._on_peer_status,
            on_liveness=self._on_liveness,
            previous_incarnation=previous_incarnation(paths, name),
        )
        self.link.announce(FarmStatus(local_node, self.state.state, self.state.readiness))
        record_incarnation(paths, name, self.link.incarnation)
        self._last_peer: dict[str, FarmStatus] = {}
        self.vips: list[VmacProvider | farm_kernel.DirectedVip | farm_kernel.Ipv6FarmVip] = [
            _provider(self.mode, a) for a in self.rules.addresses
        ]
        self._failover = config.service.failover
        metrics.add_heartbeat_source(
            name,
            self.link.figures,
            lambda: (self.name, self.link.lateness_p99(), self.link.lateness_histogram),
        )
        self._show_state()

    # ------------------------------------------------------------------ the machine
    def _transition(self, event: fm.Event | Shared) -> tuple[fm.FarmMachine, Sequence[fm.Action]]:
        transition = fm.step(self.settings, self.state, event)
        state, actions = transition.state, transition.actions
        if (
            self.mode == "vmac_directed"
            and state.owned is not None
            and state.views != self.state.views
            and not any(isinstance(a, fm.Program) for a in actions)
        ):
            # Directed rules also name the other nodes' buckets (where to relay): a change of
            # anyone's share reloads them, even when this node's own buckets stay the same.
            actions = [*actions, fm.Program(state.owned)]
        return state, actions

    def _next_deadline(self) -> float | None:
        return fm.next_deadline(self.settings, self.state)

    def _command_event(self, kind: str, now: float) -> fm.Event | None:
        farm_kind = _FARM_COMMANDS.get(kind)
        return None if farm_kind is None else fm.Command(farm_kind, now)

    def _refusal(self, kind: str) -> str:
        return f"{kind} is a mirror command; a farm node has no role to swap"

    def _checker_applies(self, when: str) -> bool:
        return fm.checker_applies(self.state, when)

    def _errd_classes(self) -> frozenset[str]:
        return fm.errd_classes(self.state)

    def _holds_vips(self) -> bool:
        return self.state.vip_held

    def _script_running(self) -> bool:
        return self.state.running is not None

    @property
    def ready(self) -> bool:
        """UP and Ready: in the balancing set (what the health endpoint answers 200 for)."""
        return self.state.state is fm.FarmState.UP and self.state.readiness is fm.Readiness.READY

    @property
    def stopped(self) -> bool:
        return self.state.phase is fm.Phase.STOPPED

    @property
    def failover_enabled(self) -> bool:
        return self._failover

    def _set_failover(self, on: bool) -> None:
        # A farm has no takeover to turn off: the others always take a lost node's buckets.
        self._failover = on

    # ------------------------------------------------------------------ life cycle
    async def start(self, *, boot: bool) -> None:
        farm = self.config.farm
        assert farm is not None
        self.log.info(
            "farm module %s loaded (%s): node %s, pulse %.3f s, node lost after %.2f s, seed %#010x",
            self.name,
            self.mode,
            self.local_node,
            farm.pulse,
            self.timeout,
            self.rules.seed,
        )
        for group in self.groups:
            rules = [r for r in self.rules.rules if r.group == group.name]
            traffic = ", ".join(_describe(r) for r in rules) or "no rule"
            self.log.info("farm group %s; traffic: %s", group.describe(), traffic)
        if libnft.shared() is None:
            self.log.warning(
                "farm rules: libnftables cannot be loaded (%s): each change runs the nft program "
                "(20-130 ms, on the takeover path); install libnftables1",
                libnft.unavailable_reason(),
            )
        await self._check_vip_networks()
        # A crash may have left rules or the VIP here: nothing serves before the machine says so.
        await self._drop_leftovers()
        await self.link.start()
        self.state = dataclasses.replace(self.state, listening_since=time.monotonic())
        self._start_tasks()
        if boot:
            self.submit(fm.Command(fm.CommandKind.START, time.monotonic()))

    async def _check_vip_networks(self) -> None:
        """Warn when a VIP is on an interface where none of the farm's LANs is (`vip_network_warning`)."""
        local = self.local_node
        mine = {lan: nodes[local] for lan, nodes in self._lan_addresses if local in nodes}
        if not mine:
            return  # the farm's LANs have no IPv4 address of this node: nothing to compare with
        for provider in self.vips:
            try:
                interface = (await provider.interface()).name
            except VipError as exc:
                self.log.debug("virtual IP %s: no interface yet (%s)", provider.spec.address, exc)
                continue
            on_interface = await farm_kernel.interface_addresses(interface)
            warning = vip_network_warning(provider.spec.address, interface, on_interface, mine, self.mode)
            if warning is not None:
                self.log.warning("%s", warning)

    async def _drop_leftovers(self) -> None:
        try:
            await farm_kernel.apply(nft.removal(self.rules))
        except farm_kernel.NftError as exc:
            self.log.error("farm rules: could not clear leftovers: %s", exc)
        for provider in self.vips:
            address = provider.spec.address
            try:
                if await provider.release():
                    self.log.warning("virtual IP %s was still here (left by a crash): removed", address)
            except VipError as exc:
                self.log.error("virtual IP %s: could not check for a leftover: %s", address, exc)

    async def shutdown(self) -> None:
        self._cancel_takeovers()
        await self._stop_and_cancel()
        await self.link.close()

    # ------------------------------------------------------------------ inputs
    def _on_peer_status(self, status: FarmStatus, now: float) -> None:
        if self._last_peer.get(status.node) != status:
            self._last_peer[status.node] = status
            self.submit(fm.PeerStatus(status.node, status.state, status.readiness, now))

    def _on_liveness(self, event: LivenessEvent, now: float) -> None:
        if isinstance(event, PeerLost):
            self._last_peer.pop(event.peer, None)
            self.resources[f"farm.{event.peer}"] = "down"
            self.submit(fm.PeerLost(event.peer, now))
        elif isinstance(event, PeerUp):
            self.resources[f"farm.{event.peer}"] = "up"
            self.log.info("farm node %s heard", event.peer)
        elif isinstance(event, LanDown):
            self.log.warning("farm heartbeats from %s lost on LAN %s", event.peer, event.lan)
        elif isinstance(event, LanUp):
            self.log.debug("farm heartbeats from %s on LAN %s", event.peer, event.lan)

    # ------------------------------------------------------------------ actions
    async def _execute_own(self, action: fm.Action) -> None:
        match action:
            case fm.Announce(state=state, readiness=readiness):
                self.link.announce(FarmStatus(self.local_node, state, readiness))
            case fm.RunScript():
                self._run_script(action)
            case fm.Program(owned=owned):
                await self._program(owned)
            case fm.HoldVip(held=held):
                await self._hold_vips(held)

    async def _program(self, owned: frozenset[fm.Slot] | None) -> None:
        try:
            if owned is None:
                self._cancel_takeovers()
                await farm_kernel.apply(nft.removal(self.rules))
                self.resources["farm.rules"] = "init"
                self._directed_loaded = False
                self._resolved = None
                self._programmed_members = frozenset()
                return
            if self.mode == "vmac_directed":
                spec = await self._program_directed(owned)
            else:
                spec = await self._resolved_rules()
                try:
                    payload = nft.ruleset(spec, by_group(owned, self.settings.group_names))
                except ValueError as exc:
                    raise farm_kernel.NftError(str(exc)) from exc
                await farm_kernel.apply(payload)
            failed = farm_kernel.set_sysctls(sorted({a.interface for a in spec.addresses}))
            if failed:
                self.log.warning("farm: could not set %s", ", ".join(failed))
            self.resources["farm.rules"] = "up"
        except (farm_kernel.NftError, VipError) as exc:
            self.resources["farm.rules"] = "down"
            self.log.error("farm rules not loaded: %s", exc)
            self.submit(fm.ServingFailed(str(exc), time.monotonic()))

    async def _program_directed(self, owned: frozenset[fm.Slot]) -> nft.FarmRules:
        """Load this node's directed rules; returns the rules as resolved (interfaces)."""
        local = self.local_node
        members = self.state.members(local)
        views = self.state.views or group_maps(self.groups, members)
        plan = directed.plan(local, views, owned, group_maps(self.groups, members - {local}))
        ready = self._takeovers.get(plan) if self._directed_loaded and self._resolved is not None else None
        self._cancel_takeovers()
        if ready is not None and self._resolved is not None:
            # A member was lost as foreseen: its ruleset is built, only the load is left.
            leaver, text = ready
            await farm_kernel.apply_text(text)
            self.log.info("farm rules for %s's loss were prepared: loaded", leaver)
            spec = self._resolved[0]
        else:
            spec, addresses, macs = await self._directed_inputs()
            try:
                payload = directed.directed_ruleset(
                    spec, plan, addresses, create=not self._directed_loaded, macs=macs
                )
            except ValueError as exc:
                raise farm_kernel.NftError(str(exc)) from exc
            await farm_kernel.apply(payload)
            self._resolved = (spec, addresses, macs)
        self._directed_loaded = True
        announcer = directed.takeover_announcer(self._programmed_members, members)
        self._programmed_members = members
        if announcer == local:
            self.log.info("farm members left: announcing the VIPs with this node's MAC to their clients")
            for provider in self.vips:
                if isinstance(provider, farm_kernel.DirectedVip | farm_kernel.Ipv6FarmVip):
                    try:
                        await provider.announce()
                    except (VipError, OSError) as exc:
                        self.log.error("virtual IP %s not announced: %s", provider.spec.address, exc)
        self._takeover_task = asyncio.create_task(self._prepare_takeovers(members))
        return spec

    def _cancel_takeovers(self) -> None:
        if self._takeover_task is not None and not self._takeover_task.done():
            self._takeover_task.cancel()
        self._takeover_task = None
        self._takeovers = {}

    async def _prepare_takeovers(self, members: frozenset[str]) -> None:
        """Build, in a thread, the ruleset of each "this member is lost" (`directed.takeover_plans`)."""
        if self._resolved is None:
            return
        spec, addresses, macs = self._resolved
        local, groups = self.local_node, self.groups

        def build() -> dict[directed.DirectedPlan, tuple[str, str]]:
            built: dict[directed.DirectedPlan, tuple[str, str]] = {}
            for leaver, the_plan in directed.takeover_plans(local, groups, members).items():
                with contextlib.suppress(ValueError):
                    payload = directed.directed_ruleset(spec, the_plan, addresses, create=False, macs=macs)
                    built[the_plan] = (leaver, json.dumps(payload))
            return built

        self._takeovers = await asyncio.to_thread(build)

    async def _directed_inputs(
        self,
    ) -> tuple[nft.FarmRules, dict[str, ipaddress.IPv4Address], dict[str, str]]:
        """What directed rules are built from besides the plan: the resolved rules, where each node
        is relayed to, and (IPv6 VIPs) each other node's MAC."""
        local = self.local_node
        spec = await self._resolved_rules()
        on_interface: set[ipaddress.IPv4Address] = set()
        for interface in sorted({a.interface for a in spec.addresses}):
            on_interface |= await farm_kernel.interface_addresses(interface)
        addresses = directed.relay_addresses(self._lan_addresses, on_interface)
        macs: dict[str, str] = {}
        for interface in sorted({a.interface for a in spec.of_family("ip6")}):
            peers = {node: address for node, address in addresses.items() if node != local}
            macs.update(await farm_kernel.neighbour_macs(interface, peers))
        return spec, addresses, macs

    async def relay_counters(self) -> tuple[int, int]:
        """vmac_directed: (client packets to the VIPs received here, packets relayed to another node)."""
        return directed.relay_counters(await farm_kernel.list_table(self.rules.table, "netdev"))

    async def _resolved_rules(self) -> nft.FarmRules:
        """The rules with every VIP's interface: where its provider holds it (the configured one, or
        the one whose network contains it)."""
        addresses = [
            dataclasses.replace(address, interface=(await provider.interface()).name)
            for address, provider in zip(self.rules.addresses, self.vips, strict=True)
        ]
        v6 = {a.vip for a in addresses if isinstance(a.vip, ipaddress.IPv6Address)}
        links = [
            (interface, await farm_kernel.nd_link(interface, v6))
            for interface in sorted({a.interface for a in addresses if a.vip in v6})
        ]
        return dataclasses.replace(self.rules, addresses=tuple(addresses), links=tuple(links))

    async def _hold_vips(self, held: bool) -> None:
        for provider in self.vips:
            address = provider.spec.address
            try:
                if held and await provider.acquire():
                    vmac = provider.vmac if not isinstance(provider, farm_kernel.DirectedVip) else None
                    mac = vmac or "this node's own"
                    self.log.info("virtual IP %s added (MAC: %s)", address, mac)
                elif not held and await provider.release():
                    self.log.info("virtual IP %s removed", address)
            except VipError as exc:
                self.log.error("virtual IP %s not %s: %s", address, "added" if held else "removed", exc)

    # ------------------------------------------------------------------ views
    def status(self, verbose: bool = False) -> dict[str, Any]:
        members = sorted(self.state.members(self.local_node))
        data: dict[str, Any] = {**self._status_head(), "peer": None, "members": members}
        if verbose:
            names = self.settings.group_names
            owned = by_group(self.state.owned or (), names)
            pending = by_group(self.state.pending, names)
            data["resources"] = dict(self.resources)
            data["buckets"] = sum(len(b) for b in owned.values())
            data["pending_buckets"] = len(self.state.pending)
            data["groups"] = {
                name: {"buckets": len(owned[name]), "pending_buckets": len(pending[name])} for name in names
            }
            data["vips"] = [str(a.vip) for a in self.rules.addresses]
            data["vmac"] = self.mode
            data["controls"] = self.controls()
        return data

    def farm_map(self) -> dict[str, Any]:
        """`safekit farm map`: who owns which bucket of each group, as this node sees the balancing
        set. The top-level map fields are the first group's (the only one, usually); `groups` has
        every group's."""
        members = self.state.members(self.local_node)
        views = dict(self.state.views or group_maps(self.groups, members))
        names = self.settings.group_names
        owned = by_group(self.state.owned or (), names)
        pending = by_group(self.state.pending, names)
        groups = [
            {
                "name": group.name,
                "every_node": group.every_node,
                "powers": dict(group.powers),
                "owned_here": sorted(owned[group.name]),
                "pending_here": sorted(pending[group.name]),
                "rules": [_describe(r) for r in self.rules.rules if r.group == group.name],
                **views[group.name].to_json(),
            }
            for group in self.groups
        ]
        first = {key: value for key, value in groups[0].items() if key not in ("name", "every_node", "rules")}
        return {
            "module": self.name,
            "node": self.local_node,
            "state": str(self.state.state),
            "readiness": str(self.state.readiness),
            "members": sorted(members),
            "seed": self.rules.seed,
            **first,
            "pending_here": sorted(self.state.pending),
            "groups": groups,
        }


# ----------------------------------------------------------------------------- configuration
def _farm_lans(
    name: str, config: ModuleConfig, cluster: ClusterConfig, local_node: str, timeout: float
) -> list[HeartbeatLan]:
    farm = config.farm
    assert farm is not None
    port = farm.port or cluster.port or DEFAULT_FARM_PORT
    lans: list[HeartbeatLan] = []
    for farm_lan in farm.lans:
        lan = cluster.lan(farm_lan.name)
        if lan is None:
            raise ModuleError(f"module {name}: farm LAN {farm_lan.name!r} is not in cluster.xml")
        me = lan.node(local_node)
        if me is None:
            raise ModuleError(f"module {name}: this node ({local_node}) is not on LAN {farm_lan.name!r}")
        peers = tuple((n.name, n.addr) for n in lan.nodes if n.name != local_node)
        lans.append(HeartbeatLan(farm_lan.name, me.addr, peers, port, farm.pulse, timeout))
    return lans


def _groups(
    name: str, config: ModuleConfig, lans: list[HeartbeatLan], local_node: str
) -> tuple[fm.BalancingGroup, ...]:
    """The balancing groups: each `<group>`'s hosts and powers; a `<group>` without `<cluster>`
    (as in SafeKit) and a module without `<loadbalancing_list>` take every node of the farm's LANs
    with power 1."""
    declared = [
        (g.name, [(h.name, h.power) for h in g.hosts])
        for g in (config.vip.loadbalancing if config.vip is not None else ())
    ]
    farm_nodes = {local_node, *(peer for lan in lans for peer, _ in lan.peers)}
    try:
        return resolve_groups(declared, farm_nodes, local_node)
    except GroupError as exc:
        raise ModuleError(f"module {name}: {exc}") from exc


def _vmac_mode(name: str, config: ModuleConfig) -> str:
    """`vmac_invisible` or `vmac_directed` (SafeKit's default), the same for every interface."""
    interfaces = config.vip.interfaces if config.vip is not None else ()
    kinds = {i.vmac_type for i in interfaces if i.vmac_type is not None}
    if len(kinds) > 1:
        raise ModuleError(
            f"module {name}: every <virtual_interface> of a farm module must have the same type "
            f"(found {', '.join(sorted(kinds))})"
        )
    return kinds.pop() if kinds else "vmac_invisible"


def vip_network_warning(
    vip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    interface: str,
    on_interface: Collection[ipaddress.IPv4Address],
    farm_addresses: Mapping[str, ipaddress.IPv4Address],
    mode: str,
) -> str | None:
    """What to tell the user when `vip` sits on `interface` (whose addresses are `on_interface`) and
    none of this node's farm LAN addresses (`farm_addresses`, LAN -> address) is there; None when
    one is, or when there is none to compare with. The farm's heartbeats then do not cross the
    network its clients use: a cut of the farm's LANs alone makes each node believe it is alone and
    take every bucket while the clients still reach them all - every node answers every new
    connection. With `vmac_directed` the relay also sends on `interface` to addresses that are not
    on its network."""
    if not farm_addresses or any(address in on_interface for address in farm_addresses.values()):
        return None  # nothing to compare with, or a farm LAN is there
    lans = ", ".join(f"{lan} ({address})" for lan, address in farm_addresses.items())
    first = next(iter(farm_addresses))
    text = (
        f"virtual IP {vip} is on {interface}, where this node has no address of the farm's LANs "
        f"({lans}): the farm's heartbeats do not travel on the network of its clients, so a cut of "
        f"those LANs alone would make every node serve every client of {vip} at once; add the LAN "
        f'of {interface} to <farm> (<lan name="..."/>), heartbeats go on every LAN listed'
    )
    if mode == "vmac_directed":
        text += (
            f"; vmac_directed relays on {interface} to the nodes' addresses on {first}, which is not "
            "on that interface: relayed connections will not reach their node"
        )
    return text


def _lan_addresses(
    config: ModuleConfig, cluster: ClusterConfig
) -> list[tuple[str, dict[str, ipaddress.IPv4Address]]]:
    """Every node's address on each farm LAN (cluster.xml): where vmac_directed relays to."""
    farm = config.farm
    found: list[tuple[str, dict[str, ipaddress.IPv4Address]]] = []
    for farm_lan in farm.lans if farm is not None else ():
        lan = cluster.lan(farm_lan.name)
        if lan is None:
            continue
        nodes: dict[str, ipaddress.IPv4Address] = {}
        for node in lan.nodes:
            try:
                nodes[node.name] = ipaddress.IPv4Address(node.addr)
            except ValueError:
                continue  # a name, or IPv6: not a relay target
        found.append((lan.name, nodes))
    return found


def _provider(
    mode: str, address: nft.BalancedAddress
) -> VmacProvider | farm_kernel.DirectedVip | farm_kernel.Ipv6FarmVip:
    """The VIP provider of one farm address: IPv4 by ARP (`vmac` or `vmac_directed`), IPv6 by
    neighbour discovery (`Ipv6FarmVip`, the virtual MAC only for `vmac_invisible`)."""
    interface = address.interface or None
    if isinstance(address.vip, ipaddress.IPv6Address):
        return farm_kernel.Ipv6FarmVip(
            address.vip, interface, address.vmac if mode == "vmac_invisible" else None
        )
    if mode == "vmac_directed":
        return farm_kernel.DirectedVip.for_farm(address.vip, interface)
    return VmacProvider.for_farm(address.vip, interface, address.vmac)


def _describe(rule: nft.TrafficRule) -> str:
    port = "every port" if rule.port is None else f"port {rule.port}"
    return f"{rule.proto} {port} to {rule.vip or 'every VIP'} {rule.filter}"


def _farm_rules(name: str, config: ModuleConfig, groups: Sequence[fm.BalancingGroup]) -> nft.FarmRules:
    vip = config.vip
    addresses: list[nft.BalancedAddress] = []
    if vip is not None:
        for interface in vip.interfaces:
            for addr in interface.addresses:
                address = ipaddress.ip_address(addr.addr)
                addresses.append(nft.BalancedAddress(address, interface.name or "", nft.vmac_for(address)))
    rules: list[nft.TrafficRule] = []
    if vip is not None:
        for group in vip.loadbalancing:
            for rule in group.rules:
                if rule.proto == "arp":
                    continue  # ARP is answered by every node with the vMAC
                target = None if rule.virtual_addr == "*" else ipaddress.ip_address(rule.virtual_addr)
                rules.append(nft.TrafficRule(rule.proto, rule.filter, rule.port, target, group.name))
    for first, second in nft.overlaps(rules):
        raise ModuleError(
            f"module {name}: groups {first.group} and {second.group} both balance {_describe(second)}; "
            "a packet must belong to one group (give them different ports or addresses)"
        )
    return nft.FarmRules(
        nft.table_name(name), tuple(addresses), tuple(rules), nft.seed_for(name), groups[0].name
    )
