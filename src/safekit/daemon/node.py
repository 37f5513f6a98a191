"""safekitd's node: loads the configuration, runs the modules, serves the control socket and health.

A module whose configuration is wrong is reported (file:line, in the daemon log and in
`safekit state`) and left out; the daemon and the other modules keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from safekit.checkers.icmp import Pinger
from safekit.checkers.link_events import LinkEvents
from safekit.checkers.probes import address_present
from safekit.config import ClusterConfig, ConfigError, NotANode, load_cluster, load_module
from safekit.config.cluster_parser import parse_cluster
from safekit.config.validation import heartbeat_server_errors, validate_module_against_cluster
from safekit.daemon import control, health
from safekit.daemon.cluster_reload import ModuleUse, ReloadDecision, decide_reload
from safekit.daemon.farm_module import FarmModule
from safekit.daemon.metrics import Metrics
from safekit.daemon.mirror_module import MirrorModule
from safekit.daemon.module_executor import ModuleContext, ModuleError, ModuleRuntime
from safekit.host.control_client import socket_path
from safekit.host.module_packages import boot_status, sha256_file
from safekit.host.paths import Paths
from safekit.membership import clusterkey
from safekit.mirror import CommandKind

log = logging.getLogger("safekit.daemon")

Module = ModuleRuntime
"""Any loaded module, as the node uses it; kind-specific commands check the kind."""

MODULE_COMMANDS = {kind.value: kind for kind in CommandKind}
NODE_COMMANDS = (
    "config",
    "module_list",
    "module_unload",
    "state",
    "shutdown",
    "cluster_confinfo",
    "cluster_reload",
)
MODULE_MODES: dict[str, type[MirrorModule | FarmModule]] = {"mirror": MirrorModule, "farm": FarmModule}


async def find_local_node(cluster: ClusterConfig, hostname: str | None = None) -> str:
    """This host's node of cluster.xml: by its name, else by an address configured here. The
    address lookup (netlink, pyroute2's synchronous API, which refuses to run inside a running
    event loop) runs in a worker thread."""
    name = socket.gethostname() if hostname is None else hostname
    try:
        return await asyncio.to_thread(cluster.local_node, name, address_present)
    except NotANode as exc:
        raise NodeError(f"{exc}; give it with safekitd --node NAME") from exc


class NodeError(Exception):
    """The daemon cannot run at all (no cluster.xml, no key, cannot tell which node it is)."""


class Node:
    def __init__(
        self,
        paths: Paths,
        *,
        node_name: str | None = None,
        health_address: str = "0.0.0.0",  # noqa: S104 - load balancers probe it from outside
        health_port: int = 9010,
        request_stop: Callable[[], None] | None = None,
    ) -> None:
        """`request_stop` stops the daemon as SIGTERM does (`safekit shutdown`)."""
        self.paths = paths
        self.node_name = node_name
        self.health_address = health_address
        self.health_port = health_port
        self.metrics = Metrics()
        self.modules: dict[str, Module] = {}
        self.broken: dict[str, str] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._pinger = Pinger()
        self._link_events = LinkEvents()
        self._request_stop = request_stop
        self._socket = socket_path()
        # sha256 of each configuration as it was loaded (`safekit confinfo`: does the file differ?)
        self.loaded_sha256: dict[str, str] = {}
        self.cluster_sha256: str | None = None
        # called with the new cluster after a live reload, and awaited when they return an awaitable
        # (the API follows: its peers, live view and certificate, api/server.py, ADR 0050)
        self.cluster_listeners: list[Callable[[ClusterConfig], Awaitable[None] | None]] = []
        self._reloading = asyncio.Lock()

    # ------------------------------------------------------------------ start / stop
    async def start(self) -> None:
        cluster = self._cluster = self._load_cluster()
        key = self._key = self._load_key()
        if not self.node_name:
            self.node_name = await find_local_node(cluster)
        log.info(
            "safekitd on node %s: cluster of %s, key %s",
            self.node_name,
            ", ".join(cluster.node_names),
            clusterkey.fingerprint(key),
        )
        self._load_modules(cluster, key)
        self._servers.append(await control.serve(self._socket, self.handle))
        self._servers.append(
            await health.serve(self.health_address, self.health_port, self._ready, self.metrics.registry)
        )
        log.info("control socket %s, health and metrics on port %d", self.paths.socket, self.health_port)
        for module in self.modules.values():
            await module.start(boot=_boots(module))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        await asyncio.gather(*(m.shutdown() for m in self.modules.values()), return_exceptions=True)
        self._pinger.close()
        self._link_events.close()
        with contextlib.suppress(FileNotFoundError):
            self._socket.unlink()

    def _load_cluster(self) -> ClusterConfig:
        path = self.paths.cluster_xml
        try:
            self.cluster_sha256 = sha256_file(path)
            return load_cluster(path)
        except FileNotFoundError as exc:
            raise NodeError(f"{path}: no cluster configuration (see docs/config.md)") from exc
        except ConfigError as exc:
            raise NodeError(str(exc)) from exc

    def _load_key(self) -> bytes:
        try:
            return clusterkey.load_key(self.paths.cluster_key)
        except clusterkey.ClusterKeyError as exc:
            raise NodeError(
                f"{exc} (create it once with 'safekit cluster genkey' and copy it to every node)"
            ) from exc

    def _load_modules(self, cluster: ClusterConfig, key: bytes) -> None:
        if not self.paths.modules.is_dir():
            log.warning("no module directory %s: no module to run", self.paths.modules)
            return
        for directory in sorted(self.paths.modules.iterdir()):
            # A dot directory is `safekit module install` at work (or leftovers of it): not a module.
            if not directory.name.startswith(".") and (directory / "conf" / "userconfig.xml").is_file():
                self._try_load(directory.name, cluster, key)

    def _try_load(self, name: str, cluster: ClusterConfig, key: bytes) -> Module | None:
        """Load one module; a broken one is recorded (with file:line) and left out."""
        assert self.node_name is not None
        self.broken.pop(name, None)
        self.loaded_sha256.pop(name, None)
        try:
            digest = sha256_file(self.paths.module_dir(name) / "conf" / "userconfig.xml")
            result = load_module(self.paths.module_dir(name))
            for warning in result.warnings:
                log.warning("module %s: %s", name, warning)
            foreign = heartbeat_server_errors(result.config, cluster)
            if foreign:  # SafeKit's <server addr> that cluster.xml does not have (ADR 0055)
                raise foreign[0]
            module_class = MODULE_MODES.get(result.config.mode)
            if module_class is None:
                raise ModuleError(
                    f"module {name}: {result.config.mode} modules are not available in this version"
                )
            module = module_class(
                ModuleContext(
                    name=name,
                    config=result.config,
                    cluster=cluster,
                    local_node=self.node_name,
                    key=key,
                    paths=self.paths,
                    metrics=self.metrics,
                    pinger=self._pinger,
                    link_events=self._link_events,
                )
            )
            self._check_ports(module)
        except (ConfigError, ModuleError, OSError, ValueError) as exc:
            self.broken[name] = str(exc)
            log.error("module %s not loaded: %s", name, exc)
            return None
        self.modules[name] = module
        self.loaded_sha256[name] = digest
        return module

    async def apply_module_config(self, name: str) -> dict[str, Any]:
        """`safekit config -m AM`: load the module's configuration again; the module must be stopped."""
        if not name or "/" in name or name.startswith("."):
            return {"ok": False, "error": "give the module with -m AM"}
        current = self.modules.get(name)
        if current is not None and current.module_state != "STOP":
            state = current.module_state
            return {
                "ok": False,
                "error": f"{name} is {state}: a configuration applies to a stopped module "
                f"(safekit stop -m {name}, safekit config -m {name}, then start it again)",
            }
        if not (self.paths.module_dir(name) / "conf" / "userconfig.xml").is_file():
            return {"ok": False, "error": f"no {self.paths.module_dir(name)}/conf/userconfig.xml"}
        if current is not None:
            await current.shutdown()
            del self.modules[name]
            self.metrics.remove_module(name)
        module = self._try_load(name, self._cluster, self._key)
        if module is None:
            return {"ok": False, "error": self.broken[name]}
        await module.start(boot=False)
        return {"ok": True, "message": f"{name}: configuration applied (module stopped; start it when ready)"}

    # ------------------------------------------------------------------ cluster.xml reload
    async def reload_cluster(self, *, dry_run: bool = False, xml: str | None = None) -> dict[str, Any]:
        """`safekit cluster reload`, SIGHUP, the console's apply: take cluster.xml (or, for a dry
        run, the text `xml`) without a restart where no running module depends on what changed
        (daemon/cluster_reload.py decides; ADR 0043). The decision is logged; a refused reload
        changes nothing (safekitd keeps the cluster it runs until it restarts)."""
        async with self._reloading:
            path = self.paths.cluster_xml
            try:
                if xml is None:
                    digest = sha256_file(path)
                    new = load_cluster(path)
                else:
                    digest = None
                    new = parse_cluster(xml, str(path))
                key = clusterkey.load_key(self.paths.cluster_key)
            except (OSError, ConfigError, clusterkey.ClusterKeyError) as exc:
                return self._reload_answer(None, dry_run, error=f"cluster.xml not reloaded: {exc}")
            decision = await self._reload_decision(new, key)
            if dry_run or not decision.accepted or not decision.changes:
                if not dry_run:
                    self._log_reload(decision)
                    if decision.accepted and digest is not None:
                        self.cluster_sha256 = digest  # the same cluster: the file is the one run
                return self._reload_answer(decision, dry_run)
            try:
                await self._apply_reload(new, decision)
            except (OSError, ModuleError, ValueError) as exc:
                log.error("cluster.xml not reloaded: %s (safekitd keeps the cluster it runs)", exc)
                return self._reload_answer(decision, dry_run, error=f"cluster.xml not reloaded: {exc}")
            self.cluster_sha256 = digest
            self._log_reload(decision)
            return self._reload_answer(decision, dry_run)

    async def _reload_decision(self, new: ClusterConfig, key: bytes) -> ReloadDecision:
        assert self.node_name is not None
        uses = [_module_use(module) for module in self.modules.values()]
        decision = decide_reload(
            self._cluster,
            new,
            local_node=self.node_name,
            modules=uses,
            key_changed=key != self._key,
            broken=sorted(self.broken),
        )
        if not decision.accepted:
            return decision
        # What the parser checks too (a node on each network, two nodes for a mirror...), and the
        # new addresses of this node, which must be configured here before a socket binds them.
        refusals = []
        for name in (*decision.relink, *decision.reload_modules):
            for error in validate_module_against_cluster(self.modules[name].config, new):
                refusals.append(f"module {name}: {error.message}")
        for name, lans in decision.relink.items():
            for lan_name in lans:
                lan = new.lan(lan_name)
                me = lan.node(self.node_name) if lan is not None else None
                # netlink (pyroute2's synchronous API) refuses to run inside the event loop
                if me is not None and not await asyncio.to_thread(address_present, me.addr):
                    refusals.append(
                        f"{me.addr} ({lan_name}, module {name}) is not configured on this host: add it "
                        "first, then reload"
                    )
        if refusals:
            return ReloadDecision(False, decision.changes, tuple(refusals))
        return decision

    async def _apply_reload(self, new: ClusterConfig, decision: ReloadDecision) -> None:
        for name, lans in decision.relink.items():
            module = self.modules[name]
            assert isinstance(module, MirrorModule)  # decide_reload relinks running mirrors only
            await module.relink(new, lans)
        self._cluster = new
        for name in decision.reload_modules:
            current = self.modules.pop(name)
            await current.shutdown()
            self.metrics.remove_module(name)
            loaded = self._try_load(name, new, self._key)
            if loaded is not None:
                await loaded.start(boot=False)
        for name in decision.retry_broken:
            loaded = self._try_load(name, new, self._key)
            if loaded is not None:
                await loaded.start(boot=False)
        for listener in self.cluster_listeners:
            try:
                followed = listener(new)
                if followed is not None:
                    await followed
            except Exception:  # the reload is applied: what follows it must not undo nor fail it
                log.exception("cluster.xml reload: a listener failed")

    def _log_reload(self, decision: ReloadDecision) -> None:
        if decision.accepted:
            log.info("cluster.xml reload: %s", decision.summary())
        else:
            log.warning(
                "cluster.xml reload refused: %s; safekitd keeps the cluster it runs", decision.summary()
            )

    def _reload_answer(
        self, decision: ReloadDecision | None, dry_run: bool, error: str | None = None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "ok": error is None and decision is not None and decision.accepted,
            "node": self.node_name,
            "dry_run": dry_run,
            "applied": error is None and decision is not None and decision.accepted and not dry_run,
            "changes": [] if decision is None else list(decision.changes),
            "refusals": [] if decision is None else list(decision.refusals),
            "cluster_sha256": self.cluster_sha256,
        }
        if decision is not None:
            answer["relinked"] = {name: list(lans) for name, lans in decision.relink.items()}
            answer["reloaded_modules"] = list(decision.reload_modules)
            answer["broken"] = sorted(self.broken)
        if error is not None:
            answer["error"] = error
        elif decision is not None and not decision.accepted:
            answer["error"] = f"{self.node_name}: {decision.summary()}"
        else:
            assert decision is not None
            prefix = "would be " if dry_run and decision.changes else ""
            answer["message"] = f"{self.node_name}: {prefix}{decision.summary()}"
        return answer

    def _check_ports(self, module: Module) -> None:
        for other in self.modules.values():
            if other.link.port == module.link.port:
                raise ModuleError(
                    f"module {module.name}: heartbeat port {module.link.port} is already used by module "
                    f"{other.name}; give each module its own <heart port=...>"
                )

    # ------------------------------------------------------------------ health
    def _ready(self, module: str) -> bool | None:
        mod = self.modules.get(module)
        return None if mod is None else mod.ready

    # ------------------------------------------------------------------ control
    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = str(request.get("cmd", ""))
        try:
            if cmd in NODE_COMMANDS:
                return await self._node_command(cmd, request)
            module = self._module(request.get("module"))
            if cmd == "rfs_verify":
                return await self._rfs_verify(module, request)
            if cmd in MODULE_COMMANDS:
                return await self._module_command(module, cmd, request)
            handler = {
                "get": self._get,
                "set": self._set,
                "log": self._log,
                "errd": self._switch,
                "checker": self._switch,
                "failover": self._switch,
                "getports": self._getports,
                "confinfo": self._confinfo,
                "farm_map": self._farm_map,
            }.get(cmd)
            if handler is None:
                return {"ok": False, "error": f"unknown command {cmd!r}"}
            return handler(module, request)
        except LookupError as exc:
            return {"ok": False, "error": str(exc.args[0])}

    async def _rfs_verify(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(module, MirrorModule):
            return {"ok": False, "error": f"{module.name} is a {module.kind} module: nothing replicated"}
        return await module.rfs_verify(float(request.get("timeout") or 600.0))

    async def _module_command(self, module: Module, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("mode") == "fullsync" and isinstance(module, MirrorModule):
            message = module.request_fullsync()
            module.log.info("%s fullsync: %s", cmd, message)
            state = module.module_state
            if (cmd, state) in (("second", "SECOND"), ("prim", "PRIM"), ("prim", "ALONE")):
                return {"ok": True, "message": f"{module.name}: already {state}; {message}"}
        reply = await module.command(MODULE_COMMANDS[cmd])
        key = "message" if reply.accepted else "error"
        return {"ok": reply.accepted, key: f"{module.name}: {reply.reason}"}

    async def _node_command(self, cmd: str, request: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0911 - one return per command
        """Commands about the node's set of modules rather than one running module."""
        if cmd == "config":
            return await self.apply_module_config(str(request.get("module") or ""))
        if cmd == "module_list":
            return {"ok": True, "modules": self._module_list()}
        if cmd == "module_unload":
            return await self.unload_module(str(request.get("module") or ""))
        if cmd == "shutdown":
            return self._shutdown()
        if cmd == "cluster_reload":
            xml = request.get("xml")
            return await self.reload_cluster(
                dry_run=bool(request.get("dry_run")), xml=xml if isinstance(xml, str) else None
            )
        if cmd == "cluster_confinfo":
            return {
                "ok": True,
                "cluster_sha256": self.cluster_sha256,
                "key_fingerprint": clusterkey.fingerprint(self._key),
            }
        return self._state(request.get("module"), bool(request.get("verbose")))

    async def unload_module(self, name: str) -> dict[str, Any]:
        """`safekit module uninstall`: forget a stopped module (its directory is removed by the CLI)."""
        if not name or "/" in name or name.startswith("."):
            return {"ok": False, "error": "give the module with -m AM"}
        current = self.modules.get(name)
        if current is not None:
            if not current.stopped:
                state = current.module_state
                return {
                    "ok": False,
                    "error": f"{name} is {state} ({current.readiness}): only a stopped module is "
                    f"uninstalled (safekit stop -m {name} first)",
                }
            await current.shutdown()
            del self.modules[name]
            self.metrics.remove_module(name)
            current.log.info("module %s unloaded (uninstall)", name)
        elif name not in self.broken:
            return {"ok": True, "unloaded": False, "message": f"{name}: not loaded by safekitd"}
        self.broken.pop(name, None)
        self.loaded_sha256.pop(name, None)
        log.info("module %s unloaded", name)
        return {"ok": True, "unloaded": True, "message": f"{name}: unloaded"}

    def _shutdown(self) -> dict[str, Any]:
        if self._request_stop is None:
            return {"ok": False, "error": "this safekitd cannot be shut down from its control socket"}
        log.info("safekit shutdown: stopping every module, then exiting")
        # The answer is written before this runs: the caller learns that the shutdown began.
        asyncio.get_running_loop().call_soon(self._request_stop)
        names = ", ".join(sorted(self.modules)) or "no module"
        return {
            "ok": True,
            "message": f"safekitd on {self.node_name}: stopping every module ({names}), then exiting",
        }

    def _switch(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        """`errd|checker|failover on|off`: run-time switches, not kept across a daemon restart."""
        cmd, value = str(request.get("cmd")), str(request.get("value"))
        if value not in ("on", "off"):
            return {"ok": False, "error": f"{cmd}: value must be on or off"}
        setter = {"errd": module.set_errd, "checker": module.set_checkers, "failover": module.set_failover}
        message = setter[cmd](value == "on")
        return {"ok": True, "message": message, "controls": module.controls()}

    def _getports(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        lans = {name: f"{lan.local_address} <-> {lan.peer_address}" for name, lan in module.link.lans.items()}
        return {
            "ok": True,
            "module": module.name,
            "heartbeat_port": module.link.port,
            "health_port": self.health_port,
            "lans": lans,
        }

    def _confinfo(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "module": module.name,
            "loaded_sha256": self.loaded_sha256.get(module.name),
        }

    def _get(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        resource = str(request.get("resource"))
        value = module.status(verbose=True)["resources"].get(resource)
        if value is None:
            return {"ok": False, "error": f"{module.name}: no resource {resource!r}"}
        return {"ok": True, "value": value}

    def _set(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        resource, value = str(request.get("resource")), str(request.get("value"))
        if value not in ("up", "down"):
            return {"ok": False, "error": "set: value must be up or down"}
        module.set_resource(resource, value)
        return {"ok": True, "message": f"{module.name}: {resource} = {value}"}

    def _log(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "lines": self._log_lines(module.name, bool(request.get("all")))}

    def _module_list(self) -> list[dict[str, str]]:
        names = sorted(set(self.modules) | set(self.broken))
        return [
            {
                "name": n,
                "loaded": "yes" if n in self.modules else "no",
                "state": self.modules[n].module_state if n in self.modules else "",
                "error": self.broken.get(n, ""),
            }
            for n in names
        ]

    def _farm_map(self, module: Module, request: dict[str, Any]) -> dict[str, Any]:
        """`safekit farm map -m AM`: bucket ownership as this node sees the balancing set."""
        if not isinstance(module, FarmModule):
            return {"ok": False, "error": f"{module.name} is a {module.kind} module: no bucket map"}
        return {"ok": True, "map": module.farm_map()}

    def _module(self, name: object) -> Module:
        if not isinstance(name, str) or not name:
            raise LookupError("give the module with -m AM")
        module = self.modules.get(name)
        if module is None:
            if name in self.broken:
                raise LookupError(f"{name}: not loaded: {self.broken[name]}")
            known = ", ".join(sorted(self.modules)) or "none"
            raise LookupError(f"no module {name!r} on this node (modules: {known})")
        return module

    def _state(self, name: object, verbose: bool) -> dict[str, Any]:
        if name:
            return {"ok": True, "modules": [self._module(name).status(verbose)]}
        modules = [m.status(verbose) for m in self.modules.values()]
        modules += [
            {"name": n, "state": "STOP", "readiness": "NotReady", "reason": f"not loaded: {why}"}
            for n, why in self.broken.items()
        ]
        return {"ok": True, "node": self.node_name, "modules": modules}

    def _log_lines(self, module: str, everything: bool) -> list[str]:
        path = self.paths.module_log(module)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines() if everything else list(deque(f, maxlen=100))
        except FileNotFoundError:
            return []
        return [line.rstrip("\n") for line in lines]


def _module_use(module: Module) -> ModuleUse:
    """What a loaded module takes from cluster.xml (daemon/cluster_reload.py)."""
    config = module.config
    if isinstance(module, MirrorModule) and config.heart is not None:
        lans = tuple(hb.name for hb in config.heart.heartbeats)
        replication = lans[0] if config.rfs is not None and lans else None
        own_port = config.heart.port
    else:
        lans = tuple(lan.name for lan in config.farm.lans) if config.farm is not None else ()
        replication = None
        own_port = config.farm.port if config.farm is not None else None
    return ModuleUse(
        name=module.name,
        kind=module.kind,
        running=not module.stopped,
        lans=lans,
        replication_lan=replication,
        port_from_cluster=own_port is None,
    )


def _boots(module: Module) -> bool:
    """Start the module with the daemon? SafeKit's `boot`: on, off, or auto (as it was)."""
    return boot_status(module.config.service.boot, module.start_at_boot).effective
