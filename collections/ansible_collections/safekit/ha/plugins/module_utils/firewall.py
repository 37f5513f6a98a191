# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""The ports a safekit node or witness receives traffic on, and the firewall rules that let it in
(an nftables table of its own, firewalld rich rules), as pure functions: no I/O, unit-tested.

The engine's defaults (src/safekit): mirror heartbeats UDP 4800 (`<heart port>`, else
cluster.xml's `<lans port>`), the mirror's replication TCP heartbeat port + 1 (only a module with
`<rfs>`), farm heartbeats UDP 4800 (`<farm port>`), the health endpoint and metrics TCP 9010
(`safekitd --health-port`), the HTTPS API and console TCP 9453 (`safekitd --api-port`), the arbiter
UDP 9455 (`safekit arbiter serve --listen`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_HEARTBEAT_PORT = 4800
REPLICATION_PORT_OFFSET = 1
DEFAULT_HEALTH_PORT = 9010
DEFAULT_API_PORT = 9453
DEFAULT_ARBITER_PORT = 9455
NFT_TABLE = "safekit"
NFT_CHAIN = "input"
DEFAULT_NFT_MARK = 0x5AFE
FIREWALLD_COMMENT = "safekit"


class FirewallError(ValueError):
    """A port, protocol or source address the rules cannot carry."""


def _port(value: Any, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise FirewallError(f"{what}: {value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise FirewallError(f"{what}: {port} is not a port number (1-65535)")
    return port


def _sources(addresses: Iterable[Any], what: str) -> list[str]:
    """Addresses or networks, checked and in a stable order (IPv4 first, then IPv6), no repeats."""
    nets: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for address in addresses:
        text = str(address).strip()
        if not text:
            continue
        try:
            nets.add(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise FirewallError(f"{what}: {text!r} is not an IP address or network") from None
    ordered = sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    return [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in ordered]


def entry(port: Any, proto: str, purpose: str, sources: Iterable[Any]) -> dict[str, Any]:
    if proto not in ("tcp", "udp"):
        raise FirewallError(f"{purpose}: protocol {proto!r} is neither tcp nor udp")
    return {
        "port": _port(port, purpose),
        "proto": proto,
        "purpose": purpose,
        "sources": _sources(sources, purpose),
    }


def node_ports(
    *,
    kind: str,
    nodes: Iterable[Any],
    heart_port: Any = None,
    cluster_port: Any = None,
    replication: bool = False,
    health_port: Any = DEFAULT_HEALTH_PORT,
    api_port: Any = DEFAULT_API_PORT,
    client_sources: Iterable[Any] = (),
) -> list[dict[str, Any]]:
    """The ports a node of a mirror (`kind="mirror"`) or farm (`kind="farm"`) module receives on.

    `nodes`: every address of every node of the cluster (all LANs); heartbeats and replication are
    accepted from them only. The health endpoint and the API are accepted from them (a peer's
    `<module>` checker, the console of one node reading the other) and from `client_sources` (load
    balancers, Prometheus, the operators' network). A health or API port of 0 is off: not opened.
    """
    node_list = list(nodes)
    if not _sources(node_list, "nodes"):
        raise FirewallError("nodes: no address to accept the cluster's traffic from")
    base = heart_port or cluster_port or DEFAULT_HEARTBEAT_PORT
    ports: list[dict[str, Any]] = []
    if kind == "mirror":
        ports.append(entry(base, "udp", "mirror heartbeats", node_list))
        if replication:
            ports.append(
                entry(
                    _port(base, "heartbeat port") + REPLICATION_PORT_OFFSET,
                    "tcp",
                    "mirror replication",
                    node_list,
                )
            )
    elif kind == "farm":
        ports.append(entry(base, "udp", "farm heartbeats", node_list))
    else:
        raise FirewallError(f"kind: {kind!r} is neither mirror nor farm")
    clients = node_list + list(client_sources)
    if health_port and int(health_port) != 0:
        ports.append(entry(health_port, "tcp", "health and metrics", clients))
    if api_port and int(api_port) != 0:
        ports.append(entry(api_port, "tcp", "API and console", clients))
    return merge(ports)


def arbiter_ports(*, nodes: Iterable[Any], port: Any = DEFAULT_ARBITER_PORT) -> list[dict[str, Any]]:
    """The witness's arbiter service (UDP), accepted from the cluster's nodes."""
    return [entry(port, "udp", "arbiter", nodes)]


def merge(ports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (port, protocol): two modules of a node sharing a port share its rule (their
    purposes and sources joined), in port order."""
    merged: dict[tuple[int, str], dict[str, Any]] = {}
    for p in ports:
        e = entry(p["port"], p["proto"], p["purpose"], p["sources"])
        key = (e["port"], e["proto"])
        if key in merged:
            old = merged[key]
            purposes = old["purpose"].split(", ")
            if e["purpose"] not in purposes:
                purposes.append(e["purpose"])
            merged[key] = entry(e["port"], e["proto"], ", ".join(purposes), old["sources"] + e["sources"])
        else:
            merged[key] = e
    return [merged[k] for k in sorted(merged)]


def nft_ruleset(ports: Iterable[Mapping[str, Any]], mark: int = DEFAULT_NFT_MARK) -> str:
    """The file loaded with `nft -f`: it replaces table `inet safekit` (declared, then deleted, then
    written again, so a reload is atomic and leaves no old rule) and touches no other table.

    Its one chain, hooked at input priority filter - 1 with policy accept, drops nothing: a packet
    of the cluster's ports from the cluster's addresses gets `mark` and is accepted. In nftables an
    accept ends only its own base chain: a host table whose input policy is drop still sees the
    packet, and lets it in with `meta mark MARK accept` (docs/install.md, ADR 0068).
    """
    lines = [
        "# Written by the safekit.ha roles (safekit_manage_firewall): the cluster's ports, from its nodes.",
        "# Accepts and marks only; the host's own tables decide everything else (docs/install.md).",
        f"table inet {NFT_TABLE}",
        f"delete table inet {NFT_TABLE}",
        f"table inet {NFT_TABLE} {{",
        f"\tchain {NFT_CHAIN} {{",
        "\t\ttype filter hook input priority filter - 1; policy accept;",
    ]
    for p in merge(ports):
        e = entry(p["port"], p["proto"], p["purpose"], p["sources"])
        v4 = [s for s in e["sources"] if ipaddress.ip_network(s).version == 4]
        v6 = [s for s in e["sources"] if ipaddress.ip_network(s).version == 6]
        for family, addrs in (("ip", v4), ("ip6", v6)):
            if addrs:
                lines.append(
                    f"\t\t{family} saddr {{ {', '.join(addrs)} }} {e['proto']} dport {e['port']}"
                    f' meta mark set {mark:#x} accept comment "{e["purpose"]}"'
                )
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


def firewalld_rich_rules(ports: Iterable[Mapping[str, Any]]) -> list[str]:
    """firewalld rich rules (`firewall-cmd --permanent --add-rich-rule=RULE`), one per port and
    source, in firewalld's own normal form so that `--list-rich-rules` compares equal."""
    rules: list[str] = []
    for p in merge(ports):
        e = entry(p["port"], p["proto"], p["purpose"], p["sources"])
        for source in e["sources"]:
            family = "ipv4" if ipaddress.ip_network(source).version == 4 else "ipv6"
            rules.append(
                f'rule family="{family}" source address="{source}" '
                f'port port="{e["port"]}" protocol="{e["proto"]}" accept'
            )
    return rules


def firewalld_changes(
    wanted: Iterable[str], present: Iterable[str], owned: Iterable[str]
) -> dict[str, list[str]]:
    """The rich rules to add and to remove: `present` is the zone's `--list-rich-rules`, `owned` the
    rules a previous run added (kept on the node), so that a port the cluster no longer uses is
    closed again and the user's own rules are never removed."""
    wanted_l = list(dict.fromkeys(wanted))
    present_s = set(present)
    wanted_s = set(wanted_l)
    return {
        "add": [r for r in wanted_l if r not in present_s],
        "remove": sorted(r for r in set(owned) if r not in wanted_s and r in present_s),
    }


def firewalld_commands(changes: Mapping[str, Iterable[str]], zone: str = "") -> list[list[str]]:
    """The `firewall-cmd` argv lists that apply `firewalld_changes` to the permanent configuration
    (the zone given, else firewalld's default zone), then `--reload` once if anything changed: the
    running firewall gets the permanent rules, a second run with nothing to change runs nothing."""
    where = [f"--zone={zone}"] if zone else []
    argv = [
        ["firewall-cmd", "--permanent", *where, f"--remove-rich-rule={r}"] for r in changes.get("remove", ())
    ]
    argv += [["firewall-cmd", "--permanent", *where, f"--add-rich-rule={r}"] for r in changes.get("add", ())]
    if argv:
        argv.append(["firewall-cmd", "--reload"])
    return argv
