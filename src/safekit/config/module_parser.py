"""Reading a module's `userconfig.xml` into `ModuleConfig`.

This file owns the document structure (`<safe>`, `<macro>`, `<service>` and its sections) and
the sections about membership, replication, scripts and failover rules; `vip_parser` and
`check_parser` own the virtual IP and checker sections. Problems are collected and raised
together at the end, each with its file:line.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Final, Literal, NamedTuple, cast

from safekit.config.attributes import ElementReader, ReadContext, children, first_child
from safekit.config.check_parser import parse_check, parse_errd, with_interface_checks, with_vip_checks
from safekit.config.compat import IGNORED_ATTRIBUTES
from safekit.config.errors import ConfigError, ConfigWarning, Diagnostics
from safekit.config.failover_rules import WILDCARD, parse_failover_rules, resources_in
from safekit.config.macros import MacroExpander
from safekit.config.module import (
    DEFAULT_FARM_MLOST_COUNT,
    DEFAULT_FARM_PULSE,
    DEFAULT_HEARTBEAT_PULSE,
    DEFAULT_HEARTBEAT_TIMEOUT,
    Boot,
    Check,
    Failover,
    Farm,
    FarmLan,
    Heart,
    Heartbeat,
    Mode,
    ModuleConfig,
    NotReplicated,
    ReplicatedDir,
    Rfs,
    Service,
    User,
    UserVar,
)
from safekit.config.vip_parser import parse_vip
from safekit.config.xmlread import XmlElement, read_xml

SECTIONS: Final = ("heart", "farm", "vip", "rfs", "user", "errd", "check", "failover")
VHOST_REFUSAL: Final = (
    "SafeKit's virtual hostname is not supported: safekit does not change the host name the "
    "application sees (ADR 0055). Remove <vhost> and the scripts' use of its environment file; "
    "clients reach the service by the virtual IP (give it a DNS name), and an application that "
    "must report a fixed host name can be started by start_prim in its own UTS namespace "
    "(unshare --uts sh -c 'hostname NAME && exec APP') or be configured with the name"
)
_MACRO_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Resource classes a failover rule may test; the ident-bearing ones are checked against the module.
RESOURCE_CLASSES: Final = (
    "heartbeat", "rfs", "custom", "ping", "tcp", "intf", "ip", "module", "splitbrain", "proc", "usersetting",
)  # fmt: skip


class ModuleResult(NamedTuple):
    """What `parse_module`/`load_module` return: `config, warnings = load_module(path)`."""

    config: ModuleConfig
    warnings: tuple[ConfigWarning, ...]


def parse_module(
    text: str | bytes, filename: str = "userconfig.xml", env: Mapping[str, str] | None = None
) -> ModuleResult:
    """Parse the text of a `userconfig.xml`; `%NAME%` falls back to `env` (default os.environ).

    Raises ConfigError carrying every problem of the file.
    """
    root = read_xml(text, filename)
    diag = Diagnostics(filename)
    config = module_from_element(root, diag, os.environ if env is None else env)
    diag.raise_if_errors()
    if config is None:  # pragma: no cover - a None config always comes with a recorded error
        raise ConfigError(filename, root.line, root.tag, "no module configuration found")
    return ModuleResult(config, diag.sorted_warnings())


def module_from_element(root: XmlElement, diag: Diagnostics, env: Mapping[str, str]) -> ModuleConfig | None:
    if root.tag != "safe":
        diag.error(root.line, root.tag, "the root element of userconfig.xml must be <safe>")
        return None
    ElementReader(root, diag, None, allowed=())
    expander = MacroExpander({}, env)
    macros = _macros(root, diag, expander)
    ctx = ReadContext(diag, expander, mode="")
    ctx.children(root, ("macro", "service"), once=("service",))
    service_element = first_child(root, "service")
    if service_element is None:
        diag.error(root.line, "safe", 'missing <service mode="mirror|farm">')
        return None
    service, mode_is_valid = _service(service_element, ctx)
    # An invalid mode is reported once; checks that depend on the mode are then skipped.
    ctx.mode = service.mode if mode_is_valid else ""
    # <vhost> is SafeKit's, refused with its own reason rather than as an unknown element.
    for vhost in children(service_element, "vhost"):
        diag.error(vhost.line, "vhost", VHOST_REFUSAL)
    sections = tuple(child for child in service_element.children if child.tag != "vhost")
    ctx.children(dataclasses.replace(service_element, children=sections), SECTIONS, once=SECTIONS)
    section = {tag: first_child(service_element, tag) for tag in SECTIONS}
    config = ModuleConfig(
        service=service,
        heart=_heart(heart, ctx) if (heart := section["heart"]) else None,
        farm=_farm(farm, ctx) if (farm := section["farm"]) else None,
        vip=parse_vip(vip, ctx) if (vip := section["vip"]) else None,
        rfs=_rfs(rfs, ctx) if (rfs := section["rfs"]) else None,
        user=_user(user, ctx) if (user := section["user"]) else None,
        errd=parse_errd(errd, ctx) if (errd := section["errd"]) else None,
        check=parse_check(check, ctx) if (check := section["check"]) else Check(),
        failover=_failover(failover, ctx) if (failover := section["failover"]) else Failover(),
        macros=tuple(macros.items()),
        filename=diag.filename,
    )
    # SafeKit adds an <ip> checker for each <virtual_addr check="on">; rules may name it.
    config = dataclasses.replace(config, check=with_vip_checks(config.check, config.vip, ctx.mode))
    # ... and an <intf> checker for each <interface check="on">.
    config = dataclasses.replace(config, check=with_interface_checks(config.check, config.vip, ctx.mode))
    _check_mode(config, service_element, ctx)
    _check_rule_resources(config, diag)
    return config


def _macros(root: XmlElement, diag: Diagnostics, expander: MacroExpander) -> dict[str, str]:
    macros: dict[str, str] = {}
    for element in children(root, "macro"):
        reader = ElementReader(element, diag, expander, allowed=("name", "value"))
        name = reader.string("name", required=True)
        if not reader.has("value"):
            reader.error("missing required attribute 'value'")
            continue
        value = reader.raw("value")
        if name is None or value is None:
            continue
        if not _MACRO_NAME.fullmatch(name):
            reader.error(f"attribute 'name': {name!r} is not a macro name (use letters, digits, '_')")
        elif name in macros:
            reader.error(f"macro {name!r} is defined twice")
        else:
            expander.define(name, value, expand=False)  # `raw` expanded it
            macros[name] = expander.macros[name]
    return macros


def _service(element: XmlElement, ctx: ReadContext) -> tuple[Service, bool]:
    reader = ctx.reader(element, ("mode", "boot", "failover", "defaultprim", "maxloop", "loop_interval"))
    mode = reader.choice("mode", ("mirror", "farm"), "", required=True)
    service = Service(
        mode=cast(Mode, mode or "mirror"),
        boot=cast(Boot, reader.choice("boot", ("on", "off", "auto", "ignore"), "auto")),
        failover=reader.flag("failover", True),
        defaultprim=reader.name("defaultprim", "alone") or "alone",
        maxloop=reader.integer("maxloop", 3, 0),
        # SafeKit's templates write loop_interval="24", in hours.
        loop_interval=reader.duration("loop_interval", "h", 24 * 3600.0),
        line=element.line,
    )
    return service, bool(mode)


def _heart(element: XmlElement, ctx: ReadContext) -> Heart:
    reader = ctx.reader(element, ("port", "pulse", "timeout"))
    # Bare numbers are milliseconds here, as in SafeKit (pulse="700" is 0.7 s).
    pulse = reader.duration("pulse", "ms", DEFAULT_HEARTBEAT_PULSE)
    timeout = reader.duration("timeout", "ms", DEFAULT_HEARTBEAT_TIMEOUT)
    ctx.children(element, ("heartbeat",))
    heartbeats: list[Heartbeat] = []
    for child in children(element, "heartbeat"):
        hb = ctx.reader(child, ("name", "ident", "pulse", "timeout"))
        name = hb.name("name", "default") or ""
        servers = _heartbeat_servers(child, name, ctx)
        own_pulse = hb.duration("pulse", "ms", pulse)
        own_timeout = hb.duration("timeout", "ms", timeout)
        if own_timeout <= own_pulse:
            hb.error(
                f"timeout ({own_timeout:g}s) must be longer than pulse ({own_pulse:g}s); "
                'a few pulses is usual (e.g. pulse="200ms" timeout="1500ms")'
            )
        if any(other.name == name for other in heartbeats):
            hb.error(f"heartbeat {name!r} is declared twice")
        heartbeats.append(Heartbeat(name, own_pulse, own_timeout, hb.name("ident"), child.line, servers))
    if not heartbeats:
        reader.error('no <heartbeat> (add <heartbeat name="default"/>, named after a <lan> of cluster.xml)')
    if sum(hb.carries_replication for hb in heartbeats) > 1:
        reader.error('only one heartbeat may carry replication (ident="flow")')
    return Heart(tuple(heartbeats), reader.port("port"), pulse, timeout, element.line)


def _heartbeat_servers(element: XmlElement, lan: str, ctx: ReadContext) -> tuple[tuple[str, int], ...]:
    """SafeKit's `<heartbeat><server addr="..."/>`: accepted with a warning, since the addresses
    the heartbeat uses are cluster.xml's; `validate_module_against_cluster` refuses an address that
    is not a node's on that LAN (ADR 0055)."""
    ctx.children(element, ("server",))
    servers: list[tuple[str, int]] = []
    for child in children(element, "server"):
        addr = ctx.reader(child, ("addr",)).ipv4("addr")
        if addr is not None:
            servers.append((addr, child.line))
    if servers:
        ctx.diag.warn(
            servers[0][1],
            "server",
            f"accepted for SafeKit compatibility and not used: the heartbeat {lan!r} goes to the "
            f'addresses of <lan name="{lan}"> in cluster.xml; each <server addr> must be one of them '
            "(checked against cluster.xml)",
        )
    return tuple(servers)


def _farm(element: XmlElement, ctx: ReadContext) -> Farm:
    reader = ctx.reader(element, ("pulse", "mlost_count", "slost_count", "port"))
    ctx.children(element, ("lan",))
    lans: list[FarmLan] = []
    for child in children(element, "lan"):
        lan = ctx.reader(child, ("name", "power"))
        name = lan.name("name", required=True) or ""
        if any(other.name == name for other in lans):
            lan.error(f"LAN {name!r} is listed twice")
        lans.append(FarmLan(name, lan.integer("power", 1, 0), child.line))
    if not lans:
        reader.error('no <lan> (add <lan name="default"/>, named after a <lan> of cluster.xml)')
    return Farm(
        lans=tuple(lans),
        pulse=reader.duration("pulse", "ms", DEFAULT_FARM_PULSE),
        mlost_count=reader.integer("mlost_count", DEFAULT_FARM_MLOST_COUNT, 2),
        slost_count=reader.integer("slost_count", 10, 1),
        port=reader.port("port"),
        line=element.line,
    )


_RFS_ATTRIBUTES: Final = (
    "async",
    "locktimeout",
    "sendtimeout",
    "reitimeout",
    "nbrei",
    "packetsize",
    "syncdelta",
    "namespacepolicy",
    "splitbrain_keep_free",
    "engine",
    "writeback",
)

_KEEP_FREE = re.compile(r"(\d+(\.\d+)?%|\d+(\.\d+)?[KMGT]?B?)", re.IGNORECASE)


def _rfs(element: XmlElement, ctx: ReadContext) -> Rfs:
    reader = ctx.reader(element, _RFS_ATTRIBUTES, IGNORED_ATTRIBUTES["rfs"])
    ctx.children(element, ("replicated",))
    _check_engine(reader)
    dirs = tuple(_replicated(child, ctx) for child in children(element, "replicated"))
    if not dirs:
        reader.error('no <replicated> (add <replicated dir="/absolute/path"/>)')
    for index, one in enumerate(dirs):
        for other in dirs[:index]:
            if (
                one.dir == other.dir
                or one.dir.startswith(other.dir.rstrip("/") + "/")
                or other.dir.startswith(one.dir.rstrip("/") + "/")
            ):
                ctx.diag.error(
                    one.line, "replicated", f"{one.dir!r} overlaps {other.dir!r} (line {other.line})"
                )
    return Rfs(
        replicated=dirs,
        async_mode=cast(Literal["second", "none"], reader.choice("async", ("second", "none"), "second")),
        locktimeout=reader.duration("locktimeout", "s", 100.0),
        sendtimeout=reader.duration("sendtimeout", "s", 30.0),
        reitimeout=reader.duration("reitimeout", "s", 150.0),
        nbrei=reader.integer("nbrei", 3, 1),
        packetsize=reader.integer("packetsize", 65536, 512) if reader.has("packetsize") else None,
        syncdelta=reader.duration("syncdelta", "m", 1.0) if reader.has("syncdelta") else None,
        namespacepolicy=reader.integer("namespacepolicy", 0, 0) if reader.has("namespacepolicy") else None,
        line=element.line,
        splitbrain_keep_free=_keep_free(reader),
        writeback=reader.flag("writeback", False),
    )


def _check_engine(reader: ElementReader) -> None:
    """`engine` (our extension, ADR 0024) no longer chooses anything: the native programs are the
    only replication data path (ADR 0029). `native` is accepted as it is; `python` is accepted with
    a warning (a node keeps starting its modules after an upgrade); anything else is a typo."""
    if reader.has("engine") and reader.choice("engine", ("native", "python"), "native") == "python":
        reader.warn(
            "attribute 'engine': 'python' is ignored: the Python replication data path was removed, "
            "the module runs on the native programs (docs/adr/0029); remove the attribute"
        )


def _keep_free(reader: ElementReader) -> str:
    text = (reader.string("splitbrain_keep_free") or "10%").strip()
    ok = _KEEP_FREE.fullmatch(text) is not None and (not text.endswith("%") or float(text[:-1]) < 100)
    if not ok:
        reader.error(
            f"attribute 'splitbrain_keep_free': {text!r}: "
            "give a percentage below 100 (10%) or a size (2G, 512M)"
        )
        return "10%"
    return text


def _replicated(element: XmlElement, ctx: ReadContext) -> ReplicatedDir:
    reader = ctx.reader(element, ("dir", "mode"))
    directory = reader.string("dir", required=True) or ""
    if directory and not directory.startswith("/"):
        reader.error(f"attribute 'dir': {directory!r} must be an absolute path (e.g. /var/lib/app)")
    elif directory:
        directory = posixpath.normpath(directory)
        if directory == "/":
            reader.error("attribute 'dir': the root directory cannot be replicated")
    read_only = reader.choice("mode", ("read_only",), "") == "read_only"
    ctx.children(element, ("notreplicated", "tocheck"))
    excluded: list[NotReplicated] = []
    for child in children(element, "notreplicated"):
        nr = ctx.reader(child, ("path", "regexpath"))
        if nr.has("path") == nr.has("regexpath"):
            nr.error("give exactly one of 'path' (relative to the replicated dir) or 'regexpath'")
            continue
        path = _relative_path(nr, "path") if nr.has("path") else None
        excluded.append(NotReplicated(path, nr.regex("regexpath"), child.line))
    tocheck = tuple(
        path
        for child in children(element, "tocheck")
        if (path := _relative_path(ctx.reader(child, ("path",)), "path"))
    )
    return ReplicatedDir(directory, read_only, tuple(excluded), tocheck, element.line)


def _relative_path(reader: ElementReader, name: str) -> str | None:
    path = reader.string(name, required=True)
    if path is None:
        return None
    parts = path.split("/")
    if path.startswith("/") or ".." in parts:
        reader.error(f"attribute {name!r}: {path!r} must be relative to the replicated dir, without '..'")
        return None
    return path


def _user(element: XmlElement, ctx: ReadContext) -> User:
    reader = ctx.reader(
        element, ("nicestoptimeout", "forcestoptimeout", "logging"), IGNORED_ATTRIBUTES["user"]
    )
    ctx.children(element, ("var",))
    variables: list[UserVar] = []
    for child in children(element, "var"):
        var = ctx.reader(child, ("name", "value"))
        name = var.string("name", required=True)
        value = var.raw("value") if var.has("value") else None
        if not var.has("value"):
            var.error("missing required attribute 'value'")
        if name is None or value is None:
            continue
        if not _MACRO_NAME.fullmatch(name):
            var.error(
                f"attribute 'name': {name!r} is not an environment variable name (letters, digits, '_')"
            )
        elif any(v.name == name for v in variables):
            var.error(f"variable {name!r} is set twice")
        else:
            variables.append(UserVar(name, value))
    return User(
        nicestoptimeout=reader.duration("nicestoptimeout", "s", 300.0),
        forcestoptimeout=reader.duration("forcestoptimeout", "s", 300.0),
        logging=cast(Literal["userlog", "none"], reader.choice("logging", ("userlog", "none"), "userlog")),
        vars=tuple(variables),
        line=element.line,
    )


def _failover(element: XmlElement, ctx: ReadContext) -> Failover:
    reader = ctx.reader(element, ("extends", "period", "handle_time"))
    for child in element.children:
        ctx.diag.error(
            child.line, "failover", f"unknown element <{child.tag}> (<failover> holds rule text only)"
        )
    rules, errors = parse_failover_rules(element.text, element.line_at)
    for line, message in errors:
        ctx.diag.error(line, "failover", message)
    return Failover(
        rules=rules,
        extends=reader.flag("extends", True),
        # SafeKit writes these in milliseconds (period="5000", handle_time="15000").
        period=reader.duration("period", "ms", 5.0),
        handle_time=reader.duration("handle_time", "ms", 15.0),
        line=element.line,
    )


def _check_mode(config: ModuleConfig, service: XmlElement, ctx: ReadContext) -> None:
    def complain(message: str) -> None:
        ctx.diag.error(service.line, "service", message)

    if ctx.mode == "mirror":
        if config.heart is None:
            complain('a mirror needs <heart> with at least one <heartbeat name="LAN"/>')
        if config.farm is not None:
            complain("<farm> belongs to farm modules; a mirror uses <heart>")
    elif ctx.mode == "farm":
        if config.farm is None:
            complain('a farm needs <farm> with at least one <lan name="LAN"/>')
        if config.heart is not None:
            complain("<heart> belongs to mirror modules; a farm uses <farm>")
        if config.rfs is not None:
            complain("<rfs> (replication) is for mirror modules only")
        if config.service.defaultprim != "alone":
            complain("attribute 'defaultprim' is for mirror modules only")


def _check_rule_resources(config: ModuleConfig, diag: Diagnostics) -> None:
    declared = set(config.check.resource_names())
    if config.heart is not None:
        declared |= {f"heartbeat.{hb.name}" for hb in config.heart.heartbeats}
    checked = ("heartbeat", "custom", "ping", "tcp", "intf", "ip", "module")
    for rule in config.failover.rules:
        for resource in resources_in(rule.condition):
            kind, _, ident = resource.partition(".")
            if kind not in RESOURCE_CLASSES:
                diag.error(
                    rule.line,
                    "failover",
                    f"rule {rule.label!r}: unknown resource class {kind!r} in {resource!r} "
                    f"(use one of: {', '.join(RESOURCE_CLASSES)})",
                )
            elif kind in checked and ident != WILDCARD and resource not in declared:
                diag.error(
                    rule.line,
                    "failover",
                    f"rule {rule.label!r}: resource {resource!r} is not declared in this module "
                    f"(declared: {', '.join(sorted(declared)) or 'none'})",
                )
