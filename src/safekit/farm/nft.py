"""nftables rules of a farm module on a LAN (`vmac_invisible`): the kernel does the packet work.

This module owns the rules, as nftables JSON (`nft -j -f -`); it is pure (`ruleset`, `removal`).
The daemon loads them (`daemon/farm_kernel.py`), each change as one atomic transaction (the tables
are replaced as a whole, so no packet ever sees half a ruleset). What the rules do, per virtual
address (see docs/farm.md and the ADR for why):

1. `netdev` ingress on the interface: frames sent to the shared virtual MAC are marked for this
   host (`meta pkttype set host`), or the IP layer would drop them before any other hook.
2. `arp` output: ARP packets that speak for the VIP carry the virtual MAC as sender hardware
   address (the Ethernet source stays the node's real MAC, so switches never learn the vMAC and
   keep flooding frames for it to every node).
3. `ip` prerouting at `raw` priority (before conntrack): a TCP SYN to the VIP, or any other packet
   that is not TCP, is hashed (`jhash` with a fixed seed: the same on every node) into one of 256
   buckets and dropped unless this node owns the bucket. Other nodes' new connections never reach
   this node's conntrack.
4. `ip` prerouting after conntrack: TCP to the VIP is accepted if it belongs to a connection this
   node knows (established, related) or is a SYN that passed (3); anything else - another node's
   connection, or one this node held before the buckets moved - is dropped, never reset. With
   `nf_conntrack_tcp_loose=0`, moving buckets (a node returns) keeps every live connection where
   it is: only new connections follow the new map.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from safekit.farm.buckets import BUCKETS, ranges
from safekit.farm.groups import DEFAULT_GROUP

INGRESS_PRIORITY = -500
RAW_PRIORITY = -300
FILTER_PRIORITY = -150  # after conntrack (-200), before the usual filter chains
_SYN_MASK = ["fin", "syn", "rst", "ack"]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")

Proto = Literal["tcp", "udp"]
Filter = Literal["on_addr", "on_port", "on_ipid"]
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BalancedAddress:
    """A virtual address shared by every node, on one interface, behind one virtual MAC."""

    vip: ipaddress.IPv4Address
    interface: str
    vmac: str


@dataclass(frozen=True, slots=True)
class TrafficRule:
    """A `<rule>`: which traffic to a VIP is balanced, by which group's map, hashed on what.

    `vip` None: every VIP of the module; `port` None: every port. `filter`: `on_addr` hashes the
    client address (a client always reaches the same node), `on_port` the address and source port
    (each connection or UDP flow on its own), `on_ipid` for UDP the address and the IP
    identification field (each datagram on its own, its fragments together), for TCP the address
    and source port (each connection on its own, its retransmitted SYNs together).
    """

    proto: Proto
    filter: Filter
    port: int | None = None
    vip: ipaddress.IPv4Address | None = None
    group: str = DEFAULT_GROUP


@dataclass(frozen=True, slots=True)
class FarmRules:
    table: str
    addresses: tuple[BalancedAddress, ...]
    rules: tuple[TrafficRule, ...]
    seed: int
    default_group: str = DEFAULT_GROUP
    """The group whose map deals the traffic to a VIP that no rule names (the first `<group>`)."""


def table_name(module: str) -> str:
    return "safekit_farm_" + _SAFE_NAME.sub("_", module)


def seed_for(module: str) -> int:
    """The jhash seed: fixed per module, so every node hashes a packet into the same bucket.

    (Without an explicit seed the kernel picks a random one per rule and the nodes disagree.)
    """
    return int.from_bytes(hashlib.sha256(f"safekit-farm-seed:{module}".encode()).digest()[:4], "big")


def vmac_for(vip: ipaddress.IPv4Address) -> str:
    """A locally administered unicast MAC that no node ever uses as a source: `02:5a:fe:` + VIP[1:]."""
    b = vip.packed
    return f"02:5a:fe:{b[1]:02x}:{b[2]:02x}:{b[3]:02x}"


# ----------------------------------------------------------------------------- expressions
def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _daddr(vip: ipaddress.IPv4Address) -> Json:
    return _match(_payload("ip", "daddr"), str(vip))


def _syn_only() -> Json:
    return _match({"&": [_payload("tcp", "flags"), _SYN_MASK]}, "syn")


def _l4(proto: str) -> Json:
    return _match({"meta": {"key": "l4proto"}}, proto)


def _hash_key(rule: TrafficRule | None) -> Json:
    saddr = _payload("ip", "saddr")
    if rule is None or rule.filter == "on_addr":
        return saddr
    if rule.filter == "on_ipid" and rule.proto == "udp":
        return {"concat": [saddr, _payload("ip", "id")]}
    # on_port, and on_ipid for TCP: a SYN retransmitted carries another IP id (Linux counts ids per
    # socket) and could be judged by another node; the source port spreads connections the same
    # way and keeps a connection's SYNs together.
    return {"concat": [saddr, _payload(rule.proto, "sport")]}


def _verdicts(owned: Collection[int]) -> list[list[Any]]:
    """Every bucket 0..255 to accept (owned) or drop, as intervals."""
    others = set(range(BUCKETS)) - set(owned)
    entries: list[tuple[int, int, str]] = [(a, b, "accept") for a, b in ranges(owned)]
    entries += [(a, b, "drop") for a, b in ranges(others)]
    return [[a if a == b else {"range": [a, b]}, {verdict: None}] for a, b, verdict in sorted(entries)]


def _bucket_vmap(rule: TrafficRule | None, seed: int, owned: Collection[int]) -> Json:
    jhash = {"jhash": {"mod": BUCKETS, "seed": seed, "expr": _hash_key(rule)}}
    return {"vmap": {"key": jhash, "data": {"set": _verdicts(owned)}}}


def _accept() -> Json:
    return {"accept": None}


def _drop() -> Json:
    return {"drop": None}


# ----------------------------------------------------------------------------- ruleset
def _replace_table(family: str, table: str) -> list[Json]:
    ref = {"family": family, "name": table}
    # add-then-delete: removes the table whether or not it exists, in the same transaction.
    return [{"add": {"table": ref}}, {"delete": {"table": ref}}, {"add": {"table": ref}}]


def _chain(  # noqa: PLR0917
    family: str, table: str, name: str, hook: str, prio: int, dev: str | None = None
) -> Json:
    chain: Json = {
        "family": family,
        "table": table,
        "name": name,
        "type": "filter",
        "hook": hook,
        "prio": prio,
        "policy": "accept",
    }
    if dev is not None:
        chain["dev"] = dev
    return {"add": {"chain": chain}}


def _rule(family: str, table: str, chain: str, *expr: Json) -> Json:
    return {"add": {"rule": {"family": family, "table": table, "chain": chain, "expr": list(expr)}}}


def _rules_for(spec: FarmRules, vip: ipaddress.IPv4Address) -> list[TrafficRule]:
    """The rules that apply to `vip`, the most specific first (a port before every port, an address
    before `*`; otherwise in the file's order): the first that matches a packet decides."""
    rules = [r for r in spec.rules if r.vip is None or r.vip == vip]
    return sorted(rules, key=lambda r: (r.port is None, r.vip is None))


def overlaps(rules: Collection[TrafficRule]) -> list[tuple[TrafficRule, TrafficRule]]:
    """Pairs of rules of different groups that name the same traffic (address, proto, port): which
    group serves it would depend on the order; a module with such a pair is refused."""
    seen: dict[tuple[object, str, int | None], TrafficRule] = {}
    clashes: list[tuple[TrafficRule, TrafficRule]] = []
    for rule in rules:
        key = (rule.vip, rule.proto, rule.port)
        first = seen.setdefault(key, rule)
        if first is not rule and first.group != rule.group:
            clashes.append((first, rule))
    return clashes


def ruleset(spec: FarmRules, owned: Mapping[str, Collection[int]]) -> Json:
    """The whole farm ruleset for this node owning, in each group, `owned[group]` buckets (one
    atomic transaction). A group missing from `owned` is owned nowhere here."""
    t = spec.table
    commands: list[Json] = []
    commands += _replace_table("netdev", t)
    for interface in sorted({a.interface for a in spec.addresses}):
        chain = f"in_{_SAFE_NAME.sub('_', interface)}"
        commands.append(_chain("netdev", t, chain, "ingress", INGRESS_PRIORITY, dev=interface))
        for address in (a for a in spec.addresses if a.interface == interface):
            commands.append(
                _rule(
                    "netdev",
                    t,
                    chain,
                    _match(_payload("ether", "daddr"), address.vmac),
                    {"mangle": {"key": {"meta": {"key": "pkttype"}}, "value": "host"}},
                )
            )
    commands += _replace_table("arp", t)
    commands.append(_chain("arp", t, "out", "output", 0))
    for address in spec.addresses:
        commands.append(
            _rule(
                "arp",
                t,
                "out",
                _match(_payload("arp", "saddr ip"), str(address.vip)),
                {"mangle": {"key": _payload("arp", "saddr ether"), "value": address.vmac}},
            )
        )
    commands += _replace_table("ip", t)
    commands.append(_chain("ip", t, "buckets", "prerouting", RAW_PRIORITY))
    commands.append(_chain("ip", t, "connections", "prerouting", FILTER_PRIORITY))
    for address in spec.addresses:
        vip = address.vip
        for rule in _rules_for(spec, vip):
            match = [_daddr(vip), _l4(rule.proto)]
            if rule.port is not None:
                match.append(_match(_payload(rule.proto, "dport"), rule.port))
            if rule.proto == "tcp":
                match.append(_syn_only())
            mine = owned.get(rule.group, ())
            commands.append(_rule("ip", t, "buckets", *match, _bucket_vmap(rule, spec.seed, mine)))
        # Traffic no <rule> names (other ports, ICMP, fragments): by source address, with the
        # first group's map, so that exactly one node answers it too.
        default = owned.get(spec.default_group, ())
        commands.append(
            _rule(
                "ip",
                t,
                "buckets",
                _daddr(vip),
                _l4("tcp"),
                _syn_only(),
                _bucket_vmap(None, spec.seed, default),
            )
        )
        commands.append(_rule("ip", t, "buckets", _daddr(vip), _l4("tcp"), _accept()))
        commands.append(_rule("ip", t, "buckets", _daddr(vip), _bucket_vmap(None, spec.seed, default)))
        established = _match({"ct": {"key": "state"}}, ["established", "related"], op="in")
        commands.append(_rule("ip", t, "connections", _daddr(vip), _l4("tcp"), established, _accept()))
        commands.append(_rule("ip", t, "connections", _daddr(vip), _l4("tcp"), _syn_only(), _accept()))
        commands.append(_rule("ip", t, "connections", _daddr(vip), _l4("tcp"), _drop()))
    return {"nftables": commands}


def removal(spec: FarmRules) -> Json:
    """Remove the farm's tables (whether they exist or not)."""
    commands: list[Json] = []
    for family in ("netdev", "arp", "ip"):
        ref = {"family": family, "name": spec.table}
        commands += [{"add": {"table": ref}}, {"delete": {"table": ref}}]
    return {"nftables": commands}
