"""One farm module at run time: the executor of the farm state machine's actions.

Runs the farm membership (`HeartbeatLink`: authenticated heartbeats to every other farm node, every
`pulse`, on every LAN of `<farm>`, with the farm's status codec), the VIP held on every serving
node (`vip.vmac` providers), the nftables rules that make each node serve only its buckets
(`safekit.farm.nft`, loaded by `farm_kernel`), scripts, errd and checkers. Decisions are the pure
machine's (`safekit.farm.machine`); events go through one queue and one task.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from safekit import farm as fm
from safekit.config import ClusterConfig, ModuleConfig
from safekit.daemon import farm_kernel
from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink, StatusCodec
from safekit.daemon.module_executor import (
    ModuleContext,
    ModuleError,
    ModuleExecutor,
    Shared,
    previous_incarnation,
    record_incarnation,
)
from safekit.farm import nft
from safekit.farm.buckets import compute_map
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
        self.powers = _powers(name, config, lans, local_node)
        self.settings = fm.settings_for(
            local_node,
            self.powers,
            join_after=self.timeout,
            handover_delay=HANDOVER_PULSES * farm.pulse,
            maxloop=config.service.maxloop,
            loop_interval=config.service.loop_interval,
        )
        self.rules = _farm_rules(name, config)
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
        self.vips = [VmacProvider.for_farm(a.vip, a.interface or None, a.vmac) for a in self.rules.addresses]
        self._failover = config.service.failover
        metrics.add_heartbeat_source(name, self.link.figures, lambda: (self.name, self.link.lateness_p99()))
        self._show_state()

    # ------------------------------------------------------------------ the machine
    def _transition(self, event: fm.Event | Shared) -> tuple[fm.FarmMachine, Sequence[fm.Action]]:
        transition = fm.step(self.settings, self.state, event)
        return transition.state, transition.actions

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
            "farm module %s loaded: node %s, farm %s, pulse %.3f s, node lost after %.2f s, seed %#010x",
            self.name,
            self.local_node,
            ", ".join(f"{n} (power {p})" for n, p in sorted(self.powers.items())),
            farm.pulse,
            self.timeout,
            self.rules.seed,
        )
        # A crash may have left rules or the VIP here: nothing serves before the machine says so.
        await self._drop_leftovers()
        await self.link.start()
        self.state = dataclasses.replace(self.state, listening_since=time.monotonic())
        self._start_tasks()
        if boot:
            self.submit(fm.Command(fm.CommandKind.START, time.monotonic()))

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

    async def _program(self, owned: frozenset[int] | None) -> None:
        try:
            if owned is None:
                await farm_kernel.apply(nft.removal(self.rules))
                self.resources["farm.rules"] = "init"
                return
            spec = await self._resolved_rules()
            await farm_kernel.apply(nft.ruleset(spec, owned))
            failed = farm_kernel.set_sysctls(sorted({a.interface for a in spec.addresses}))
            if failed:
                self.log.warning("farm: could not set %s", ", ".join(failed))
            self.resources["farm.rules"] = "up"
        except (farm_kernel.NftError, VipError) as exc:
            self.resources["farm.rules"] = "down"
            self.log.error("farm rules not loaded: %s", exc)
            self.submit(fm.ServingFailed(str(exc), time.monotonic()))

    async def _resolved_rules(self) -> nft.FarmRules:
        """The rules with every VIP's interface: where its provider holds it (the configured one, or
        the one whose network contains it)."""
        addresses = [
            dataclasses.replace(address, interface=(await provider.interface()).name)
            for address, provider in zip(self.rules.addresses, self.vips, strict=True)
        ]
        return dataclasses.replace(self.rules, addresses=tuple(addresses))

    async def _hold_vips(self, held: bool) -> None:
        for provider in self.vips:
            address = provider.spec.address
            try:
                if held and await provider.acquire():
                    self.log.info("virtual IP %s added (virtual MAC %s)", address, provider.vmac)
                elif not held and await provider.release():
                    self.log.info("virtual IP %s removed", address)
            except VipError as exc:
                self.log.error("virtual IP %s not %s: %s", address, "added" if held else "removed", exc)

    # ------------------------------------------------------------------ views
    def status(self, verbose: bool = False) -> dict[str, Any]:
        members = sorted(self.state.members(self.local_node))
        data: dict[str, Any] = {**self._status_head(), "peer": None, "members": members}
        if verbose:
            data["resources"] = dict(self.resources)
            data["buckets"] = len(self.state.owned or ())
            data["pending_buckets"] = len(self.state.pending)
            data["vips"] = [str(a.vip) for a in self.rules.addresses]
            data["controls"] = self.controls()
        return data

    def farm_map(self) -> dict[str, Any]:
        """`safekit farm map`: who owns which bucket, as this node sees the balancing set."""
        members = self.state.members(self.local_node)
        view = self.state.view or compute_map(self.powers, members)
        return {
            "module": self.name,
            "node": self.local_node,
            "state": str(self.state.state),
            "readiness": str(self.state.readiness),
            "members": sorted(members),
            "powers": dict(sorted(self.powers.items())),
            "owned_here": sorted(self.state.owned or ()),
            "pending_here": sorted(self.state.pending),
            "seed": self.rules.seed,
            **view.to_json(),
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


def _powers(name: str, config: ModuleConfig, lans: list[HeartbeatLan], local_node: str) -> dict[str, int]:
    """Every farm node and its power: the `<loadbalancing_list>` hosts, else every node of the LANs."""
    groups = config.vip.loadbalancing if config.vip is not None else ()
    if len(groups) > 1:
        raise ModuleError(
            f"module {name}: {len(groups)} <group>s in <loadbalancing_list>; this version balances one "
            "group (put every <rule> in one <group>)"
        )
    if groups:
        powers = {host.name: host.power for host in groups[0].hosts}
        if local_node not in powers:
            raise ModuleError(
                f"module {name}: this node ({local_node}) is not a <host> of <loadbalancing_list>"
            )
        return powers
    nodes = {local_node: 1}
    for lan in lans:
        for peer, _ in lan.peers:
            nodes[peer] = 1
    return nodes


def _farm_rules(name: str, config: ModuleConfig) -> nft.FarmRules:
    vip = config.vip
    addresses: list[nft.BalancedAddress] = []
    if vip is not None:
        for interface in vip.interfaces:
            if interface.vmac_type == "vmac_directed":
                raise ModuleError(
                    f'module {name}: <virtual_interface type="vmac_directed"> is not available in this '
                    'version; use type="vmac_invisible" (see docs/farm.md)'
                )
            for addr in interface.addresses:
                address = ipaddress.IPv4Address(addr.addr)
                addresses.append(nft.BalancedAddress(address, interface.name or "", nft.vmac_for(address)))
    rules: list[nft.TrafficRule] = []
    if vip is not None:
        for group in vip.loadbalancing:
            for rule in group.rules:
                if rule.proto == "arp":
                    continue  # ARP is answered by every node with the vMAC
                filter_ = "on_port" if rule.filter == "on_port" else "on_addr"
                target = None if rule.virtual_addr == "*" else ipaddress.IPv4Address(rule.virtual_addr)
                rules.append(nft.TrafficRule(rule.proto, filter_, rule.port, target))  # type: ignore[arg-type]
    return nft.FarmRules(nft.table_name(name), tuple(addresses), tuple(rules), nft.seed_for(name))
