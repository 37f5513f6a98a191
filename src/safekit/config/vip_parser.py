"""Reading `<vip>`: virtual addresses on real interfaces (mirror) or virtual interfaces (farm), and
the farm's `<loadbalancing_list>`."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal, cast

from safekit.config.attributes import ElementReader, ReadContext, children, first_child
from safekit.config.compat import IGNORED_ATTRIBUTES
from safekit.config.module import (
    LoadBalancing,
    LoadBalancingHost,
    LoadBalancingRule,
    Vip,
    VipInterface,
    VirtualAddress,
)
from safekit.config.xmlread import XmlElement

ANY = "*"
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_vip(element: XmlElement, ctx: ReadContext) -> Vip:
    reader = ctx.reader(element, ("tcpreset",))
    ctx.children(
        element, ("interface_list", "loadbalancing_list"), once=("interface_list", "loadbalancing_list")
    )
    interfaces: list[VipInterface] = []
    interface_list = first_child(element, "interface_list")
    if interface_list is not None:
        ctx.reader(interface_list, ())
        ctx.children(interface_list, ("interface",))
        interfaces = [_interface(child, ctx) for child in children(interface_list, "interface")]
    if not interfaces:
        reader.error('no <interface_list><interface> with a <virtual_addr addr="..."/>')
    groups: list[LoadBalancing] = []
    lb_list = first_child(element, "loadbalancing_list")
    if lb_list is not None:
        ctx.reader(lb_list, ())
        ctx.children(lb_list, ("group",))
        groups = [_group(child, ctx) for child in children(lb_list, "group")]
        if ctx.mode == "mirror":
            ctx.diag.error(lb_list.line, "loadbalancing_list", "load balancing is for farm modules only")
    vip = Vip(tuple(interfaces), tuple(groups), reader.flag("tcpreset", True), element.line)
    _check_addresses(vip, ctx)
    return vip


def _interface(element: XmlElement, ctx: ReadContext) -> VipInterface:
    reader = ctx.reader(element, ("name", "check", "arpinterval"), IGNORED_ATTRIBUTES["interface"])
    kinds = ("real_interface", "virtual_interface")
    ctx.children(element, kinds, once=kinds)
    present = [child for child in element.children if child.tag in kinds]
    if len(present) != 1:
        reader.error("give exactly one of <real_interface> (mirror) or <virtual_interface> (farm)")
    kind: Literal["real", "virtual"] = "real"
    vmac_type: Literal["vmac_directed", "vmac_invisible"] | None = None
    addresses: list[VirtualAddress] = []
    if present:
        holder = present[0]
        if holder.tag == "real_interface":
            ctx.reader(holder, ())
            if ctx.mode == "farm":
                ctx.diag.error(
                    holder.line, holder.tag, "a farm shares its VIP with <virtual_interface type=...>"
                )
        else:
            kind = "virtual"
            types = ("vmac_directed", "vmac_invisible")
            chosen = ctx.reader(holder, ("type",)).choice("type", types, "vmac_directed")
            vmac_type = cast(Literal["vmac_directed", "vmac_invisible"], chosen)
            if ctx.mode == "mirror":
                ctx.diag.error(holder.line, holder.tag, "a mirror's VIP goes in <real_interface>")
        ctx.children(holder, ("virtual_addr",))
        default_where = "one_side_alias" if kind == "real" else "alias"
        addresses = [_address(child, ctx, default_where, kind) for child in children(holder, "virtual_addr")]
        if not addresses:
            ctx.diag.error(holder.line, holder.tag, 'no <virtual_addr addr="..."/>')
    return VipInterface(
        addresses=tuple(addresses),
        kind=kind,
        name=reader.name("name"),
        check=reader.flag("check", False),
        arpinterval=reader.duration("arpinterval", "s", 60.0),
        vmac_type=vmac_type,
        line=element.line,
    )


def _address(element: XmlElement, ctx: ReadContext, default_where: str, kind: str = "real") -> VirtualAddress:
    reader = ctx.reader(element, ("addr", "where", "netmask", "check", "provider"))
    where = reader.choice("where", ("one_side_alias", "alias"), default_where)
    provider = (reader.string("provider", "arp") or "arp").strip()
    if not _PROVIDER_NAME.match(provider):
        reader.error(f"attribute 'provider': {provider!r} is not a provider name (e.g. arp, aws_route)")
    # provider options (docs/vip.md): <option name="route_tables" value="rtb-1,rtb-2"/>
    ctx.children(element, ("option",))
    options: list[tuple[str, str]] = []
    for child in children(element, "option"):
        option = ctx.reader(child, ("name", "value"))
        name = option.name("name", required=True) or ""
        if name in dict(options):
            option.error(f"option {name!r} is given twice")
        options.append((name, option.string("value", "") or ""))
    if options and provider == "arp":
        reader.error('<option> children need a cloud provider="..." (the arp provider has none here)')
    addr = (_farm_address(reader, "addr") if kind == "virtual" else _mirror_address(reader, provider)) or ""
    return VirtualAddress(
        addr=addr,
        where=cast(Literal["one_side_alias", "alias"], where),
        prefix_length=_prefix_length(reader, ":" in addr),
        check=reader.flag("check", True),
        line=element.line,
        provider=provider,
        options=tuple(options),
    )


def _farm_address(reader: ElementReader, name: str, value: str | None = None) -> str | None:
    """A farm VIP (`<virtual_interface>`, a `<rule virtual_addr>`): IPv4 or IPv6 (neighbour
    discovery instead of ARP, docs/farm.md); a mirror's VIP stays IPv4."""
    text = reader.string(name, required=True) if value is None else value
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        reader.error(f"attribute {name!r}: {text!r} is not an IP address (e.g. 192.168.1.10 or fd00::10)")
        return None


def _mirror_address(reader: ElementReader, provider: str) -> str | None:
    """A mirror's VIP (`<real_interface>`): IPv4, or IPv6 with the arp provider (neighbour
    discovery: docs/vip.md); the cloud providers hold IPv4 addresses only."""
    text = reader.string("addr", required=True)
    if text is None:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        reader.error(f"attribute 'addr': {text!r} is not an IP address (e.g. 192.168.1.10 or fd00::10)")
        return None
    if address.version == 6 and provider != "arp":
        reader.error(
            f"attribute 'addr': {address} is IPv6: the {provider} provider holds IPv4 addresses only "
            "(an IPv6 VIP needs the arp provider, on a LAN)"
        )
        return None
    return str(address)


def _prefix_length(reader: ElementReader, ipv6: bool = False) -> int | None:
    value = reader.raw("netmask")
    if value is None:
        return None
    text = value.strip().lstrip("/")
    if ipv6:
        if text.isdigit() and 0 < int(text) <= 128:
            return int(text)
        reader.error(f"attribute 'netmask': {value!r} is not an IPv6 prefix length (1 to 128, e.g. 64)")
        return None
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        reader.error(f"attribute 'netmask': {value!r} is not a netmask (e.g. 255.255.255.0 or 24)")
        return None


def _group(element: XmlElement, ctx: ReadContext) -> LoadBalancing:
    reader = ctx.reader(element, ("name",))
    name = reader.name("name", required=True) or ""
    ctx.children(element, ("cluster", "rule"), once=("cluster",))
    hosts: list[LoadBalancingHost] = []
    cluster = first_child(element, "cluster")
    # Without <cluster>, SafeKit's group is every node of the cluster with power 1 (`hosts` empty;
    # the daemon names them at load).
    if cluster is not None:
        ctx.reader(cluster, ())
        ctx.children(cluster, ("host",))
        seen: dict[str, int] = {}
        for child in children(cluster, "host"):
            host = ctx.reader(child, ("name", "power"))
            host_name = host.name("name", required=True) or ""
            if host_name and host_name in seen:
                host.error(
                    f"host {host_name!r} is listed twice in this group (first at line {seen[host_name]})"
                )
            seen.setdefault(host_name, child.line)
            hosts.append(LoadBalancingHost(host_name, host.integer("power", 1, 0), child.line))
        if not hosts:
            ctx.diag.error(
                cluster.line,
                "cluster",
                'no <host name="NODE" power="1"/> '
                "(leave <cluster> out for every node of the cluster, power 1)",
            )
    rules = [_rule(child, ctx) for child in children(element, "rule")]
    if not rules:
        reader.error(
            'no <rule virtual_addr="*" port="80" proto="tcp" filter="on_addr"/> (what traffic is shared)'
        )
    return LoadBalancing(name, tuple(hosts), tuple(rules), element.line)


def _rule(element: XmlElement, ctx: ReadContext) -> LoadBalancingRule:
    reader = ctx.reader(element, ("virtual_addr", "port", "proto", "filter"))
    proto = cast(Literal["tcp", "udp", "arp"], reader.choice("proto", ("tcp", "udp", "arp"), "tcp"))
    filters = ("on_addr", "on_port", "on_ipid")
    filter_ = cast(Literal["on_addr", "on_port", "on_ipid"], reader.choice("filter", filters, "on_addr"))
    address = (reader.string("virtual_addr", ANY) or ANY).strip()
    if address != ANY:
        address = _farm_address(reader, "virtual_addr", address) or ANY
    port: int | None = None
    raw_port = reader.raw("port")
    if proto != "arp" and raw_port is not None and raw_port.strip() != ANY:
        port = reader.port("port")
    if filter_ == "on_port" and port is None and proto != "arp":
        reader.error('filter="on_port" needs a port')
    return LoadBalancingRule(address, port, proto, filter_, element.line)


def _check_addresses(vip: Vip, ctx: ReadContext) -> None:
    seen: dict[str, int] = {}
    for interface in vip.interfaces:
        for address in interface.addresses:
            if address.addr and address.addr in seen:
                ctx.diag.error(
                    address.line,
                    "virtual_addr",
                    f"{address.addr} is declared twice (first at line {seen[address.addr]})",
                )
            seen.setdefault(address.addr, address.line)
    for group in vip.loadbalancing:
        for rule in group.rules:
            if rule.virtual_addr != ANY and rule.virtual_addr not in seen:
                ctx.diag.error(
                    rule.line,
                    "rule",
                    f'virtual_addr {rule.virtual_addr} is not a <virtual_addr> of this <vip> (or use "*")',
                )
