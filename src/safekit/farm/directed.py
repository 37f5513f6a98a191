"""`vmac_directed`: each node answers ARP with its own MAC and relays what it does not serve (pure).

For switched networks that do not flood unknown unicast (most data-centre networks), where the
shared virtual MAC of `vmac_invisible` cannot reach every node. Decided here, loaded by the daemon
(`daemon/farm_kernel.py`) as one `nft -j -f -` transaction per change; docs/adr/0018 and
docs/farm.md say why. Per VIP:

1. ARP (`arp` input): a request for the VIP is answered only by the node that serves the bucket of
   the requester's address in the first group (`jhash arp saddr ip`, the same hash as `jhash ip
   saddr`), with its own MAC. Clients spread over the nodes by ARP; switches learn every MAC.
2. `netdev` ingress on the VIP's interface, for frames to the VIP, in this order:
   a. a frame another node relayed (the IP header's reserved flag, which no sender sets, marks
      it): the flag is cleared and the frame goes to this node's stack; a relayed frame is never
      relayed again (one hop: no loop whatever the nodes' maps say);
   b. TCP of a connection this node accepted (`@mine`, refreshed by use): served here;
   c. TCP of a connection this node relayed to node X when it began (`@flows_X`): relayed to X,
      whatever the buckets say since, so a membership change never moves a live connection;
   d. a TCP SYN, UDP or any other new traffic: by the bucket of its `<rule>` (as `vmac_invisible`,
      same hashes and groups): served here (a SYN is added to `@mine`), relayed to the owner (a
      SYN is added to `@flows_owner`), or dropped while the bucket is between two owners (the
      client retransmits);
   e. TCP of a connection this node knows nothing of (the client's ARP owner changed - a join, or
      the takeover announcement after a node died): relayed to the bucket's owner, or, when this
      node is the owner, to the node that owned the bucket before it (the connection began there).
   Relaying is layer 2: `fwd ip to OWNER device IF` sends the frame out of the same interface to
   the owner's MAC, which the kernel resolves from the owner's address (cluster.xml): no MAC needs
   to travel in the farm heartbeats, and the switch never sees an unknown destination.
3. `ip` prerouting after conntrack: TCP to the VIP that is neither a known connection nor a SYN is
   dropped, never reset (ADR 0005's rule, with `nf_conntrack_tcp_loose=0`).

The netdev table holds the flow tables: it is created once and each change flushes and refills its
chains in one transaction, so `@mine` and `@flows_*` survive every membership change.

When a member leaves, its clients' ARP entries name a MAC that no longer serves: the first
remaining member in name order announces the VIP with its own MAC (one gratuitous ARP burst), every
client then reaches it and it relays per bucket; clients spread again as their entries age (a
refresh probe to a node that does not answer that client falls back to a broadcast request, which
the right node answers).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safekit.farm.buckets import BUCKETS
from safekit.farm.groups import BalancingGroup, GroupMaps, Slot, group_maps, slots_of
from safekit.farm.nft import (
    _SAFE_NAME,
    INGRESS_PRIORITY,
    ND_TARGET,
    FarmRules,
    IPAddress,
    Json,
    TrafficRule,
    _accept,
    _daddr,
    _drop,
    _hash_key,
    _l4,
    _match,
    _nd_types,
    _payload,
    _replace_table,
    _rule,
    _rules_for,
    _syn_only,
    connections_chain,
    family_of,
    nd_rewrites,
)

HERE = "here"
"""This node serves the bucket."""
GAP = "gap"
"""Nobody serves the bucket yet (moving to this node after the handover delay, or no member)."""

RELAYED_FLAG = 0x8000
"""The reserved flag of the IP header (`frag-off` bit 15): set on a relayed frame, cleared on arrival."""
LAST_HOP_TTL = 1
"""The TTL a frame relayed a second time arrives with: it is never relayed again (locally delivered
packets are not checked against their TTL; `fwd` takes one off, so a client's packet sent with TTL 2
would arrive looking like a second hop and lose its own second hop, nothing worse)."""
FLOW_TIMEOUT = 7200
"""Seconds a flow table entry lives without traffic (every packet of the flow refreshes it)."""
FLOW_TABLE_SIZE = 262144
CLIENTS_COUNTER = "clients"
RELAYED_COUNTER = "relayed"

Target = str
"""HERE, GAP, or the name of the node that serves a bucket."""


@dataclass(frozen=True, slots=True)
class DirectedPlan:
    """What this node does with each bucket of each group, and who held its own buckets before.

    `targets[group][bucket]`: HERE, GAP or the serving node. `previous[(group, bucket)]`: for a
    bucket served here (or about to be), the node that served it before it moved here.
    """

    local: str
    targets: tuple[tuple[str, tuple[Target, ...]], ...]
    previous: tuple[tuple[Slot, str], ...] = ()

    def target(self, group: str, bucket: int) -> Target:
        for name, targets in self.targets:
            if name == group:
                return targets[bucket]
        return GAP

    def previous_owner(self, slot: Slot) -> str | None:
        return dict(self.previous).get(slot)

    def arp_owned(self, group: str) -> frozenset[int]:
        """The buckets of `group` whose clients this node answers ARP for (those it serves)."""
        return frozenset(b for b in range(BUCKETS) if self.target(group, b) == HERE)

    def peers(self) -> frozenset[str]:
        return frozenset(
            t for _, targets in self.targets for t in targets if t not in (HERE, GAP)
        ) | frozenset(node for _, node in self.previous)


def plan(local: str, views: GroupMaps, owned: Collection[Slot], without_me: GroupMaps) -> DirectedPlan:
    """This node's plan from its view of each group's map and the buckets it has taken (`owned`;
    one of its own buckets not taken yet is a GAP: it waits for the handover delay).

    `without_me`: each group's map of the same members but this node. A bucket of this node was
    that map's owner's before it came here: a join moves buckets only to the node that joins, a
    leave only the leaver's, so this holds after a join, a restart, and (the leaver gone) a leave,
    with nothing to remember between loads.
    """
    mine = frozenset(owned)
    targets: list[tuple[str, tuple[Target, ...]]] = []
    for name, view in views:
        row: list[Target] = []
        for bucket, owner in enumerate(view.owners):
            if (name, bucket) in mine:
                row.append(HERE)
            elif owner is None or owner == local:
                row.append(GAP)
            else:
                row.append(owner)
        targets.append((name, tuple(row)))
    previous: list[tuple[Slot, str]] = []
    others = dict(without_me)
    for name, row_ in targets:
        other_view = others.get(name)
        if other_view is None:
            continue
        for bucket, target in enumerate(row_):
            before = other_view.owners[bucket]
            if target in (HERE, GAP) and before is not None and before != local:
                previous.append(((name, bucket), before))
    return DirectedPlan(local, tuple(targets), tuple(previous))


def takeover_plans(
    local: str, groups: Sequence[BalancingGroup], members: Collection[str]
) -> dict[str, DirectedPlan]:
    """For each other member, this node's plan once that member is lost: the leaver's buckets
    taken at once (a leave moves only the leaver's buckets), everything else as it is. The daemon
    builds these rulesets while nothing happens, so a node's death costs one `nft` load, not the
    building of the rules too; a plan that differs when the loss comes (a handover still pending,
    another change) is simply built then."""
    plans: dict[str, DirectedPlan] = {}
    for leaver in sorted(set(members) - {local}):
        remaining = set(members) - {leaver}
        views = group_maps(groups, remaining)
        plans[leaver] = plan(local, views, slots_of(views, local), group_maps(groups, remaining - {local}))
    return plans


def takeover_announcer(before: Iterable[str], after: Iterable[str]) -> str | None:
    """The member that announces the VIP with its own MAC after members left (the first remaining
    in name order), or None when nobody left or nobody remains."""
    remaining = sorted(set(after))
    if not remaining or not set(before) - set(after):
        return None
    return remaining[0]


def relay_addresses(
    lans: Iterable[tuple[str, Mapping[str, ipaddress.IPv4Address]]], local_addresses: Collection[object]
) -> dict[str, ipaddress.IPv4Address]:
    """The address each node is relayed to: on the first LAN (cluster.xml, `(name, node -> addr)`)
    whose address of this node is configured on the VIP's interface (`local_addresses`); the first
    LAN when none is."""
    chosen: Mapping[str, ipaddress.IPv4Address] | None = None
    first: Mapping[str, ipaddress.IPv4Address] | None = None
    for _, nodes in lans:
        first = first or nodes
        if chosen is None and any(addr in local_addresses for addr in nodes.values()):
            chosen = nodes
    return dict(chosen or first or {})


# ----------------------------------------------------------------------------- nftables
def _safe(name: str) -> str:
    return _SAFE_NAME.sub("_", name)


def _closing() -> Json:
    """A FIN or RST from the client: the connection ends, its flow table entry goes (an entry left
    behind would steer a later connection that reuses the source port)."""
    return _match(_payload("tcp", "flags"), ["fin", "rst"], op="in")


def _not_syn() -> Json:
    return _match({"&": [_payload("tcp", "flags"), ["fin", "syn", "rst", "ack"]]}, "syn", op="!=")


def _goto(chain: str) -> Json:
    return {"goto": {"target": chain}}


def _target_vmap(key: Json, seed: int, verdicts: list[tuple[int, Json]]) -> Json:
    """`jhash KEY mod 256 seed S vmap { bucket ranges : verdict }` (consecutive equal verdicts merged)."""
    entries: list[list[Any]] = []
    start = 0
    for bucket in range(1, BUCKETS + 1):
        if bucket == BUCKETS or verdicts[bucket][1] != verdicts[start][1]:
            end = bucket - 1
            entries.append([start if start == end else {"range": [start, end]}, verdicts[start][1]])
            start = bucket
    jhash = {"jhash": {"mod": BUCKETS, "seed": seed, "expr": key}}
    return {"vmap": {"key": jhash, "data": {"set": entries}}}


@dataclass(frozen=True, slots=True)
class _Family:
    """What differs between IPv4 (`ip`) and IPv6 (`ip6`) VIPs in the netdev rules.

    IPv4: a relayed frame is marked by the IP header's reserved flag (cleared on arrival) and sent
    with `fwd ip to OWNER`; the second hop arrives with TTL 1. IPv6 has no free header bit: a
    relayed frame is the one whose Ethernet source is another farm node's MAC (a node never sends
    to a VIP over the wire: it holds it), it is sent with its Ethernet addresses rewritten (this
    node's MAC, the owner's MAC) by `fwd to IF`, and the second hop carries hop limit 1.
    """

    name: str
    own_mac: str | None = None
    peer_macs: tuple[tuple[str, str], ...] = ()

    @property
    def v6(self) -> bool:
        return self.name == "ip6"

    @property
    def suffix(self) -> str:
        return "6" if self.v6 else ""

    def flow_key(self) -> Json:
        return {"concat": [_payload(self.name, "saddr"), _payload("tcp", "sport")]}

    def in_set(self, name: str) -> Json:
        return _match(self.flow_key(), f"@{name}")

    def update(self, name: str) -> Json:
        return {"set": {"op": "update", "elem": self.flow_key(), "set": f"@{name}"}}

    def forget(self, name: str) -> Json:
        return {"set": {"op": "delete", "elem": self.flow_key(), "set": f"@{name}"}}

    def mine(self) -> str:
        return "mine" + self.suffix

    def flows(self, node: str) -> str:
        return f"flows{self.suffix}_{_safe(node)}"

    def chain(self, kind: str, node: str, interface: str) -> str:
        return f"{kind}{self.suffix}_{_safe(node)}_{_safe(interface)}"

    def relayed(self) -> Json:
        if self.v6:
            macs = sorted(mac for _, mac in self.peer_macs)
            return _match(_payload("ether", "saddr"), {"set": macs} if macs else "00:00:00:00:00:00")
        return _match({"&": [_payload("ip", "frag-off"), RELAYED_FLAG]}, RELAYED_FLAG)

    def mark(self, on: bool) -> list[Json]:
        if self.v6:
            return []
        field = _payload("ip", "frag-off")
        value = {"|": [field, RELAYED_FLAG]} if on else {"&": [field, 0xFFFF ^ RELAYED_FLAG]}
        return [{"mangle": {"key": field, "value": value}}]

    def ttl(self) -> Json:
        return _payload(self.name, "hoplimit" if self.v6 else "ttl")

    def last_hop(self) -> Json:
        # `fwd ip to` takes one off the TTL; `fwd to IF` leaves the hop limit as it is.
        return {"mangle": {"key": self.ttl(), "value": LAST_HOP_TTL if self.v6 else LAST_HOP_TTL + 1}}

    def send(self, interface: str, peer: str, address: ipaddress.IPv4Address) -> list[Json]:
        if not self.v6:
            return [{"fwd": {"dev": interface, "family": "ip", "addr": str(address)}}]
        mac = dict(self.peer_macs).get(peer)
        if mac is None or self.own_mac is None:
            raise ValueError(f"no MAC known for {peer if mac is None else 'this node'} (IPv6 relay)")
        return [
            {"mangle": {"key": _payload("ether", "saddr"), "value": self.own_mac}},
            {"mangle": {"key": _payload("ether", "daddr"), "value": mac}},
            {"fwd": {"dev": interface}},
        ]


@dataclass(frozen=True, slots=True)
class _Verdicts:
    """How a bucket's traffic is treated, by packet kind."""

    interface: str
    family: _Family

    def syn(self, target: Target) -> Json:
        """A new TCP connection: served here and remembered, relayed and remembered, or dropped."""
        if target == HERE:
            return _goto("serve_syn" + self.family.suffix)
        if target == GAP:
            return _drop()
        return _goto(self.family.chain("open", target, self.interface))

    def datagram(self, target: Target) -> Json:
        if target == HERE:
            return _accept()
        if target == GAP:
            return _drop()
        return _goto(self.family.chain("pass", target, self.interface))

    def stranger(self, target: Target, previous: str | None) -> Json:
        """TCP of a connection this node knows nothing of: to the owner, or to the one before."""
        if target not in (HERE, GAP):
            return _goto(self.family.chain("pass", target, self.interface))
        if previous is not None:
            return _goto(self.family.chain("pass", previous, self.interface))
        return _accept()  # the stack's conntrack knows it, or the connections chain drops it

    def second_hop(self, target: Target, previous: str | None) -> Json:
        """A relayed TCP packet of a connection this node does not know, in one of its buckets:
        on to the node that had the bucket before (the connection began there)."""
        if target in (HERE, GAP) and previous is not None:
            return _goto(self.family.chain("again", previous, self.interface))
        return _accept()


def directed_ruleset(
    spec: FarmRules,
    the_plan: DirectedPlan,
    addresses: Mapping[str, ipaddress.IPv4Address],
    *,
    create: bool,
    macs: Mapping[str, str] | None = None,
) -> Json:
    """The whole `vmac_directed` ruleset of this node (one transaction). `addresses`: every farm
    node's address to relay to. `create`: first load (the netdev table and its flow tables are
    made); later loads keep them and refill the chains. `macs`: IPv6 VIPs only, every other farm
    node's MAC on the VIP's network (IPv6 frames are relayed by MAC)."""
    peers = sorted(n for n in addresses if n != the_plan.local)
    missing = sorted(the_plan.peers() - set(peers))
    if missing:
        raise ValueError(f"no address to relay to for {', '.join(missing)}")
    families = [_Family("ip")]
    if spec.of_family("ip6"):
        interfaces = {a.interface for a in spec.of_family("ip6")}
        links = [spec.link(i) for i in sorted(interfaces)]
        own = links[0].mac if links and links[0] is not None else None
        peer_macs = tuple(sorted((n, m) for n, m in (macs or {}).items() if n in peers))
        families.append(_Family("ip6", own, peer_macs))
    netdev = _Netdev(spec, the_plan, addresses, peers, tuple(families))
    commands = netdev.tables(create)
    commands += netdev.shared_chains()
    for interface in sorted({a.interface for a in spec.addresses}):
        commands += netdev.interface_chains(interface)
    commands += _arp_commands(spec, the_plan) + _ip_commands(spec, "ip")
    if spec.of_family("ip6"):
        commands += _ip_commands(spec, "ip6") + _nd_commands(spec, the_plan)
    return {"nftables": commands}


@dataclass(frozen=True, slots=True)
class _Netdev:
    spec: FarmRules
    plan: DirectedPlan
    addresses: Mapping[str, ipaddress.IPv4Address]
    peers: list[str]
    families: tuple[_Family, ...]

    @property
    def ref(self) -> Json:
        return {"family": "netdev", "table": self.spec.table}

    def tables(self, create: bool) -> list[Json]:
        t = self.spec.table
        commands: list[Json] = []
        if not create:  # the flow tables and counters are kept as they are (the peers never change)
            return [{"add": {"table": {"family": "netdev", "name": t}}}]
        commands += _replace_table("netdev", t)
        for family in self.families:
            address_type = "ipv6_addr" if family.v6 else "ipv4_addr"
            for name in [family.mine(), *(family.flows(p) for p in self.peers)]:
                flow_set = {
                    **self.ref,
                    "name": name,
                    "type": [address_type, "inet_service"],
                    "flags": ["timeout"],
                    "timeout": FLOW_TIMEOUT,
                    "size": FLOW_TABLE_SIZE,
                }
                commands.append({"add": {"set": flow_set}})
        for counter in (CLIENTS_COUNTER, RELAYED_COUNTER):
            commands.append({"add": {"counter": {**self.ref, "name": counter}}})
        return commands

    def chain(self, name: str, dev: str | None = None) -> list[Json]:
        """Create the chain if needed and empty it (a base chain on `dev`'s ingress)."""
        body: Json = {**self.ref, "name": name}
        if dev is not None:
            body.update(
                {
                    "type": "filter",
                    "hook": "ingress",
                    "prio": INGRESS_PRIORITY,
                    "policy": "accept",
                    "dev": dev,
                }
            )
        return [{"add": {"chain": body}}, {"flush": {"chain": {**self.ref, "name": name}}}]

    def rule(self, chain: str, *expr: Json) -> Json:
        # Every rule counts what reaches its verdict (`nft list table netdev ...`: where packets went).
        counted = [*expr[:-1], {"counter": None}, expr[-1]] if expr else []
        return _rule("netdev", self.spec.table, chain, *counted)

    def record(self, family: _Family, owner: str | None) -> list[Json]:
        """A new connection (SYN) goes to `owner` (None: here): it is written in that flow table
        and erased from the others (a client reuses source ports: an entry left by an older
        connection must not steer the new one)."""
        tables = [family.mine(), *(family.flows(p) for p in self.peers)]
        kept = family.mine() if owner is None else family.flows(owner)
        return [*(family.forget(t) for t in tables if t != kept), family.update(kept)]

    def shared_chains(self) -> list[Json]:
        commands: list[Json] = []
        for family in self.families:
            name = "serve_syn" + family.suffix
            commands += [*self.chain(name), self.rule(name, *self.record(family, None), _accept())]
        return commands

    def interface_chains(self, interface: str) -> list[Json]:
        commands: list[Json] = []
        base = f"in_{_safe(interface)}"
        dispatch: list[Json] = []
        for family in self.families:
            addresses = [
                a for a in self.spec.addresses if a.interface == interface and family_of(a.vip) == family.name
            ]
            if not addresses:
                continue
            commands += self.relay_chains(family, interface)
            to_chain: list[list[Any]] = []
            for address in addresses:
                chain = f"vip{family.suffix}_{self.spec.addresses.index(address)}"
                commands += self.chain(chain)
                commands += self.vip_rules(family, chain, interface, address.vip)
                to_chain.append([str(address.vip), _goto(chain)])
            # One lookup per frame and family: a frame to no VIP leaves the chain at once.
            by_vip = {"vmap": {"key": _payload(family.name, "daddr"), "data": {"set": to_chain}}}
            dispatch.append(_rule("netdev", self.spec.table, base, by_vip))
        # The VIPs' chains exist before the base chain's verdict maps name them.
        return [*commands, *self.chain(base, dev=interface), *dispatch]

    def relay_chains(self, family: _Family, interface: str) -> list[Json]:
        commands: list[Json] = []
        for peer in self.peers:
            to = family.send(interface, peer, self.addresses[peer])
            relayed = {"counter": RELAYED_COUNTER}
            opened = family.chain("open", peer, interface)
            passed = family.chain("pass", peer, interface)
            again = family.chain("again", peer, interface)
            commands += self.chain(opened)
            commands.append(self.rule(opened, *self.record(family, peer), *family.mark(True), relayed, *to))
            commands += self.chain(passed)
            commands.append(self.rule(passed, *family.mark(True), relayed, *to))
            commands += self.chain(again)
            commands.append(self.rule(again, *family.mark(True), family.last_hop(), relayed, *to))
        # A relayed frame arrives: clear the flag; a relayed SYN or a known flow is this node's; a
        # connection it does not know, in a bucket it took from another node, goes on to that node
        # (once: the second hop's TTL says it is the last).
        chain = f"relayed{family.suffix}_{_safe(interface)}"
        tcp = _l4("tcp")
        mine = family.mine()
        commands += self.chain(chain)
        commands += [self.rule(chain, *family.mark(False))] if family.mark(False) else []
        commands.append(self.rule(chain, tcp, _syn_only(), *self.record(family, None), _accept()))
        closing = [tcp, _closing(), family.in_set(mine), family.forget(mine)]
        commands.append(self.rule(chain, *closing, _accept()))
        commands.append(self.rule(chain, tcp, family.in_set(mine), family.update(mine), _accept()))
        for address in self.spec.addresses:
            if address.interface == interface and family_of(address.vip) == family.name:
                commands += self.second_hop_rules(family, chain, interface, address.vip)
        commands.append(self.rule(chain, _accept()))
        return commands

    def _tcp_traffic(self, vip: IPAddress) -> list[tuple[TrafficRule | None, str, list[Json]]]:
        """Each TCP `<rule>` for `vip` then the default (None): with its group and its match."""
        found: list[tuple[TrafficRule | None, str, list[Json]]] = []
        for traffic in [*_rules_for(self.spec, vip), None]:
            if traffic is not None and traffic.proto != "tcp":
                continue
            group = self.spec.default_group if traffic is None else traffic.group
            match = [_daddr(vip), _l4("tcp")]
            if traffic is not None and traffic.port is not None:
                match.append(_match(_payload("tcp", "dport"), traffic.port))
            found.append((traffic, group, match))
        return found

    def second_hop_rules(self, family: _Family, chain: str, interface: str, vip: IPAddress) -> list[Json]:
        verdicts = _Verdicts(interface, family)
        commands: list[Json] = []
        not_last = _match(family.ttl(), LAST_HOP_TTL, op="!=")
        for traffic, group, match in self._tcp_traffic(vip):
            row = [self.plan.target(group, b) for b in range(BUCKETS)]
            onward = [
                (b, verdicts.second_hop(row[b], self.plan.previous_owner((group, b)))) for b in range(BUCKETS)
            ]
            key = _hash_key(traffic, family.name)
            commands.append(self.rule(chain, *match, not_last, _target_vmap(key, self.spec.seed, onward)))
        return commands

    def vip_rules(self, family: _Family, base: str, interface: str, vip: IPAddress) -> list[Json]:
        """The rules of `vip`'s chain (the base chain sent its frames there)."""
        tcp = _l4("tcp")
        mine = family.mine()
        commands = [
            self.rule(base, family.relayed(), _goto(f"relayed{family.suffix}_{_safe(interface)}")),
            self.rule(base, {"counter": CLIENTS_COUNTER}),
            # Flow tables steer the packets of a connection, never its SYN (the buckets do).
            self.rule(base, tcp, _closing(), family.in_set(mine), family.forget(mine), _accept()),
            self.rule(base, tcp, _not_syn(), family.in_set(mine), family.update(mine), _accept()),
        ]
        for peer in self.peers:
            flows = family.flows(peer)
            relay = _goto(family.chain("pass", peer, interface))
            commands.append(
                self.rule(base, tcp, _closing(), family.in_set(flows), family.forget(flows), relay)
            )
            commands.append(
                self.rule(base, tcp, _not_syn(), family.in_set(flows), family.update(flows), relay)
            )
        if family.v6:
            # Neighbour discovery to the VIP (a unicast solicitation, an advertisement) reaches the
            # stack: the `ip6` input rules decide which node answers.
            commands.append(self.rule(base, _l4("ipv6-icmp"), _nd_types(), _accept()))
        verdicts = _Verdicts(interface, family)
        seed = self.spec.seed
        for traffic in [*_rules_for(self.spec, vip), None]:
            group = self.spec.default_group if traffic is None else traffic.group
            proto = "tcp" if traffic is None else traffic.proto
            match = [_l4(proto)]
            if traffic is not None and traffic.port is not None:
                match.append(_match(_payload(proto, "dport"), traffic.port))
            key = _hash_key(traffic, family.name)
            row = [self.plan.target(group, b) for b in range(BUCKETS)]
            if proto == "tcp":
                syn = [(b, verdicts.syn(row[b])) for b in range(BUCKETS)]
                commands.append(self.rule(base, *match, _syn_only(), _target_vmap(key, seed, syn)))
                stranger = [
                    (b, verdicts.stranger(row[b], self.plan.previous_owner((group, b))))
                    for b in range(BUCKETS)
                ]
                commands.append(self.rule(base, *match, _target_vmap(key, seed, stranger)))
            else:
                datagrams = [(b, verdicts.datagram(row[b])) for b in range(BUCKETS)]
                commands.append(self.rule(base, *match, _target_vmap(key, seed, datagrams)))
            if traffic is None:
                # Everything else to the VIP (UDP no rule names, ICMP...): by source address.
                datagrams = [(b, verdicts.datagram(row[b])) for b in range(BUCKETS)]
                commands.append(self.rule(base, _target_vmap(key, seed, datagrams)))
        return commands


def _arp_commands(spec: FarmRules, the_plan: DirectedPlan) -> list[Json]:
    """ARP requests for a VIP: answered for the clients whose (first group) bucket this node serves."""
    t = spec.table
    commands = _replace_table("arp", t)
    chain = {"family": "arp", "table": t, "name": "in", "type": "filter", "hook": "input", "prio": 0}
    commands.append({"add": {"chain": {**chain, "policy": "accept"}}})
    for address in spec.of_family("ip"):
        commands.append(
            _rule(
                "arp",
                t,
                "in",
                _match(_payload("arp", "operation"), "request"),
                _match(_payload("arp", "daddr ip"), str(address.vip)),
                _target_vmap(_payload("arp", "saddr ip"), spec.seed, _answered(spec, the_plan)),
            )
        )
    return commands


def _answered(spec: FarmRules, the_plan: DirectedPlan) -> list[tuple[int, Json]]:
    answered = the_plan.arp_owned(spec.default_group)
    return [(b, _accept() if b in answered else _drop()) for b in range(BUCKETS)]


def _nd_commands(spec: FarmRules, the_plan: DirectedPlan) -> list[Json]:
    """IPv6 VIPs (in the `ip6` table `_ip_commands` made): a neighbour solicitation for a VIP is
    answered only for the clients whose (first group) bucket this node serves - `jhash ip6 saddr`,
    the hash of the client's traffic - and solicitations this node sends leave from its own address
    (`nft.nd_rewrites`)."""
    t = spec.table
    chain = {"family": "ip6", "table": t, "name": "nd_in", "type": "filter", "hook": "input", "prio": 0}
    commands: list[Json] = [{"add": {"chain": {**chain, "policy": "accept"}}}]
    solicit = _match(_payload("icmpv6", "type"), "nd-neighbor-solicit")
    for address in spec.of_family("ip6"):
        target = _match(ND_TARGET, "0x" + address.vip.packed.hex())
        vmap = _target_vmap(_payload("ip6", "saddr"), spec.seed, _answered(spec, the_plan))
        commands.append(_rule("ip6", t, "nd_in", solicit, target, {"counter": None}, vmap))
    return commands + nd_rewrites(spec, mode="vmac_directed")


def _ip_commands(spec: FarmRules, family: str) -> list[Json]:
    """After conntrack: TCP to a VIP that is neither a known connection nor a SYN is dropped, never
    answered with a reset (`nft.connections_chain`, the same as `vmac_invisible`'s)."""
    return _replace_table(family, spec.table) + connections_chain(spec, family, spec.of_family(family))


def relay_counters(listed: Json) -> tuple[int, int]:
    """(client packets to the VIPs, packets relayed to another node) from `nft -j list table netdev`."""
    found = {CLIENTS_COUNTER: 0, RELAYED_COUNTER: 0}
    for item in listed.get("nftables", ()):
        counter = item.get("counter")
        if isinstance(counter, dict) and counter.get("name") in found:
            found[counter["name"]] = int(counter.get("packets", 0))
    return found[CLIENTS_COUNTER], found[RELAYED_COUNTER]


__all__ = [
    "GAP",
    "HERE",
    "DirectedPlan",
    "TrafficRule",
    "directed_ruleset",
    "plan",
    "relay_addresses",
    "relay_counters",
    "takeover_announcer",
]
