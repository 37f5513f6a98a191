"""What a changed cluster.xml means for a running safekitd, and what it may apply live.

`safekit cluster reload`, SIGHUP and the console's cluster apply ask safekitd to take the
cluster.xml on disk without a restart. This module holds the pure part (ADR 0043): the difference
between the cluster safekitd runs and the new one (`diff_clusters`), and the decision
(`decide_reload`) from that difference and what the loaded modules take from cluster.xml
(`ModuleUse`). The node (`daemon/node.py`) gathers the inputs, logs the decision and executes it.

The rule: a change is applied live only when no running module's state depends on it. Heartbeat
networks may be added, removed (when no module names them) and readdressed (a running mirror's
heartbeat-only network is moved to its new addresses: its socket is bound again; the module's
state, peer and replication are untouched). Everything else is refused with its reason, and the
whole reload then applies nothing (the node keeps running the cluster it runs; a restart applies
the file): the cluster key changed, this node is no longer in the file (renamed), the base port of
a module that takes it from cluster.xml, a running module's peer or node set, the network that
carries a running mirror's replication, every heartbeat network of a running module at once (the
nodes reload one after the other: in between the module would hear its peer on none), and any
network of a running farm module (its membership and relays are built from the addresses).
A stopped module is loaded again with the new cluster (as `safekit config -m` does), and a module
that could not load (a network it names was missing) is tried again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from safekit.config import ClusterConfig
from safekit.config.cluster import Lan


@dataclass(frozen=True)
class ClusterDiff:
    """LANs (by name) and nodes that differ between the running cluster.xml and the new one."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    readdressed: tuple[str, ...] = ()
    """LANs of both whose nodes or addresses differ."""
    command_changed: tuple[str, ...] = ()
    """LANs of both whose `command` flag differs (nothing but -H and the API read it)."""
    nodes_added: tuple[str, ...] = ()
    nodes_removed: tuple[str, ...] = ()
    port_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.readdressed
            or self.command_changed
            or self.nodes_added
            or self.nodes_removed
            or self.port_changed
        )

    def describe(self, old: ClusterConfig, new: ClusterConfig) -> list[str]:
        """One line per change, for the log and the answer."""
        lines = [f"heartbeat network {name} added" for name in self.added]
        lines += [f"heartbeat network {name} removed" for name in self.removed]
        for name in self.readdressed:
            before, after = old.lan(name), new.lan(name)
            assert before is not None and after is not None
            lines.append(f"heartbeat network {name} readdressed: {_addresses(before)} -> {_addresses(after)}")
        lines += [f"heartbeat network {name}: command flag changed" for name in self.command_changed]
        lines += [f"node {name} added" for name in self.nodes_added]
        lines += [f"node {name} removed" for name in self.nodes_removed]
        if self.port_changed:
            lines.append(f"base port {old.port or 'default'} -> {new.port or 'default'}")
        return lines


def _addresses(lan: Lan) -> str:
    return ", ".join(f"{n.name}={n.addr}" for n in lan.nodes)


def _members(lan: Lan) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((n.name, n.addr) for n in lan.nodes))


def diff_clusters(old: ClusterConfig, new: ClusterConfig) -> ClusterDiff:
    old_names = [lan.name for lan in old.lans]
    new_names = [lan.name for lan in new.lans]
    both = [name for name in old_names if name in new_names]
    readdressed, command = [], []
    for name in both:
        before, after = old.lan(name), new.lan(name)
        assert before is not None and after is not None
        if _members(before) != _members(after):
            readdressed.append(name)
        if before.command != after.command:
            command.append(name)
    return ClusterDiff(
        added=tuple(n for n in new_names if n not in old_names),
        removed=tuple(n for n in old_names if n not in new_names),
        readdressed=tuple(readdressed),
        command_changed=tuple(command),
        nodes_added=tuple(n for n in new.node_names if n not in old.node_names),
        nodes_removed=tuple(n for n in old.node_names if n not in new.node_names),
        port_changed=old.port != new.port,
    )


@dataclass(frozen=True)
class ModuleUse:
    """What a loaded module takes from cluster.xml, and whether it runs (any state but STOP)."""

    name: str
    kind: str
    """mirror or farm"""
    running: bool
    lans: tuple[str, ...]
    """The networks it names (mirror: <heartbeat name>, farm: <farm><lan name>), in its order."""
    replication_lan: str | None = None
    """A mirror with <rfs>: the network its replication stream uses (its first heartbeat)."""
    port_from_cluster: bool = False
    """Its heartbeat port is cluster.xml's base port (no port of its own)."""


@dataclass(frozen=True)
class ReloadDecision:
    accepted: bool
    changes: tuple[str, ...]
    """What differs, one line each (empty: the file is the one safekitd runs)."""
    refusals: tuple[str, ...] = ()
    """Why it cannot be applied live (each names the module or node and what to do)."""
    relink: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Running module -> its heartbeat networks to bind again at their new addresses."""
    reload_modules: tuple[str, ...] = ()
    """Stopped modules loaded again with the new cluster."""
    retry_broken: tuple[str, ...] = ()
    """Modules that did not load, tried again."""

    def summary(self) -> str:
        if not self.changes:
            return "cluster.xml is the one safekitd runs: nothing to apply"
        if not self.accepted:
            return "not applied live: " + "; ".join(self.refusals)
        done = ["applied live: " + "; ".join(self.changes)]
        for module, lans in self.relink.items():
            done.append(f"module {module} now sends its heartbeats on {', '.join(lans)} at the new addresses")
        if self.reload_modules:
            done.append(f"stopped module(s) {', '.join(self.reload_modules)} loaded again")
        if self.retry_broken:
            done.append(f"module(s) {', '.join(self.retry_broken)} that did not load tried again")
        return "; ".join(done)


def decide_reload(
    old: ClusterConfig,
    new: ClusterConfig,
    *,
    local_node: str,
    modules: Sequence[ModuleUse],
    key_changed: bool = False,
    broken: Sequence[str] = (),
) -> ReloadDecision:
    """May safekitd on `local_node`, running `old` with `modules` loaded, take `new` live?"""
    diff = diff_clusters(old, new)
    changes = tuple(diff.describe(old, new))
    refusals: list[str] = []
    if key_changed:
        changes = (*changes, "cluster key changed")
        refusals.append(
            "the cluster key file changed: a new key is used from safekitd's next start, on every "
            "node at once (heartbeats signed with two keys are dropped)"
        )
    if local_node not in new.node_names:
        refusals.append(
            f"this node ({local_node}) is not in the new cluster.xml: renaming the local node needs "
            "a restart of safekitd (--node NAME)"
        )
    if diff.empty and not key_changed:
        return ReloadDecision(True, ())
    relink: dict[str, tuple[str, ...]] = {}
    reload_modules: list[str] = []
    for module in modules:
        touched = [lan for lan in module.lans if lan in diff.readdressed or lan in diff.removed]
        port = module.port_from_cluster and diff.port_changed
        missing = [lan for lan in module.lans if new.lan(lan) is None]
        if missing:
            refusals.append(
                f"module {module.name} names heartbeat network(s) {', '.join(missing)} that the new "
                "cluster.xml lacks"
            )
            continue
        if not (touched or port):
            continue
        if not module.running:
            reload_modules.append(module.name)
            continue
        why = next(
            _running_refusals(module, touched, port=port, old=old, new=new, local_node=local_node), None
        )
        if why is not None:
            refusals.append(why)
        else:
            relink[module.name] = tuple(touched)
    if refusals:
        return ReloadDecision(False, changes, tuple(refusals))
    return ReloadDecision(
        True,
        changes,
        relink=relink,
        reload_modules=tuple(reload_modules),
        retry_broken=tuple(broken),
    )


def _running_refusals(
    module: ModuleUse,
    touched: list[str],
    *,
    port: bool,
    old: ClusterConfig,
    new: ClusterConfig,
    local_node: str,
) -> Iterator[str]:
    """Why a running module cannot keep running across these changes of its networks (the first
    reason is the one given)."""
    stop_first = f"stop it first (safekit stop -m {module.name}) or restart safekitd"
    if port:
        yield f"module {module.name} runs on the base port of cluster.xml, which changed: {stop_first}"
    if module.kind != "mirror":
        yield (
            f"module {module.name} ({module.kind}) runs on {', '.join(touched)}: a farm's membership is "
            f"built from the addresses; {stop_first}"
        )
    for name in touched:
        before, after = old.lan(name), new.lan(name)
        assert before is not None and after is not None
        if sorted(n.name for n in before.nodes) != sorted(n.name for n in after.nodes):
            yield f"module {module.name} runs on {name}, whose nodes changed: {stop_first}"
        if after.node(local_node) is None:
            yield f"this node is not on {name} in the new cluster.xml, and module {module.name} runs on it"
    if module.replication_lan in touched:
        yield (
            f"heartbeat network {module.replication_lan} carries the replication of module "
            f"{module.name}, which runs: {stop_first}"
        )
    if set(touched) >= set(module.lans):
        yield (
            f"every heartbeat network of module {module.name} changes at once: while the nodes reload "
            f"one after the other it would hear its peer on none (a failover); change one network per "
            f"reload, or {stop_first}"
        )
