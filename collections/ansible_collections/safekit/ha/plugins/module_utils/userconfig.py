# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""The structured form of a module's userconfig.xml and of cluster.xml, both ways, without I/O.

`render_userconfig(params)` writes the XML that `safekit.ha.app_module` installs; `parse_userconfig(xml)`
reads such a file back into the same parameters (what `safekit.ha.node_info` returns), so that
`parse_userconfig(render_userconfig(p)) == canonical_params(p)`. A file that holds something the
structured form cannot express (macros, several `<to>` per checker, `<rfs packetsize>`, ...) is refused with
`NotStructured`; its raw XML stays the source of truth. Only the standard library is used: this
runs on the managed node.

Mirror modules have `<heart>`, their VIPs in `<real_interface>` and their replicated directories in
`<rfs>` (parameter `replication`); farm modules (`mode: farm`) have
`<farm>`, their VIPs in `<virtual_interface type=...>` and a `<loadbalancing_list>`. Any VIP may name
a cloud provider and its `<option>`s. `param_problems(params)` says what a mode cannot hold.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

# The module's former name stays in the files it writes (ADR 0057): a new header would rewrite the
# userconfig.xml of every deployed module on the first run after an upgrade of the collection
# (changed, and restart_required on each running module) for a comment.
HEADER = (
    "<!DOCTYPE safe>\n<!-- Managed by Ansible (safekit.ha.module): changes made here are overwritten. -->\n"
)
CLUSTER_HEADER = "<!-- Managed by Ansible (safekit.ha.cluster): changes made here are overwritten. -->\n"

# (parameter, XML attribute, kind) in the order attributes are written.
SERVICE_ATTRS = (
    ("mode", "mode", "str"),
    ("boot", "boot", "str"),
    ("defaultprim", "defaultprim", "str"),
    ("failover", "failover", "bool"),
    ("maxloop", "maxloop", "int"),
    ("loop_interval", "loop_interval", "str"),
)
HEARTBEAT_ATTRS = (("name", "name", "str"), ("pulse", "pulse", "str"), ("timeout", "timeout", "str"))
VIP_ATTRS = (("addr", "addr", "str"), ("netmask", "netmask", "str"), ("provider", "provider", "str"))
FARM_ATTRS = (
    ("pulse", "pulse", "str"),
    ("mlost_count", "mlost_count", "int"),
    ("slost_count", "slost_count", "int"),
    ("port", "port", "int"),
)
FARM_LAN_ATTRS = (("name", "name", "str"), ("power", "power", "int"))
HOST_ATTRS = (("name", "name", "str"), ("power", "power", "int"))
RULE_ATTRS = (
    ("virtual_addr", "virtual_addr", "str"),
    ("port", "port", "int"),
    ("proto", "proto", "str"),
    ("filter", "filter", "str"),
)
OPTION_ATTRS = (("n", "name", "str"), ("v", "value", "str"))
USER_ATTRS = (("nicestoptimeout", "nicestoptimeout", "str"), ("forcestoptimeout", "forcestoptimeout", "str"))
PROC_ATTRS = (
    ("name", "name", "str"),
    ("nameregex", "nameregex", "str"),
    ("argregex", "argregex", "str"),
    ("atleast", "atleast", "int"),
    ("atmax", "atmax", "int"),
    ("action", "action", "str"),
    ("class", "class", "str"),
)
CHECKER_ATTRS = (("ident", "ident", "str"), ("when", "when", "str"), ("action", "action", "str"))
CUSTOM_ATTRS = (*CHECKER_ATTRS, ("exec", "exec", "str"), ("arg", "arg", "str"))
TCP_TARGET_ATTRS = (
    ("addr", "addr", "str"),
    ("port", "port", "int"),
    ("interval", "interval", "str"),
    ("timeout", "timeout", "str"),
)
PING_TARGET_ATTRS = (("addr", "addr", "str"), ("interval", "interval", "str"), ("timeout", "timeout", "str"))
CHECKER_KINDS = ("tcp", "ping", "custom")
# `<rfs>` as the parameter `replication`: the attributes the engine uses (durations as written).
# SafeKit's others (locktimeout, packetsize, ...) are accepted by the engine and ignored: a file
# with them is raw XML here, as is <replicated mode> or <tocheck>.
RFS_ATTRS = (
    ("async", "async", "str"),
    ("sendtimeout", "sendtimeout", "str"),
    ("splitbrain_keep_free", "splitbrain_keep_free", "str"),
)
# `<replicated>`: `path` is SafeKit's `dir`.
REPLICATED_ATTRS = (("path", "dir", "str"),)
VIP_KEYS = ("addr", "netmask", "interface", "type", "provider", "options")
# The only farm VIP type the engine runs (docs/farm.md); written when a farm VIP gives none. A file
# without it means the engine's (SafeKit's) default, vmac_directed.
DEFAULT_FARM_VIP_TYPE = "vmac_invisible"
ENGINE_VIP_TYPE = "vmac_directed"
MIRROR_ONLY = ("heartbeats", "heart_port", "defaultprim", "replication")
FARM_ONLY = ("farm", "loadbalancing")
# Lists and mappings that mean nothing when empty; `user: {}` and `errd: {}` do mean something.
DROPPED_WHEN_EMPTY = (
    "vip",
    "vars",
    "procs",
    "tcp",
    "ping",
    "custom",
    "checkers",
    "options",
    "loadbalancing",
    "notreplicated",
    "notreplicated_regexpath",
)


# The engine's `%NAME%` reference (a macro or an environment variable); any other `%` is literal
# (src/safekit/config/macros.py), as in `splitbrain_keep_free="10%"`.
MACRO_REFERENCE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")


class NotStructured(ValueError):
    """The XML holds something the structured parameters cannot express."""


# ---------------------------------------------------------------------------------------- helpers
def canonical_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` as `parse_userconfig` gives them back: no None values, no empty lists, rules stripped,
    provider options as strings, and the defaults the XML always states (mode mirror, one heartbeat
    on LAN `default`; for a farm, `<farm>` on LAN `default` and VIPs of type vmac_invisible)."""
    out: dict[str, Any] = _canonical(params)
    out.setdefault("mode", "mirror")
    if out["mode"] == "farm":
        farm = out.setdefault("farm", {})
        if not farm.get("lans"):
            farm["lans"] = [{"name": "default"}]
        for vip in out.get("vip") or []:
            vip.setdefault("type", DEFAULT_FARM_VIP_TYPE)
    elif not out.get("heartbeats"):
        out["heartbeats"] = [{"name": "default"}]
    return out


def param_problems(params: dict[str, Any]) -> list[str]:
    """What the structured parameters ask for that their mode cannot hold (empty when all is well).

    The engine's validator judges the rest; these are the parameters the renderer would otherwise
    have to drop silently.
    """
    mode = params.get("mode") or "mirror"
    problems = []
    if mode == "farm":
        given = [key for key in MIRROR_ONLY if params.get(key) not in (None, [], {})]
        if given:
            problems.append(f"{', '.join(given)}: for mirror modules; a farm's membership is farm.lans")
    else:
        given = [key for key in FARM_ONLY if params.get(key) not in (None, [], {})]
        if given:
            problems.append(f"{', '.join(given)}: for farm modules (mode: farm)")
        if any(vip.get("type") for vip in params.get("vip") or []):
            problems.append("vip[].type: for farm modules (a mirror's VIP is on a real interface)")
    return problems


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, raw in value.items():
            item = _canonical(raw)
            if key == "failover_rules" and item is not None:
                item = item.strip() or None
            if key == "options" and isinstance(item, dict):
                item = {name: option_value(v) for name, v in item.items() if v is not None}
            if item is None or (key in DROPPED_WHEN_EMPTY and not item):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def option_value(value: Any) -> str:
    """A provider option as userconfig.xml writes it: lists comma-separated, booleans on/off
    (YAML reads `os_address: on` as true)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(option_value(item) for item in value)
    return str(value)


def _attr_value(value: Any, kind: str) -> str:
    if kind == "bool":
        return "on" if value else "off"
    return str(value)


SPLITBRAIN_ATTRS = (("ident", "ident", "str"), ("exec", "exec", "str"), ("arg", "arg", "str"))
"""`<splitbrain>`: exec is `ping` (SafeKit's, the default) or `arbitrator` (arg = HOST[:PORT] of
`safekit arbiter`, docs/arbiter.md)."""


def _attrs(values: dict[str, Any], spec: tuple[tuple[str, str, str], ...]) -> str:
    parts = []
    for param, attribute, kind in spec:
        value = values.get(param)
        if value is not None:
            text = escape(
                _attr_value(value, kind), {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
            )
            parts.append(f' {attribute}="{text}"')
    return "".join(parts)


def _cdata(text: str) -> str:
    return "<![CDATA[\n" + text.replace("]]>", "]]]]><![CDATA[>") + "\n]]>"


# --------------------------------------------------------------------------------------- rendering
def render_userconfig(params: dict[str, Any]) -> str:
    """The userconfig.xml text of a module described by the structured parameters."""
    p = canonical_params(params)
    lines = [HEADER + "<safe>", f"<service{_attrs(p, SERVICE_ATTRS)}>"]
    if p["mode"] == "farm":
        farm = p["farm"]
        lines.append(f"  <farm{_attrs(farm, FARM_ATTRS)}>")
        lines += [f"    <lan{_attrs(lan, FARM_LAN_ATTRS)}/>" for lan in farm["lans"]]
        lines.append("  </farm>")
    else:
        lines.append("  <heart{}>".format(_attrs(p, (("heart_port", "port", "int"),))))
        lines += [f"    <heartbeat{_attrs(hb, HEARTBEAT_ATTRS)}/>" for hb in p["heartbeats"]]
        lines.append("  </heart>")
    lines += _render_vip(p)
    lines += _render_rfs(p)
    if "user" in p:
        user = p["user"]
        variables = user.get("vars") or {}
        lines.append("  <user{}{}>".format(_attrs(user, USER_ATTRS), "" if variables else "/"))
        if variables:
            lines += [
                "    <var{}/>".format(_attrs({"n": k, "v": v}, (("n", "name", "str"), ("v", "value", "str"))))
                for k, v in variables.items()
            ]
            lines.append("  </user>")
    if "errd" in p:
        errd = p["errd"]
        procs = errd.get("procs") or []
        lines.append(
            "  <errd{}{}>".format(_attrs(errd, (("polltimer", "polltimer", "str"),)), "" if procs else "/")
        )
        if procs:
            lines += [f"    <proc{_attrs(proc, PROC_ATTRS)}/>" for proc in procs]
            lines.append("  </errd>")
    lines += _render_check(p)
    if p.get("failover_rules"):
        lines.append("  <failover>{}</failover>".format(_cdata(p["failover_rules"])))
    lines += ["</service>", "</safe>", ""]
    return "\n".join(lines)


def _render_vip(p: dict[str, Any]) -> list[str]:
    if not p.get("vip") and not p.get("loadbalancing"):
        return []
    lines = ["  <vip>"]
    if p.get("vip"):
        lines.append("    <interface_list>")
        for vip in p["vip"]:
            holder = "real_interface" if p["mode"] != "farm" else "virtual_interface"
            options = vip.get("options") or {}
            address = f"<virtual_addr{_attrs(vip, VIP_ATTRS)}"
            lines += [
                "      <interface{}>".format(_attrs(vip, (("interface", "name", "str"),))),
                "        <{}{}>".format(holder, _attrs(vip, (("type", "type", "str"),))),
            ]
            if options:
                lines.append(f"          {address}>")
                lines += [
                    "            <option{}/>".format(_attrs({"n": k, "v": v}, OPTION_ATTRS))
                    for k, v in options.items()
                ]
                lines.append("          </virtual_addr>")
            else:
                lines.append(f"          {address}/>")
            lines += [f"        </{holder}>", "      </interface>"]
        lines.append("    </interface_list>")
    if p.get("loadbalancing"):
        lines.append("    <loadbalancing_list>")
        for group in p["loadbalancing"]:
            lines += [
                "      <group{}>".format(_attrs(group, (("name", "name", "str"),))),
                "        <cluster>",
                *[f"          <host{_attrs(host, HOST_ATTRS)}/>" for host in group.get("hosts") or []],
                "        </cluster>",
                *[f"        <rule{_attrs(rule, RULE_ATTRS)}/>" for rule in group.get("rules") or []],
                "      </group>",
            ]
        lines.append("    </loadbalancing_list>")
    lines.append("  </vip>")
    return lines


def _render_rfs(p: dict[str, Any]) -> list[str]:
    replication = p.get("replication")
    if replication is None:
        return []
    lines = [f"  <rfs{_attrs(replication, RFS_ATTRS)}>"]
    for directory in replication.get("dirs") or []:
        inside = [
            *[
                f"      <notreplicated{_attrs({'p': path}, (('p', 'path', 'str'),))}/>"
                for path in directory.get("notreplicated") or []
            ],
            *[
                f"      <notreplicated{_attrs({'r': regex}, (('r', 'regexpath', 'str'),))}/>"
                for regex in directory.get("notreplicated_regexpath") or []
            ],
        ]
        opening = f"    <replicated{_attrs(directory, REPLICATED_ATTRS)}"
        lines += [f"{opening}>", *inside, "    </replicated>"] if inside else [f"{opening}/>"]
    lines.append("  </rfs>")
    return lines


def _render_check(p: dict[str, Any]) -> list[str]:
    checkers = p.get("checkers") or {}
    splitbrain = p.get("splitbrain")
    if not checkers and not splitbrain:
        return []
    lines = ["  <check>"]
    for kind in ("tcp", "ping"):
        target_attrs = TCP_TARGET_ATTRS if kind == "tcp" else PING_TARGET_ATTRS
        for checker in checkers.get(kind) or []:
            lines += [
                f"    <{kind}{_attrs(checker, CHECKER_ATTRS)}>",
                f"      <to{_attrs(checker, target_attrs)}/>",
                f"    </{kind}>",
            ]
    lines += [f"    <custom{_attrs(c, CUSTOM_ATTRS)}/>" for c in checkers.get("custom") or []]
    if splitbrain:
        values = {
            "ident": splitbrain.get("ident"),
            "exec": splitbrain.get("exec"),
            "arg": " ".join(splitbrain["witnesses"]),
        }
        lines.append(f"    <splitbrain{_attrs(values, SPLITBRAIN_ATTRS)}/>")
    lines.append("  </check>")
    return lines


def render_cluster(lans: list[dict[str, Any]], port: int | None = None) -> str:
    """The cluster.xml text for `lans` ([{name, nodes: [{name, addr}], command}])."""
    lines = [
        CLUSTER_HEADER + "<cluster>",
        "  <lans{}>".format(_attrs({"port": port}, (("port", "port", "int"),))),
    ]
    for lan in lans:
        lines.append(
            "    <lan{}>".format(_attrs(lan, (("name", "name", "str"), ("command", "command", "bool"))))
        )
        lines += [
            "      <node{}/>".format(_attrs(node, (("name", "name", "str"), ("addr", "addr", "str"))))
            for node in lan["nodes"]
        ]
        lines.append("    </lan>")
    lines += ["  </lans>", "</cluster>", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- parsing
def parse_userconfig(xml_text: str) -> dict[str, Any]:
    """The structured parameters of a userconfig.xml; raises NotStructured when they cannot say it all."""
    try:
        # The module's own file, read with expat: no external entities; the engine refuses any DTD.
        root = ET.fromstring(xml_text)  # noqa: S314
    except ET.ParseError as exc:
        raise NotStructured(f"not well-formed XML: {exc}") from exc
    _expect(root, "safe", (), ("service",))
    service = _only(root, "service")
    p: dict[str, Any] = _read(
        service, SERVICE_ATTRS, ("heart", "farm", "vip", "rfs", "user", "errd", "check", "failover")
    )
    p.update(_parse_membership(service, farm=p.get("mode") == "farm"))
    vip = _optional(service, "vip")
    if vip is not None:
        addresses, groups = _parse_vip(vip, farm=p.get("mode") == "farm")
        if addresses:
            p["vip"] = addresses
        if groups:
            p["loadbalancing"] = groups
    rfs = _optional(service, "rfs")
    if rfs is not None:
        p["replication"] = _parse_rfs(rfs)
    user = _optional(service, "user")
    if user is not None:
        p["user"] = _parse_user(user)
    errd = _optional(service, "errd")
    if errd is not None:
        p["errd"] = _read(errd, (("polltimer", "polltimer", "str"),), ("proc",))
        if len(errd):
            p["errd"]["procs"] = [_read(proc, PROC_ATTRS, ()) for proc in errd]
    check = _optional(service, "check")
    if check is not None:
        p.update(_parse_check(check))
    failover = _optional(service, "failover")
    if failover is not None:
        _expect(failover, "failover", (), ())
        rules = (failover.text or "").strip()
        if rules:
            p["failover_rules"] = rules
    return p


def _parse_user(user: ET.Element) -> dict[str, Any]:
    values = _read(user, USER_ATTRS, ("var",))
    variables = {}
    for var in user:
        found = _read(var, (("n", "name", "str"), ("v", "value", "str")), ())
        variables[found["n"]] = found.get("v", "")
    if variables:
        values["vars"] = variables
    return values


def _parse_membership(service: ET.Element, farm: bool) -> dict[str, Any]:
    """A farm's `<farm>` or a mirror's `<heart>`, as parameters."""
    p: dict[str, Any] = {}
    if farm:
        element = _only(service, "farm")
        p["farm"] = _read(element, FARM_ATTRS, ("lan",))
        p["farm"]["lans"] = [_read(lan, FARM_LAN_ATTRS, ()) for lan in element]
        if _optional(service, "heart") is not None:
            raise NotStructured("<heart> in a farm module")
        return p
    heart = _only(service, "heart")
    p.update(_read(heart, (("heart_port", "port", "int"),), ("heartbeat",)))
    p["heartbeats"] = [_read(hb, HEARTBEAT_ATTRS, ()) for hb in heart]
    if _optional(service, "farm") is not None:
        raise NotStructured("<farm> in a mirror module")
    return p


def _parse_vip(vip: ET.Element, farm: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    _expect(vip, "vip", (), ("interface_list", "loadbalancing_list"))
    holder_tag = "virtual_interface" if farm else "real_interface"
    addresses = []
    groups: list[dict[str, Any]] = []
    for section in vip:
        if section.tag == "loadbalancing_list":
            _expect(section, "loadbalancing_list", (), ("group",))
            groups += [_parse_group(group) for group in section]
            continue
        _expect(section, "interface_list", (), ("interface",))
        for interface in section:
            values = _read(interface, (("interface", "name", "str"),), (holder_tag,))
            holder = _only(interface, holder_tag)
            if farm:
                values.update(_read(holder, (("type", "type", "str"),), ("virtual_addr",)))
                values.setdefault("type", ENGINE_VIP_TYPE)
            else:
                _expect(holder, holder_tag, (), ("virtual_addr",))
            if len(holder) != 1:
                raise NotStructured(f"<interface> with {len(holder)} addresses: one each here")
            values.update(_read(holder[0], VIP_ATTRS, ("option",)))
            options = {}
            for option in holder[0]:
                found = _read(option, OPTION_ATTRS, ())
                if "n" not in found or found["n"] in options:
                    raise NotStructured("<option> without a name, or twice the same name")
                options[found["n"]] = found.get("v", "")
            if options:
                values["options"] = options
            addresses.append({key: values[key] for key in VIP_KEYS if key in values})
    return addresses, groups


def _parse_rfs(rfs: ET.Element) -> dict[str, Any]:
    """`<rfs>` as the parameter `replication`: its attributes, and `dirs` in the file's order, each
    with its excluded paths and its excluded regular expressions, each list in the file's order."""
    replication = _read(rfs, RFS_ATTRS, ("replicated",))
    dirs = []
    for element in rfs:
        directory = _read(element, REPLICATED_ATTRS, ("notreplicated",))
        for child in element:
            found = _read(child, (("p", "path", "str"), ("r", "regexpath", "str")), ())
            if len(found) != 1:
                raise NotStructured("<notreplicated> needs exactly one of path and regexpath")
            key = "notreplicated" if "p" in found else "notreplicated_regexpath"
            directory.setdefault(key, []).append(found.get("p", found.get("r")))
        dirs.append(directory)
    replication["dirs"] = dirs
    return replication


def _parse_group(group: ET.Element) -> dict[str, Any]:
    values = _read(group, (("name", "name", "str"),), ("cluster", "rule"))
    cluster = _only(group, "cluster")
    values["hosts"] = [_read(host, HOST_ATTRS, ()) for host in _read_children(cluster, "cluster", "host")]
    rules = []
    for element in group.findall("rule"):
        rule = element
        if rule.get("port", "").strip() == "*":
            # "*" and no port both mean every port; the parameters write no port.
            rule = ET.Element("rule", {k: v for k, v in rule.attrib.items() if k != "port"})
        rules.append(_read(rule, RULE_ATTRS, ()))
    values["rules"] = rules
    return values


def _read_children(element: ET.Element, tag: str, child: str) -> list[ET.Element]:
    _expect(element, tag, (), (child,))
    return list(element)


def _parse_check(check: ET.Element) -> dict[str, Any]:
    _expect(check, "check", (), (*CHECKER_KINDS, "splitbrain"))
    checkers: dict[str, list[dict[str, Any]]] = {}
    out: dict[str, Any] = {}
    for element in check:
        if element.tag == "custom":
            checkers.setdefault("custom", []).append(_read(element, CUSTOM_ATTRS, ()))
        elif element.tag == "splitbrain":
            values = _read(element, SPLITBRAIN_ATTRS, ())
            out["splitbrain"] = {"witnesses": values.get("arg", "").split()}
            for key in ("ident", "exec"):
                if key in values:
                    out["splitbrain"][key] = values[key]
        else:
            values = _read(element, CHECKER_ATTRS, ("to",))
            if len(element) != 1:
                raise NotStructured(f"<{element.tag}> with {len(element)} <to>: one each here")
            values.update(
                _read(element[0], TCP_TARGET_ATTRS if element.tag == "tcp" else PING_TARGET_ATTRS, ())
            )
            checkers.setdefault(element.tag, []).append(values)
    if checkers:
        out["checkers"] = checkers
    return out


def _expect(element: ET.Element, tag: str, attributes: tuple[str, ...], children: tuple[str, ...]) -> None:
    if element.tag != tag:
        raise NotStructured(f"<{element.tag}> where <{tag}> was expected")
    for name in element.attrib:
        if name not in attributes:
            raise NotStructured(f"<{tag} {name}=...> has no structured parameter")
    seen = set()
    for child in element:
        if child.tag not in children:
            raise NotStructured(f"<{tag}><{child.tag}> has no structured parameter")
        repeatable = (
            *("heartbeat", "interface", "var", "proc", "lan", "group", "host", "rule", "option"),
            *("replicated", "notreplicated"),
        )
        if child.tag in seen and child.tag not in (*repeatable, *CHECKER_KINDS):
            raise NotStructured(f"<{child.tag}> appears twice in <{tag}>")
        seen.add(child.tag)
    if not len(element) and (element.text or "").strip() and tag != "failover":
        raise NotStructured(f"<{tag}> holds text")


def _read(
    element: ET.Element, spec: tuple[tuple[str, str, str], ...], children: tuple[str, ...]
) -> dict[str, Any]:
    _expect(element, element.tag, tuple(attribute for dummy, attribute, dummy_kind in spec), children)
    values: dict[str, Any] = {}
    for param, attribute, kind in spec:
        text = element.get(attribute)
        if text is None:
            continue
        if MACRO_REFERENCE.search(text):
            raise NotStructured(f"<{element.tag} {attribute}={text!r}> uses a macro or variable")
        values[param] = _typed(text, kind, element.tag, attribute)
    return values


def _typed(text: str, kind: str, tag: str, attribute: str) -> Any:
    if kind == "bool":
        if text not in ("on", "off"):
            raise NotStructured(f"<{tag} {attribute}={text!r}>: written on/off here")
        return text == "on"
    if kind == "int":
        try:
            number = int(text)
        except ValueError as exc:
            raise NotStructured(f"<{tag} {attribute}={text!r}> is not a number") from exc
        if str(number) != text:
            raise NotStructured(f"<{tag} {attribute}={text!r}> is not written as the number {number}")
        return number
    return text


def _only(element: ET.Element, tag: str) -> ET.Element:
    found = _optional(element, tag)
    if found is None:
        raise NotStructured(f"<{element.tag}> has no <{tag}>")
    return found


def _optional(element: ET.Element, tag: str) -> ET.Element | None:
    return element.find(tag)
