"""Checks that need both files: a module's references to the LANs and nodes of cluster.xml."""

from __future__ import annotations

from safekit.config.cluster import ClusterConfig
from safekit.config.errors import ConfigError
from safekit.config.module import ModuleConfig

_SPECIAL_DEFAULTPRIM = ("alone", "lastprim")


def validate_module_against_cluster(module: ModuleConfig, cluster: ClusterConfig) -> list[ConfigError]:
    """Every problem of `module` given `cluster` (empty when they fit together).

    Errors point at the module file's lines: that is where the reference is written.
    """
    errors: list[ConfigError] = []

    def error(line: int, element: str, message: str) -> None:
        errors.append(ConfigError(module.filename, line, element, message))

    lan_names = ", ".join(lan.name for lan in cluster.lans) or "none"
    nodes = cluster.node_names
    if module.heart is not None:
        for heartbeat in module.heart.heartbeats:
            lan = cluster.lan(heartbeat.name)
            if lan is None:
                error(
                    heartbeat.line,
                    "heartbeat",
                    f"no LAN named {heartbeat.name!r} in {cluster.filename} (LANs: {lan_names})",
                )
            elif len(lan.nodes) < 2:
                error(
                    heartbeat.line,
                    "heartbeat",
                    f"LAN {lan.name!r} of {cluster.filename} has {len(lan.nodes)} node(s); a mirror needs 2",
                )
    errors += heartbeat_server_errors(module, cluster)
    if module.farm is not None:
        for farm_lan in module.farm.lans:
            if cluster.lan(farm_lan.name) is None:
                error(
                    farm_lan.line,
                    "lan",
                    f"no LAN named {farm_lan.name!r} in {cluster.filename} (LANs: {lan_names})",
                )
    prim = module.service.defaultprim
    if prim not in _SPECIAL_DEFAULTPRIM and prim not in nodes:
        error(
            module.service.line,
            "service",
            f"attribute 'defaultprim': {prim!r} is neither alone, lastprim nor a node of {cluster.filename} "
            f"(nodes: {', '.join(nodes) or 'none'})",
        )
    if module.vip is not None:
        for group in module.vip.loadbalancing:
            for host in group.hosts:
                if host.name not in nodes:
                    error(
                        host.line,
                        "host",
                        f"{host.name!r} is not a node of {cluster.filename} (nodes: {', '.join(nodes)})",
                    )
    return sorted(errors, key=lambda e: e.line)


def heartbeat_server_errors(module: ModuleConfig, cluster: ClusterConfig) -> list[ConfigError]:
    """SafeKit's `<heartbeat><server addr>` that are not addresses of the nodes on the heartbeat's
    LAN in cluster.xml: the module would heartbeat elsewhere than its file says (ADR 0055). Also
    checked when safekitd loads the module."""
    errors: list[ConfigError] = []
    for heartbeat in module.heart.heartbeats if module.heart is not None else ():
        lan = cluster.lan(heartbeat.name)
        if lan is None:
            continue  # reported as an unknown LAN
        known = {node.addr for node in lan.nodes}
        have = ", ".join(f"{node.name} {node.addr}" for node in lan.nodes) or "none"
        errors += [
            ConfigError(
                module.filename,
                line,
                "server",
                f"{addr} is not the address of a node on LAN {lan.name!r} of {cluster.filename} ({have}): "
                "heartbeats go to cluster.xml's addresses; correct cluster.xml or remove the <server>",
            )
            for addr, line in heartbeat.servers
            if addr not in known
        ]
    return errors
