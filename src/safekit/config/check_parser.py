"""Reading `<errd>` (process monitoring) and `<check>` (tcp, ping, intf, ip, module, custom and
split-brain checkers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final, Literal, TypeVar, cast

from safekit.config.attributes import ElementReader, ReadContext, children
from safekit.config.module import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_CHECK_TIMEOUT,
    DEFAULT_MODULE_PORT,
    Check,
    CheckerAction,
    CheckTarget,
    CustomCheck,
    Errd,
    IntfCheck,
    IpCheck,
    ModuleCheck,
    PingCheck,
    ProcCheck,
    SplitBrain,
    TcpCheck,
    Vip,
    When,
)
from safekit.config.xmlread import XmlElement

CHECKER_ACTIONS: Final = ("wait", "restart", "stopstart", "stop")
WHEN: Final = ("prim", "both", "pre")
PROC_ACTIONS: Final = ("restart", "stopstart", "stop", "noaction")
PROC_CLASSES: Final = ("prim", "both", "pre", "second", "sec")
CHECKERS: Final = ("tcp", "ping", "intf", "ip", "module", "custom", "splitbrain")

T = TypeVar("T")


def parse_errd(element: XmlElement, ctx: ReadContext) -> Errd:
    reader = ctx.reader(element, ("polltimer",))
    ctx.children(element, ("proc",))
    procs = tuple(_proc(child, ctx) for child in children(element, "proc"))
    return Errd(procs, reader.duration("polltimer", "s", 30.0), element.line)


def _proc(element: XmlElement, ctx: ReadContext) -> ProcCheck:
    reader = ctx.reader(
        element,
        ("name", "nameregex", "argregex", "service", "atleast", "atmax", "action", "class", "start_after"),
    )
    ctx.children(element, ())
    # Both may be given (SafeKit's own templates do): nameregex then matches the processes and
    # name only names the check (proc.NAME in `state -v`, the log and failover rules).
    if not reader.has("name") and not reader.has("nameregex"):
        reader.error(
            "give 'name' (the process or service name) or 'nameregex' (a regular expression on it), "
            "or both: with both, nameregex matches and name names the check"
        )
    atleast = reader.integer("atleast", 1, 0)
    atmax = reader.integer("atmax", -1, -1)
    if atmax != -1 and atmax < atleast:
        reader.error(f"atmax ({atmax}) is smaller than atleast ({atleast}); use -1 for no upper bound")
    action = reader.choice("action", PROC_ACTIONS, "restart", required=True)
    process_class = reader.choice("class", PROC_CLASSES, "prim", required=True)
    return ProcCheck(
        action=cast(Literal["restart", "stopstart", "stop", "noaction"], action),
        process_class=cast(Literal["prim", "both", "pre", "second", "sec"], process_class),
        name=reader.string("name"),
        nameregex=reader.regex("nameregex"),
        argregex=reader.regex("argregex"),
        service=reader.flag("service", False),
        atleast=atleast,
        atmax=atmax,
        start_after=reader.integer("start_after", 0, 0) if reader.has("start_after") else None,
        line=element.line,
    )


def parse_check(element: XmlElement, ctx: ReadContext) -> Check:
    ctx.reader(element, ())
    ctx.children(element, CHECKERS, once=("splitbrain",))
    splitbrain_element = next((c for c in element.children if c.tag == "splitbrain"), None)
    check = Check(
        tcp=_all(element, "tcp", ctx, lambda e: _tcp(e, ctx)),
        ping=_all(element, "ping", ctx, lambda e: _ping(e, ctx)),
        intf=_all(element, "intf", ctx, lambda e: _intf(e, ctx)),
        ip=_all(element, "ip", ctx, lambda e: _ip(e, ctx)),
        module=_all(element, "module", ctx, lambda e: _module(e, ctx)),
        custom=_all(element, "custom", ctx, lambda e: _custom(e, ctx)),
        splitbrain=_splitbrain(splitbrain_element, ctx) if splitbrain_element is not None else None,
    )
    return check


def _all(element: XmlElement, tag: str, ctx: ReadContext, build: Callable[[XmlElement], T]) -> tuple[T, ...]:
    """Build every `<tag>` child; two checkers of one class may not share an ident."""
    built: list[T] = []
    idents: dict[str, int] = {}
    key = "name" if tag == "module" else "ident"
    for child in children(element, tag):
        built.append(build(child))
        ident = child.attributes.get(key)
        if ident is not None and ident in idents:
            ctx.diag.error(
                child.line, tag, f"{key} {ident!r} is already used by the <{tag}> at line {idents[ident]}"
            )
        idents.setdefault(ident or "", child.line)
    return tuple(built)


def _common(
    element: XmlElement, ctx: ReadContext, extra: tuple[str, ...], action: str
) -> tuple[ElementReader, str, When, CheckerAction]:
    reader = ctx.reader(element, ("ident", "when", "action", *extra))
    ident = reader.name("ident", required=True) or ""
    default_when = "both" if ctx.mode == "farm" else "prim"
    when = cast(When, reader.choice("when", WHEN, default_when))
    chosen = cast(CheckerAction, reader.choice("action", CHECKER_ACTIONS, action))
    return reader, ident, when, chosen


def _targets(
    element: XmlElement,
    ctx: ReadContext,
    *,
    port: Literal["required", "default", "none"] = "none",
    interface: bool = False,
) -> tuple[CheckTarget, ...]:
    ctx.children(element, ("to",))
    targets: list[CheckTarget] = []
    for child in children(element, "to"):
        allowed: tuple[str, ...] = ("name", "interval") if interface else ("addr", "interval", "timeout")
        if port != "none":
            allowed += ("port",)
        reader = ctx.reader(child, allowed)
        interval = reader.duration("interval", "s", DEFAULT_CHECK_INTERVAL)
        timeout = reader.duration("timeout", "s", min(DEFAULT_CHECK_TIMEOUT, interval))
        if timeout > interval:
            reader.error(f"timeout ({timeout:g}s) is longer than interval ({interval:g}s)")
        targets.append(
            CheckTarget(
                addr=None if interface else reader.host("addr"),
                port=(
                    reader.port("port", required=True)
                    if port == "required"
                    else reader.port("port", DEFAULT_MODULE_PORT)
                    if port == "default"
                    else None
                ),
                interface=reader.name("name", required=True) if interface else None,
                interval=interval,
                timeout=timeout,
                line=child.line,
            )
        )
    if not targets:
        example = '<to name="eth0"/>' if interface else '<to addr="192.168.1.1"/>'
        ctx.diag.error(element.line, element.tag, f"no <to> (e.g. {example})")
    return tuple(targets)


def _tcp(element: XmlElement, ctx: ReadContext) -> TcpCheck:
    _, ident, when, action = _common(element, ctx, (), "restart")
    return TcpCheck(ident, _targets(element, ctx, port="required"), when, action, element.line)


def _ping(element: XmlElement, ctx: ReadContext) -> PingCheck:
    _, ident, when, action = _common(element, ctx, (), "wait")
    return PingCheck(ident, _targets(element, ctx), when, action, element.line)


def _intf(element: XmlElement, ctx: ReadContext) -> IntfCheck:
    _, ident, when, action = _common(element, ctx, (), "wait")
    return IntfCheck(ident, _targets(element, ctx, interface=True), when, action, element.line)


def _ip(element: XmlElement, ctx: ReadContext) -> IpCheck:
    _, ident, when, action = _common(element, ctx, (), "stopstart")
    return IpCheck(ident, _targets(element, ctx), when, action, element.line)


def with_vip_checks(check: Check, vip: Vip | None, mode: str) -> Check:
    """`check` plus the `<ip>` checker SafeKit generates for each `<virtual_addr check="on">`.

    Each one is named after its address (resource `ip.192.168.1.10`), probes every
    DEFAULT_CHECK_INTERVAL that the address is on a local interface, and has the `<ip>` defaults:
    action `stopstart`, `when` prim (mirror) or both (farm). None is added for an address an `<ip>`
    of the user's already checks (or whose ident is that address), nor for a cloud provider's
    address (`provider` other than arp: `safekit vip check` tests those, the address need not be
    on a local interface).
    """
    if vip is None:
        return check
    checked = {c.ident for c in check.ip} | {t.addr for c in check.ip for t in c.targets if t.addr}
    when: When = "both" if mode == "farm" else "prim"
    added: list[IpCheck] = []
    for interface in vip.interfaces:
        for address in interface.addresses:
            if not address.check or address.provider != "arp" or not address.addr:
                continue
            if address.addr in checked:
                continue
            checked.add(address.addr)
            target = CheckTarget(addr=address.addr, line=address.line)
            added.append(IpCheck(address.addr, (target,), when, "stopstart", address.line, vip=True))
    if not added:
        return check
    return dataclasses.replace(check, ip=(*check.ip, *added))


def with_interface_checks(check: Check, vip: Vip | None, mode: str) -> Check:
    """`check` plus an `<intf>` checker for each `<interface check="on">` of `<vip>`, as SafeKit adds
    one: the link carrying the VIP going down makes the module react.

    Resource `intf.NAME` when the `<interface>` names its network interface; without a name (the
    interface is found from the address, as the VIP is placed), `intf.ADDRESS` after its first
    virtual address, and the probe looks for the interface whose connected network contains it
    (IPv4; an IPv6 farm address needs the name). The `<intf>` defaults: action `wait` (the module
    waits, its VIP elsewhere, until the link is up again), `when` prim (mirror) or both (farm),
    every DEFAULT_CHECK_INTERVAL. None for `check="off"` (the default), for an interface an `<intf>`
    of the user's already checks (by ident or target name: the user's one wins), nor for an
    interface whose addresses are all a cloud provider's.
    """
    if vip is None:
        return check
    checked = {c.ident for c in check.intf} | {
        t.interface for c in check.intf for t in c.targets if t.interface
    }
    when: When = "both" if mode == "farm" else "prim"
    added: list[IntfCheck] = []
    for interface in vip.interfaces:
        local = [a for a in interface.addresses if a.provider == "arp" and a.addr]
        if not interface.check or not local:
            continue
        if interface.name is not None:
            ident, target = interface.name, CheckTarget(interface=interface.name, line=interface.line)
        elif ":" not in local[0].addr:
            ident, target = local[0].addr, CheckTarget(addr=local[0].addr, line=interface.line)
        else:
            continue
        if ident in checked:
            continue
        checked.add(ident)
        added.append(IntfCheck(ident, (target,), when, "wait", interface.line, vip=True))
    if not added:
        return check
    return dataclasses.replace(check, intf=(*check.intf, *added))


def _module(element: XmlElement, ctx: ReadContext) -> ModuleCheck:
    reader = ctx.reader(element, ("name", "when", "action"))
    name = reader.name("name", required=True) or ""
    when = cast(When, reader.choice("when", WHEN, "both" if ctx.mode == "farm" else "prim"))
    action = cast(CheckerAction, reader.choice("action", CHECKER_ACTIONS, "wait"))
    return ModuleCheck(name, _targets(element, ctx, port="default"), when, action, element.line)


def _custom(element: XmlElement, ctx: ReadContext) -> CustomCheck:
    reader, ident, when, action = _common(element, ctx, ("exec", "arg"), "stopstart")
    ctx.children(element, ())
    return CustomCheck(
        ident=ident,
        exec=reader.string("exec", required=True) or "",
        when=when,
        arg=reader.string("arg"),
        action=action,
        line=element.line,
    )


def _splitbrain(element: XmlElement, ctx: ReadContext) -> SplitBrain:
    reader = ctx.reader(element, ("ident", "exec", "arg"))
    ctx.children(element, ())
    if ctx.mode == "farm":
        reader.error("the split-brain checker is for mirror modules only")
    ident = reader.name("ident", "witness") or "witness"
    exec_ = reader.choice("exec", ("ping", "arbitrator"), "ping")
    arg = reader.string("arg", required=True) or ""
    if reader.has("arg") and not arg.split():
        reader.error("attribute 'arg': give the witness address(es), e.g. arg=\"192.168.1.254\"")
    if exec_ == "arbitrator":
        return _arbitrator(reader, arg, ident, element.line)
    witnesses = tuple(w for item in arg.split() if (w := reader.check_host("arg", item)))
    return SplitBrain(witnesses, ident, exec_, element.line)


ARBITER_PORT: Final = 9455


def _arbitrator(reader: ElementReader, arg: str, ident: str, line: int) -> SplitBrain:
    """`exec="arbitrator" arg="HOST[:PORT]"`: exactly one `safekit arbiter` service."""
    items = arg.split()
    if len(items) > 1:
        reader.error(
            f"attribute 'arg': exec=\"arbitrator\" takes one arbiter address (HOST[:PORT]), got {len(items)}"
        )
    if not items:
        return SplitBrain((), ident, "arbitrator", line, ARBITER_PORT)
    host, sep, port_text = items[0].partition(":")
    port = ARBITER_PORT
    if sep:
        # isdigit() alone also accepts digits int() refuses ("²")
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            reader.error(f"attribute 'arg': {items[0]!r}: the port must be a number from 1 to 65535")
        else:
            port = int(port_text)
    checked = reader.check_host("arg", host)
    return SplitBrain((checked,) if checked else (), ident, "arbitrator", line, port)
