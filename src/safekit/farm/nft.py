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

IPv6 VIPs get the same rules in an `ip6` table (`jhash ip6 saddr`), and neighbour discovery takes
ARP's place (`ip6` output, `nd_out`): a neighbour advertisement this node's kernel sends for the VIP
names the virtual MAC instead of the interface's (the option's bytes are rewritten in place, and
the reserved half-word of the advertisement is set so that the ICMPv6 checksum stays right: nft
does not update checksums for raw payload writes), and a neighbour solicitation this node sends
from the VIP leaves from the node's own address (IPv6's `arp_announce=2`: its source link-layer
option would otherwise teach the client this node's real MAC for the VIP).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from safekit.farm.buckets import BUCKETS
from safekit.farm.groups import DEFAULT_GROUP

INGRESS_PRIORITY = -500
RAW_PRIORITY = -300
FILTER_PRIORITY = -150  # after conntrack (-200), before the usual filter chains
_SYN_MASK = ["fin", "syn", "rst", "ack"]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Proto = Literal["tcp", "udp"]
Filter = Literal["on_addr", "on_port", "on_ipid"]
Json = dict[str, Any]
FAMILIES = ("ip", "ip6")


@dataclass(frozen=True, slots=True)
class BalancedAddress:
    """A virtual address shared by every node, on one interface, behind one virtual MAC."""

    vip: IPAddress
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
    vip: IPAddress | None = None
    group: str = DEFAULT_GROUP


@dataclass(frozen=True, slots=True)
class NdLink:
    """A VIP interface as neighbour discovery rules need it: its MAC, and an IPv6 address of this
    node on it other than a VIP (the source of the solicitations it sends for the VIP)."""

    mac: str
    own: ipaddress.IPv6Address | None


@dataclass(frozen=True, slots=True)
class FarmRules:
    table: str
    addresses: tuple[BalancedAddress, ...]
    rules: tuple[TrafficRule, ...]
    seed: int
    default_group: str = DEFAULT_GROUP
    """The group whose map deals the traffic to a VIP that no rule names (the first `<group>`)."""
    links: tuple[tuple[str, NdLink], ...] = ()
    """IPv6 VIPs: what neighbour discovery needs of each VIP interface (its MAC, an own address)."""

    def link(self, interface: str) -> NdLink | None:
        return dict(self.links).get(interface)

    def of_family(self, family: str) -> tuple[BalancedAddress, ...]:
        """The addresses of an nftables family: `ip` (IPv4) or `ip6`."""
        return tuple(a for a in self.addresses if family_of(a.vip) == family)


def table_name(module: str) -> str:
    return "safekit_farm_" + _SAFE_NAME.sub("_", module)


def seed_for(module: str) -> int:
    """The jhash seed: fixed per module, so every node hashes a packet into the same bucket.

    (Without an explicit seed the kernel picks a random one per rule and the nodes disagree.)
    """
    return int.from_bytes(hashlib.sha256(f"safekit-farm-seed:{module}".encode()).digest()[:4], "big")


def vmac_for(vip: IPAddress) -> str:
    """A locally administered unicast MAC that no node ever uses as a source: `02:5a:fe:` + the
    VIP's last three bytes."""
    b = vip.packed[-3:]
    return f"02:5a:fe:{b[0]:02x}:{b[1]:02x}:{b[2]:02x}"


def family_of(address: IPAddress) -> str:
    """The nftables family (and payload protocol) of an address: `ip` or `ip6`."""
    return "ip6" if address.version == 6 else "ip"


# ----------------------------------------------------------------------------- expressions
def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _daddr(vip: IPAddress) -> Json:
    return _match(_payload(family_of(vip), "daddr"), str(vip))


def _syn_only() -> Json:
    return _match({"&": [_payload("tcp", "flags"), _SYN_MASK]}, "syn")


def _not_syn() -> Json:
    return _match({"&": [_payload("tcp", "flags"), _SYN_MASK]}, "syn", op="!=")


def _l4(proto: str) -> Json:
    return _match({"meta": {"key": "l4proto"}}, proto)


def _hash_key(rule: TrafficRule | None, family: str = "ip") -> Json:
    saddr = _payload(family, "saddr")
    if rule is None or rule.filter == "on_addr":
        return saddr
    if rule.filter == "on_ipid" and rule.proto == "udp" and family == "ip":
        return {"concat": [saddr, _payload("ip", "id")]}
    # IPv6 has no identification field outside fragments: on_ipid hashes as on_port there.
    # on_port, and on_ipid for TCP: a SYN retransmitted carries another IP id (Linux counts ids per
    # socket) and could be judged by another node; the source port spreads connections the same
    # way and keeps a connection's SYNs together.
    return {"concat": [saddr, _payload(rule.proto, "sport")]}


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


def _plain_chain(family: str, table: str, name: str) -> Json:
    """A chain without a hook, reached by `goto` from a verdict map."""
    return {"add": {"chain": {"family": family, "table": table, "name": name}}}


def _rule(family: str, table: str, chain: str, *expr: Json) -> Json:
    return {"add": {"rule": {"family": family, "table": table, "chain": chain, "expr": list(expr)}}}


def _goto(chain: str) -> Json:
    return {"goto": {"target": chain}}


def _one_or_set(values: Collection[str]) -> Any:
    ordered = sorted(values)
    return ordered[0] if len(ordered) == 1 else {"set": ordered}


def _rules_for(spec: FarmRules, vip: IPAddress) -> list[TrafficRule]:
    """The rules that apply to `vip`, the most specific first (a port before every port, an address
    before `*`; otherwise in the file's order): the first that matches a packet decides."""
    rules = [r for r in spec.rules if r.vip is None or r.vip == vip]
    return sorted(rules, key=lambda r: (r.port is None, r.vip is None))


def deciding_rules(spec: FarmRules, vip: IPAddress) -> dict[tuple[Proto, int | None], TrafficRule]:
    """For each (proto, port) that a rule of `vip` names (port None: every port), the rule that
    decides it: the first of `_rules_for` (a rule naming the address before one for every VIP; in
    the file's order otherwise). A packet is decided by its (proto, port) if named, else by its
    (proto, None), else by the default map."""
    deciding: dict[tuple[Proto, int | None], TrafficRule] = {}
    for rule in _rules_for(spec, vip):
        deciding.setdefault((rule.proto, rule.port), rule)
    return deciding


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
        vmacs = {a.vmac for a in spec.addresses if a.interface == interface}
        # One rule per interface, whatever the number of VIPs on it (one set lookup per frame).
        commands.append(
            _rule(
                "netdev",
                t,
                chain,
                _match(_payload("ether", "daddr"), _one_or_set(vmacs)),
                {"mangle": {"key": {"meta": {"key": "pkttype"}}, "value": "host"}},
            )
        )
    commands += _replace_table("arp", t)
    commands.append(_chain("arp", t, "out", "output", 0))
    for address in spec.of_family("ip"):
        commands.append(
            _rule(
                "arp",
                t,
                "out",
                _match(_payload("arp", "saddr ip"), str(address.vip)),
                {"mangle": {"key": _payload("arp", "saddr ether"), "value": address.vmac}},
            )
        )
    for family in FAMILIES:
        addresses = spec.of_family(family)
        if family == "ip" or addresses:
            commands += _bucket_tables(spec, family, addresses, owned)
    commands += nd_rewrites(spec, mode="vmac_invisible")
    return {"nftables": commands}


def _bucket_tables(
    spec: FarmRules, family: str, addresses: Collection[BalancedAddress], owned: Mapping[str, Collection[int]]
) -> list[Json]:
    """The `ip` (or `ip6`) table: the buckets before conntrack, the connections after it.

    Laid out so that a packet costs few rule evaluations (docs/adr/0062): the `buckets` chain has
    one rule, a verdict map on the destination address (traffic to no VIP leaves at once); a VIP's
    chain sends a TCP packet that is not a SYN on to conntrack with its first rule, and dispatches
    a new flow with one lookup on (protocol, port) to the chain of the `<rule>` that decides it,
    whose one rule is the bucket verdict map."""
    t = spec.table
    commands = _replace_table(family, t)
    commands.append(_chain(family, t, "buckets", "prerouting", RAW_PRIORITY))
    commands += connections_chain(spec, family, addresses)
    if not addresses:
        return commands
    rule_chains: dict[TrafficRule, str] = {}
    dispatch: list[list[Any]] = []
    vip_chains: list[Json] = []
    for index, address in enumerate(addresses):
        vip_chain = f"vip_{index}"
        dispatch.append([str(address.vip), _goto(vip_chain)])
        deciding = deciding_rules(spec, address.vip)
        for rule in deciding.values():
            if rule not in rule_chains:
                rule_chains[rule] = f"rule_{len(rule_chains)}"
        vip_chains += _vip_chain(spec, family, vip_chain, deciding, rule_chains, owned)
    # Traffic no <rule> names (other ports, ICMP, fragments): by source address, with the first
    # group's buckets, so that exactly one node answers it too. `default_tcp`: TCP SYNs only (a TCP
    # packet whose flags cannot be read, a fragment after the first, goes on to conntrack).
    default_owned = owned.get(spec.default_group, ())
    commands += _bucket_chain(family, t, "default", _hash_key(None, family), spec.seed, default_owned)
    commands += _bucket_chain(
        family, t, "default_tcp", _hash_key(None, family), spec.seed, default_owned, [_syn_only()]
    )
    for rule, name in rule_chains.items():
        guard = [_syn_only()] if rule.proto == "tcp" else []
        commands += _bucket_chain(
            family, t, name, _hash_key(rule, family), spec.seed, owned.get(rule.group, ()), guard
        )
    # The chains a verdict map names exist before it (one transaction, in order).
    commands += vip_chains
    commands.append(
        _rule(family, t, "buckets", {"vmap": {"key": _payload(family, "daddr"), "data": {"set": dispatch}}})
    )
    return commands


def _bucket_chain(  # noqa: PLR0917
    family: str,
    table: str,
    name: str,
    key: Json,
    seed: int,
    owned: Collection[int],
    guard: list[Json] | None = None,
) -> list[Json]:
    """A chain that drops the packets (matching `guard`: a TCP SYN) whose bucket this node does not
    own: `jhash KEY mod 256 seed S != { owned buckets } drop`; the others fall off its end and are
    accepted. One rule, one hashed lookup: a set without intervals is a hash table in the kernel (a
    map of bucket runs is a search among about 170 of them in a farm of three), and it holds the
    owned buckets only.

    A packet whose key cannot be read (a fragment after the first has no ports) matches no rule: a
    TCP one goes on to conntrack, as any TCP packet that is not a SYN; a UDP one hashed with its
    source port is decided by the `default` chain (its source address)."""
    guard = guard or []
    mine = sorted(set(owned))
    jhash = {"jhash": {"mod": BUCKETS, "seed": seed, "expr": key}}
    by_port = isinstance(key.get("concat"), list) and _payload("udp", "sport") in key["concat"]
    commands = [_plain_chain(family, table, name)]
    if by_port:
        if mine:
            commands.append(_rule(family, table, name, *guard, _match(jhash, {"set": mine}), _accept()))
        if len(mine) < BUCKETS:
            # `<= 255` holds for every bucket: the rule only reads the key (it must be readable).
            readable = _match(jhash, BUCKETS - 1, op="<=")
            commands.append(_rule(family, table, name, *guard, readable, _drop()))
        commands.append(_rule(family, table, name, _goto("default")))
    elif not mine:
        commands.append(_rule(family, table, name, *guard, _drop()))
    elif len(mine) < BUCKETS:
        commands.append(_rule(family, table, name, *guard, _match(jhash, {"set": mine}, op="!="), _drop()))
    return commands


def _vip_chain(  # noqa: PLR0917
    spec: FarmRules,
    family: str,
    name: str,
    deciding: Mapping[tuple[Proto, int | None], TrafficRule],
    rule_chains: Mapping[TrafficRule, str],
    owned: Mapping[str, Collection[int]],
) -> list[Json]:
    t = spec.table
    commands = [_plain_chain(family, t, name)]
    # A TCP packet that is not a SYN: conntrack and the connections chain decide (a connection this
    # node holds stays here whatever the buckets say since).
    commands.append(_rule(family, t, name, _l4("tcp"), _not_syn(), _accept()))
    if family == "ip6":
        # Neighbour discovery (and other ICMPv6 control messages) to the VIP is every node's.
        commands.append(_rule(family, t, name, _l4("ipv6-icmp"), _nd_types(), _accept()))
    by_port = [
        [{"concat": [proto, port]}, _goto(rule_chains[rule])]
        for (proto, port), rule in sorted(deciding.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
        if port is not None
    ]
    if by_port:
        key = {"concat": [{"meta": {"key": "l4proto"}}, _payload("th", "dport")]}
        commands.append(_rule(family, t, name, {"vmap": {"key": key, "data": {"set": by_port}}}))
    every_port = {proto: rule_chains[rule] for (proto, port), rule in deciding.items() if port is None}
    every_port.setdefault("tcp", "default_tcp")
    by_proto = [[proto, _goto(chain)] for proto, chain in sorted(every_port.items())]
    commands.append(
        _rule(family, t, name, {"vmap": {"key": {"meta": {"key": "l4proto"}}, "data": {"set": by_proto}}})
    )
    commands.append(_rule(family, t, name, _goto("default")))
    return commands


def connections_chain(spec: FarmRules, family: str, addresses: Collection[BalancedAddress]) -> list[Json]:
    """After conntrack (both modes): TCP to a VIP that is neither a known connection nor a SYN is
    dropped, never answered with a reset (with `nf_conntrack_tcp_loose=0`, another node's
    connection, or one this node held before the buckets moved, is such a packet).

    Known connections leave first, whatever their address (an `accept` here ends only this chain:
    the host's own filter chains still see the packet)."""
    t = spec.table
    commands = [_chain(family, t, "connections", "prerouting", FILTER_PRIORITY)]
    if not addresses:
        return commands
    established = _match({"ct": {"key": "state"}}, ["established", "related"], op="in")
    vips = _one_or_set({str(a.vip) for a in addresses})
    commands.append(_rule(family, t, "connections", established, _accept()))
    to_vips = _match(_payload(family, "daddr"), vips)
    commands.append(
        _rule(family, t, "connections", to_vips, _l4("tcp"), _not_syn(), {"counter": None}, _drop())
    )
    return commands


# ----------------------------------------------------------------------------- neighbour discovery
ND_TYPES = ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert", "nd-redirect"]


def _nd_types() -> Json:
    return _match(_payload("icmpv6", "type"), {"set": ND_TYPES}, op="==")


def _raw(offset: int, length: int) -> Json:
    """Bits `offset` to `offset + length` of the transport header (the ICMPv6 message)."""
    return {"payload": {"base": "th", "offset": offset, "len": length}}


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


ND_TARGET = _raw(64, 128)
"""The target address of a neighbour solicitation or advertisement."""
ND_RESERVED_LOW = _raw(48, 16)
"""The low half of an advertisement's flags word: reserved (sent as 0, ignored by receivers)."""
ND_FIRST_OPTION = _raw(192, 64)
"""The first option after the target: type, length (in 8 bytes), and for a link-layer address
option the MAC."""
ND_OPTION_MAC = _raw(208, 48)
TARGET_LL_OPTION = 2


def _ones_sum(words: Collection[int]) -> int:
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_neutral(old: bytes, new: bytes) -> int:
    """The 16-bit word that, written where a zero word was, keeps a one's-complement checksum the
    same when the bytes `old` (even length) of the message become `new`: sum(old) - sum(new)."""
    words = [int.from_bytes(b[i : i + 2], "big") for b in (old, new) for i in range(0, len(b), 2)]
    half = len(words) // 2
    return _ones_sum([*words[:half], *(0xFFFF ^ w for w in words[half:])])


def mac_to_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def nd_rewrites(spec: FarmRules, mode: str) -> list[Json]:
    """`ip6` output (`nd_out`): what this node's kernel sends about an IPv6 VIP.

    - a neighbour solicitation from the VIP leaves from this node's own address (`links`): its
      source link-layer option must not teach the client this node's MAC for the VIP;
    - `vmac_invisible`: a neighbour advertisement for the VIP names the virtual MAC (the target
      link-layer option rewritten, the checksum kept by the reserved half-word).
    An empty list without IPv6 VIPs.
    """
    addresses = spec.of_family("ip6")
    if not addresses:
        return []
    t = spec.table
    commands = [_chain("ip6", t, "nd_out", "output", 0)]
    solicit = _match(_payload("icmpv6", "type"), "nd-neighbor-solicit")
    advert = _match(_payload("icmpv6", "type"), "nd-neighbor-advert")
    for address in addresses:
        link = spec.link(address.interface)
        if link is None:
            raise ValueError(f"no link information for {address.interface} (IPv6 VIP {address.vip})")
        if link.own is not None:
            own = {"mangle": {"key": _payload("ip6", "saddr"), "value": str(link.own)}}
            vip_source = _match(_payload("ip6", "saddr"), str(address.vip))
            commands.append(_rule("ip6", t, "nd_out", solicit, vip_source, {"counter": None}, own))
        if mode != "vmac_invisible":
            continue
        real, virtual = mac_to_bytes(link.mac), mac_to_bytes(address.vmac)
        option = bytes([TARGET_LL_OPTION, 1])
        commands.append(
            _rule(
                "ip6",
                t,
                "nd_out",
                advert,
                _match(ND_TARGET, _hex(address.vip.packed)),
                _match(ND_FIRST_OPTION, _hex(option + real)),
                _match(ND_RESERVED_LOW, 0),
                {"counter": None},
                {"mangle": {"key": ND_OPTION_MAC, "value": _hex(virtual)}},
                {"mangle": {"key": ND_RESERVED_LOW, "value": checksum_neutral(real, virtual)}},
            )
        )
    return commands


def removal(spec: FarmRules) -> Json:
    """Remove the farm's tables (whether they exist or not)."""
    commands: list[Json] = []
    for family in ("netdev", "arp", "ip", "ip6"):
        ref = {"family": family, "name": spec.table}
        commands += [{"add": {"table": ref}}, {"delete": {"table": ref}}]
    return {"nftables": commands}
