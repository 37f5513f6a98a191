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
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from safekit.checkers import errd
from safekit.checkers.icmp import Pinger
from safekit.config import ClusterConfig, CustomCheck, ModuleConfig
from safekit.daemon import farm_kernel
from safekit.daemon.checker_tasks import checker_specs, run_checker, run_custom
from safekit.daemon.heartbeats import HeartbeatLan, HeartbeatLink, StatusCodec
from safekit.daemon.metrics import Metrics
from safekit.daemon.mirror_module import ModuleError, _module_logger
from safekit.daemon.module_parts import check_actions, script_runner
from safekit.farm import machine as fm
from safekit.farm import nft
from safekit.farm.buckets import compute_map
from safekit.farm.status_codec import FarmStatus, status_from, wire_fields
from safekit.host import persist
from safekit.host.paths import Paths
from safekit.membership.liveness import LanDown, LanUp, LivenessEvent, PeerLost, PeerUp
from safekit.scripts import Script, ScriptRunner
from safekit.vip import VipError
from safekit.vip.vmac import VmacProvider

DEFAULT_FARM_PORT = 4800
HANDOVER_PULSES = 3
FARM_STATUS = StatusCodec(wire_fields, status_from)
_LEVELS = {
    fm.LogLevel.INFO: logging.INFO,
    fm.LogLevel.WARNING: logging.WARNING,
    fm.LogLevel.ERROR: logging.ERROR,
}
_BOOT_INTENT = {"start": True, "stopstart": True, "stop": False, "forcestop": False}
_FARM_COMMANDS = {kind.value: kind for kind in fm.CommandKind}

log = logging.getLogger("safekit.farm")


@dataclasses.dataclass
class _Queued:
    event: fm.Event
    reply: asyncio.Future[fm.CommandReply] | None = None


class FarmModule:
    kind = "farm"

    def __init__(
        self,
        *,
        name: str,
        config: ModuleConfig,
        cluster: ClusterConfig,
        local_node: str,
        key: bytes,
        paths: Paths,
        metrics: Metrics,
        pinger: Pinger,
    ) -> None:
        self.name = name
        self.config = config
        self.paths = paths
        self.metrics = metrics
        self.pinger = pinger
        self.local_node = local_node
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
        self.log = _module_logger(name, paths)
        self.state = fm.initial_state(time.monotonic())
        self.resources: dict[str, str] = {f"farm.{peer}": "init" for lan in lans for peer, _ in lan.peers}
        self.resources["farm.rules"] = "init"
        self.link = HeartbeatLink(
            module=name,
            local_node=local_node,
            key=key,
            lans=lans,
            codec=FARM_STATUS,
            on_status=self._on_peer_status,
            on_liveness=self._on_liveness,
            previous_incarnation=_load_incarnation(paths.module_var(name) / "incarnation"),
        )
        self.link.announce(FarmStatus(local_node, self.state.state, self.state.readiness))
        persist.write_json(paths.module_var(name) / "incarnation", {"incarnation": self.link.incarnation})
        self.scripts: ScriptRunner | None = script_runner(name, config, paths)
        self._checker_specs = checker_specs(config.check, pinger)
        self._checks: dict[str, tuple[str, str]] = check_actions(config, self._checker_specs)
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._script_tasks: dict[int, asyncio.Task[None]] = {}
        self._last_peer: dict[str, FarmStatus] = {}
        self.vips = [VmacProvider.for_farm(a.vip, a.interface or None, a.vmac) for a in self.rules.addresses]
        self.errd_enabled = True
        self.checkers_enabled = True
        self.failover_enabled = config.service.failover
        metrics.add_heartbeat_source(name, self.link.figures, lambda: (self.name, self.link.lateness_p99()))
        self._show_state()

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
        self._tasks.append(asyncio.create_task(self._event_loop(), name=f"{self.name}-events"))
        for spec in self._checker_specs:
            self._tasks.append(asyncio.create_task(run_checker(spec, self.set_resource), name=spec.resource))
        for custom in self.config.check.custom:
            self._tasks.append(
                asyncio.create_task(self._custom_checker(custom), name=f"custom.{custom.ident}")
            )
        if self.config.errd is not None and self.config.errd.procs:
            self._tasks.append(asyncio.create_task(self._errd_loop(), name=f"{self.name}-errd"))
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
        if not self.stopped:
            reply = await self.command_kind(fm.CommandKind.STOP, operator=False)
            self.log.info("daemon shutdown: %s", reply.reason)
            await self.wait_for(lambda: self.stopped, timeout=self._stop_budget())
        for task in [*self._tasks, *self._script_tasks.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.link.close()

    @property
    def stopped(self) -> bool:
        return self.state.phase is fm.Phase.STOPPED

    def _stop_budget(self) -> float:
        user = self.config.user
        return 10.0 + (2 * (user.nicestoptimeout + user.forcestoptimeout) if user else 0.0)

    async def wait_for(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # ------------------------------------------------------------------ inputs
    def submit(self, event: fm.Event) -> None:
        self._queue.put_nowait(_Queued(event))

    async def command(self, kind: Any) -> fm.CommandReply:
        """An operator command by SafeKit name (the node passes the mirror's command kinds)."""
        farm_kind = _FARM_COMMANDS.get(str(kind))
        if farm_kind is None:
            return fm.CommandReply(
                str(kind), False, f"{kind} is a mirror command; a farm node has no role to swap"
            )
        return await self.command_kind(farm_kind)

    async def command_kind(self, kind: fm.CommandKind, *, operator: bool = True) -> fm.CommandReply:
        future: asyncio.Future[fm.CommandReply] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Queued(fm.Command(kind, time.monotonic()), future))
        reply = await future
        if operator and reply.accepted and str(kind) in _BOOT_INTENT:
            persist.write_json(self.paths.boot_file(self.name), {"start_at_boot": _BOOT_INTENT[str(kind)]})
        return reply

    @property
    def start_at_boot(self) -> bool:
        try:
            data = persist.read_json(self.paths.boot_file(self.name))
        except ValueError:
            return False
        return bool(data and data.get("start_at_boot"))

    def set_errd(self, on: bool) -> str:
        before, self.errd_enabled = self.errd_enabled, on
        return self._switched("errd", before, on)

    def set_checkers(self, on: bool) -> str:
        before, self.checkers_enabled = self.checkers_enabled, on
        if on and not before:
            for resource in self._checks:
                if self.resources.get(resource) == "down":
                    self._verdict(resource)
        return self._switched("checker", before, on)

    def set_failover(self, on: bool) -> str:
        # A farm has no takeover to turn off: the others always take a lost node's buckets.
        before, self.failover_enabled = self.failover_enabled, on
        return self._switched("failover", before, on)

    def _switched(self, switch: str, before: bool, on: bool) -> str:
        word = "on" if on else "off"
        if before == on:
            return f"{self.name}: {switch} already {word}"
        self.log.warning("operator: %s %s", switch, word)
        return f"{self.name}: {switch} {word}"

    def controls(self) -> dict[str, str]:
        return {
            "errd": "on" if self.errd_enabled else "off",
            "checker": "on" if self.checkers_enabled else "off",
            "failover": "on" if self.failover_enabled else "off",
        }

    def set_resource(self, resource: str, value: str) -> None:
        before = self.resources.get(resource)
        self.resources[resource] = value
        if before == value:
            return
        self.log.info("resource %s: %s -> %s", resource, before or "unknown", value)
        if resource not in self._checks:
            return
        if value == "up":
            self.submit(fm.ResourceUp(resource, time.monotonic()))
        elif value == "down":
            self._verdict(resource)

    def _verdict(self, resource: str) -> None:
        when, action = self._checks[resource]
        if (
            when != "pre"
            and self.state.state is not fm.FarmState.UP
            and self.state.phase is not fm.Phase.WAITING
        ):
            return
        if not self.checkers_enabled:
            self.log.warning("checker off: %s down, action %s not taken", resource, action)
            return
        self.submit(
            fm.CheckerVerdict(fm.CheckerAction(action), resource, time.monotonic(), "checker reports down")
        )

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

    # ------------------------------------------------------------------ the loop
    async def _event_loop(self) -> None:
        while True:
            deadline = fm.next_deadline(self.settings, self.state)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                item = _Queued(fm.Tick(time.monotonic()))
            try:
                await self._step(item)
            except Exception:
                self.log.exception("internal error while handling %s", type(item.event).__name__)
                if item.reply is not None and not item.reply.done():
                    item.reply.set_exception(RuntimeError("internal error; see the module log"))

    async def _step(self, item: _Queued) -> None:
        before = self.state
        transition = fm.step(self.settings, self.state, item.event)
        self.state = transition.state
        replies: list[fm.CommandReply] = []
        for action in transition.actions:
            await self._execute(action, replies)
        if item.reply is not None and not item.reply.done():
            item.reply.set_result(replies[0] if replies else fm.CommandReply("", True, self.state.reason))
        if (before.state, before.readiness) != (self.state.state, self.state.readiness):
            if before.state != self.state.state:
                self.metrics.transitions.labels(self.name, str(before.state), str(self.state.state)).inc()
            self._show_state()

    def _show_state(self) -> None:
        self.metrics.set_state(self.name, str(self.state.state), self.ready)

    @property
    def ready(self) -> bool:
        """UP and Ready: in the balancing set (what the health endpoint answers 200 for)."""
        return self.state.state is fm.FarmState.UP and self.state.readiness is fm.Readiness.READY

    async def _execute(self, action: fm.Action, replies: list[fm.CommandReply]) -> None:
        match action:
            case fm.Log(level=level, text=text):
                self.log.log(_LEVELS[level], "%s", text)
            case fm.Announce(state=state, readiness=readiness):
                self.link.announce(FarmStatus(self.local_node, state, readiness))
            case fm.RunScript():
                self._run_script(action)
            case fm.Program(owned=owned):
                await self._program(owned)
            case fm.HoldVip(held=held):
                await self._hold_vips(held)
            case fm.CommandReply():
                replies.append(action)

    # ------------------------------------------------------------------ actions
    def _run_script(self, action: fm.RunScript) -> None:
        runner = self.scripts

        async def run() -> None:
            ok, detail = True, "no <user>: no script runs"
            if runner is not None:
                result = await runner.run(
                    Script(action.script.value),
                    str(action.current),
                    str(action.next),
                    action.action,
                    forced=action.forced,
                )
                ok, detail = result.ok, result.describe()
            self._script_tasks.pop(action.run_id, None)
            self.submit(fm.ScriptDone(action.run_id, action.script, ok, time.monotonic(), detail))

        self.log.info("running %s %s", action.script, " ".join(action.argv()))
        self._script_tasks[action.run_id] = asyncio.create_task(run(), name=f"{self.name}-{action.script}")

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

    # ------------------------------------------------------------------ checkers
    async def _custom_checker(self, custom: CustomCheck) -> None:
        userbin = self.paths.module_dir(self.name) / "bin"
        program = custom.exec if custom.exec.startswith("/") else str(userbin / custom.exec)
        command = shlex.join([program]) + (f" {custom.arg}" if custom.arg else "")
        env = self.scripts.environment.variables() if self.scripts else {}
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["SAFEKIT_CHECKER"] = f"custom.{custom.ident}"
        await run_custom(f"custom.{custom.ident}", command, env=env, cwd=userbin, log=self.log)

    async def _errd_loop(self) -> None:
        errd_cfg = self.config.errd
        assert errd_cfg is not None
        rules = [
            errd.ProcessRule(
                ident=p.name or p.nameregex or "proc",
                name=p.name,
                nameregex=p.nameregex,
                argregex=p.argregex,
                atleast=p.atleast,
                atmax=p.atmax,
                action=p.action,
            )
            for p in errd_cfg.procs
        ]
        while True:
            await asyncio.sleep(errd_cfg.polltimer)
            if not self.ready or self.state.running is not None:
                continue
            processes = await asyncio.to_thread(errd.scan)
            for verdict in errd.evaluate(rules, processes):
                resource = f"proc.{verdict.rule.ident}"
                self.resources[resource] = "up" if verdict.ok else "down"
                if verdict.ok or not self.errd_enabled or verdict.rule.action == "noaction":
                    continue
                self.log.warning("errd: %s: action %s", verdict.reason, verdict.rule.action)
                action = fm.CheckerAction(verdict.rule.action)
                self.submit(fm.CheckerVerdict(action, resource, time.monotonic(), verdict.reason))

    # ------------------------------------------------------------------ views
    def status(self, verbose: bool = False) -> dict[str, Any]:
        members = sorted(self.state.members(self.local_node))
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "state": str(self.state.state),
            "readiness": str(self.state.readiness),
            "reason": self.state.reason,
            "node": self.local_node,
            "peer": None,
            "members": members,
        }
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


def _load_incarnation(path: Path) -> int | None:
    try:
        data = persist.read_json(path)
        return int(data["incarnation"]) if data else None
    except (ValueError, KeyError, TypeError):
        return None
