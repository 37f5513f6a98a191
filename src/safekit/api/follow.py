"""What the API derives from cluster.xml, and what it changes after a live reload (ADR 0050).

The API takes three things from cluster.xml: this node's addresses (the subject alternative names
of its HTTPS certificate), its peers and their addresses (forwarding, apply, the console's live
view), and the heartbeat networks (shown in the live view). `derive` reads them from a cluster;
`plan_follow` compares two and says what a reload changes: a certificate to issue again, peers
added, dropped or readdressed, the networks shown. Pure: the server (api/server.py) does the I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from safekit.config import ClusterConfig


@dataclass(frozen=True)
class NetworkView:
    """A heartbeat network as the live view shows it: each node's address on it."""

    name: str
    command: bool
    addresses: tuple[tuple[str, str], ...]  # (node, address), in file order

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": self.command,
            "nodes": [{"name": n, "addr": a} for n, a in self.addresses],
        }


@dataclass(frozen=True)
class ApiView:
    """What the API of node `node` takes from one cluster.xml."""

    node: str
    addresses: tuple[str, ...]  # this node's, in file order: its certificate names them
    peers: dict[str, tuple[str, ...]]  # every other node: its addresses in file order
    networks: tuple[NetworkView, ...]


def derive(cluster: ClusterConfig, node: str) -> ApiView:
    found: dict[str, list[str]] = {}
    for lan in cluster.lans:
        for member in lan.nodes:
            addresses = found.setdefault(member.name, [])
            if member.addr not in addresses:
                addresses.append(member.addr)
    networks = tuple(
        NetworkView(lan.name, lan.command, tuple((m.name, m.addr) for m in lan.nodes)) for lan in cluster.lans
    )
    return ApiView(
        node=node,
        addresses=tuple(found.get(node, ())),
        peers={name: tuple(addrs) for name, addrs in found.items() if name != node},
        networks=networks,
    )


def same_addresses(a: tuple[str, ...] | list[str], b: tuple[str, ...] | list[str]) -> bool:
    """The same set of IP addresses, however each is written (IPv6 zeros, case)."""
    return {_canonical(x) for x in a} == {_canonical(x) for x in b}


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


@dataclass(frozen=True)
class FollowPlan:
    """What a reload from `old` to `new` changes in the API."""

    certificate: bool  # this node's addresses changed: its certificate is issued again
    added: dict[str, tuple[str, ...]]  # new peers: their addresses
    dropped: tuple[str, ...]  # nodes gone from the file: no longer called nor shown
    readdressed: dict[str, tuple[str, ...]]  # peers whose addresses changed: the order to try them
    networks: bool  # the networks shown changed

    @property
    def changes(self) -> bool:
        return bool(self.certificate or self.added or self.dropped or self.readdressed or self.networks)

    def summary(self) -> str:
        parts = []
        if self.certificate:
            parts.append("this node's addresses changed: certificate issued again")
        parts += [f"peer {n} added" for n in self.added]
        parts += [f"peer {n} dropped" for n in self.dropped]
        parts += [f"peer {n} now at {', '.join(a)}" for n, a in self.readdressed.items()]
        if self.networks:
            parts.append("networks shown updated")
        return "; ".join(parts) or "nothing changes in the API"


def plan_follow(old: ApiView, new: ApiView) -> FollowPlan:
    """A readdressed peer is called at the addresses it kept first, then at its new ones: a peer
    that has not reloaded yet still listens (and is certified) at its old ones."""
    readdressed = {}
    for name, before in old.peers.items():
        fresh = new.peers.get(name)
        if fresh is not None and fresh != before:
            readdressed[name] = tuple(a for a in before if a in fresh) + tuple(
                a for a in fresh if a not in before
            )
    return FollowPlan(
        certificate=not same_addresses(old.addresses, new.addresses),
        added={n: a for n, a in new.peers.items() if n not in old.peers},
        dropped=tuple(n for n in old.peers if n not in new.peers),
        readdressed=readdressed,
        networks=old.networks != new.networks,
    )
