"""The console's configuration forms: pydantic models of cluster.xml and of a new module, rendered
to XML by this code on the server and checked by the parser safekitd uses (ADR 0035).

A form is rendered one element a line; each line remembers the form field it came from, so that an
error of the parser (file:line, "attribute 'addr': ...") comes back as an error of that field, the
one the console marks. Errors of the form's shape (pydantic: a port that is not a number, a missing
name) are field errors too. The cluster key is not part of any form: it is its own file, and this
module never reads it.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.sax.saxutils import escape

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from safekit import module_templates, templates
from safekit.config import ClusterConfig, ConfigError
from safekit.config.cluster_parser import parse_cluster
from safekit.config.module_parser import parse_module
from safekit.config.validation import validate_module_against_cluster
from safekit.module_templates import USERCONFIG, PackageFile, Template, TemplateError

Script = Literal[
    "prestart",
    "start_prim",
    "stop_prim",
    "start_second",
    "stop_second",
    "start_both",
    "stop_both",
    "poststop",
]
"""The scripts a module from scratch may have (docs/modules.md); each is optional. A farm runs
start_both/stop_both, a mirror start_prim/stop_prim and start_second/stop_second."""
_ATTRIBUTE = re.compile(r"attribute '([A-Za-z_]+)'")
_FIRST_WORD = re.compile(r"([a-z_]+) ")
_MACRO_USE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
_SHORT = 255


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---------------------------------------------------------------------- cluster.xml


class NodeForm(_Form):
    name: str = Field(max_length=64, description="the node's name")
    addr: str = Field(max_length=64, description="its IPv4 address on this network")


class LanForm(_Form):
    name: str = Field(max_length=64, description="the network's name, referred to by modules")
    command: bool = Field(default=True, description="carries commands between nodes (safekit -H)")
    nodes: list[NodeForm] = Field(max_length=64)


class ClusterForm(_Form):
    """cluster.xml: the heartbeat networks, and every node's address on each. No key."""

    port: int | None = Field(default=None, description="base port of the traffic between nodes (empty: 4800)")
    lans: list[LanForm] = Field(max_length=16)


def cluster_form_of(config: ClusterConfig) -> ClusterForm:
    """The form of a parsed cluster.xml (its comments and ignored SafeKit attributes are not kept)."""
    return ClusterForm(
        port=config.port,
        lans=[
            LanForm(
                name=lan.name,
                command=lan.command,
                nodes=[NodeForm(name=n.name, addr=n.addr) for n in lan.nodes],
            )
            for lan in config.lans
        ],
    )


# ---------------------------------------------------------------------- a module


class VipForm(_Form):
    kind: Literal["none", "arp", "cloud"] = Field(
        default="none", description="none, an address moved by ARP, or a cloud"
    )
    addr: str = Field(default="", max_length=64, description="the virtual IPv4 address")
    provider: str = Field(
        default="", max_length=32, description="the cloud provider (aws_route, azure_lb, ...)"
    )
    options: dict[str, str] = Field(default_factory=dict, description="the provider's options (name: value)")
    type: Literal["vmac_invisible", "vmac_directed"] = Field(
        default="vmac_invisible",
        description="farm: how every node holds the address (vmac_invisible, or vmac_directed)",
    )


class ReplicatedForm(_Form):
    dir: str = Field(max_length=1024, description="an absolute directory replicated to the secondary")
    exclude: list[str] = Field(
        default_factory=list, max_length=64, description="paths below it not replicated"
    )


class CheckerForm(_Form):
    kind: Literal["tcp", "ping", "custom"]
    ident: str = Field(max_length=64)
    addr: str = Field(default="", max_length=255, description="tcp, ping: the address checked")
    port: int | None = Field(default=None, description="tcp: the port")
    exec: str = Field(default="", max_length=_SHORT, description="custom: the program (in the module's bin/)")
    arg: str = Field(default="", max_length=_SHORT, description="custom: its arguments")
    interval: str = Field(default="", max_length=16, description="e.g. 10s (empty: the default)")
    timeout: str = Field(default="", max_length=16, description="e.g. 5s (empty: the default)")
    when: Literal["", "prim", "both", "pre"] = ""
    action: Literal["", "wait", "restart", "stopstart", "stop"] = ""


class WitnessForm(_Form):
    kind: Literal["none", "ping", "arbitrator"] = "none"
    arg: str = Field(
        default="",
        max_length=_SHORT,
        description="ping: addresses (space separated); arbitrator: HOST[:PORT]",
    )


class HostForm(_Form):
    name: str = Field(max_length=64, description="a node of the farm")
    power: int = Field(default=1, description="its share of the clients (weight)")


class RuleForm(_Form):
    virtual_addr: str = Field(default="*", max_length=64, description="the virtual IP (*: every one)")
    port: int | None = Field(default=None, description="the port balanced (empty: every port)")
    proto: Literal["tcp", "udp"] = "tcp"
    filter: Literal["on_addr", "on_port", "on_ipid"] = Field(
        default="on_addr", description="what chooses the node: the client's address, its port, ..."
    )


class GroupForm(_Form):
    """A farm's balancing group: its nodes (none: every node of the farm) and its rules."""

    name: str = Field(max_length=64)
    hosts: list[HostForm] = Field(default_factory=list, max_length=64)
    rules: list[RuleForm] = Field(default_factory=lambda: [RuleForm()], max_length=16)


class ModuleForm(_Form):
    """A module from scratch: a mirror (the default) or a farm."""

    mode: Literal["mirror", "farm"] = Field(
        default="mirror", description="mirror (primary and secondary) or farm (every node serves)"
    )
    heartbeats: list[str] = Field(
        default_factory=lambda: ["default"],
        max_length=4,
        description="LANs of cluster.xml (a farm's membership networks)",
    )
    heartbeat_port: int | None = Field(
        None, description="UDP port of the module's heartbeats (empty: the cluster's)"
    )
    defaultprim: str = Field(default="alone", max_length=64)
    failover: bool = True
    vip: VipForm = VipForm()
    replicated: list[ReplicatedForm] = Field(default_factory=list, max_length=16)
    checkers: list[CheckerForm] = Field(default_factory=list, max_length=16)
    witness: WitnessForm = WitnessForm()
    failover_rules: str = Field(
        default="", max_length=16384, description="rules 'label: if (...) then action();'"
    )
    scripts: dict[Script, str] = Field(
        default_factory=dict, description="script name: its text (a shell script without #! gets #!/bin/sh)"
    )
    groups: list[GroupForm] = Field(
        default_factory=list,
        max_length=8,
        description="farm: the balancing groups (none: every node, by address)",
    )


class ModuleRequest(_Form):
    """A new module: a template of the library and its values, or a form from scratch."""

    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
    template: str | None = Field(default=None, max_length=64)
    values: dict[str, str] = Field(default_factory=dict)
    form: ModuleForm | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModuleRequest:
        if (self.template is None) == (self.form is None):
            raise ValueError("give either template (with its values) or form")
        return self


# ---------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class FieldError:
    field: str
    """The form field, dotted (`lans.0.nodes.1.addr`); empty when it is the whole form."""
    message: str
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "line": self.line}


@dataclass
class Rendered:
    xml: str
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldError] = field(default_factory=list)
    files: dict[str, PackageFile] = field(default_factory=dict)
    """The module's package (conf/userconfig.xml and its scripts); empty for cluster.xml."""

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "xml": self.xml,
            "errors": [e.as_dict() for e in self.errors],
            "warnings": [w.as_dict() for w in self.warnings],
            "files": sorted(self.files),
        }


class _Doc:
    """XML written one element a line, each line knowing its form field and attributes' fields."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.fields: dict[int, tuple[str, dict[str, str]]] = {}

    def line(self, text: str, where: str = "", attrs: Mapping[str, str] | None = None) -> None:
        self.lines.append(text)
        self.fields[len(self.lines)] = (where, dict(attrs or {}))

    def element(
        self,
        depth: int,
        tag: str,
        attributes: Sequence[tuple[str, object, str | None]] = (),
        where: str = "",
        close: bool = True,
    ) -> None:
        """`<tag a="v".../>` (or `<tag ...>` when not `close`); an attribute of value None or ""
        is left out; its third item names its form field (relative to `where`)."""
        parts = [tag]
        fields = {}
        for name, value, sub in attributes:
            if value is None or value == "":
                continue
            text = ("on" if value else "off") if isinstance(value, bool) else str(value)
            parts.append(f"{name}={_attr(text)}")
            if sub is not None:
                fields[name] = f"{where}.{sub}" if where else sub
        self.line("  " * depth + "<" + " ".join(parts) + ("/>" if close else ">"), where, fields)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def field_of(self, line: int, message: str) -> str:
        where, attrs = self.fields.get(line, ("", {}))
        found = _ATTRIBUTE.search(message) or _FIRST_WORD.match(message)
        if found and found.group(1) in attrs:
            return attrs[found.group(1)]
        return where


def _attr(value: str) -> str:
    return '"' + escape(value, {'"': "&quot;", "\n": "&#10;", "\t": "&#9;"}) + '"'


def _shape_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    errors = []
    for problem in exc.errors():
        path = ".".join(str(p) for p in problem["loc"])
        errors.append(FieldError(f"{prefix}{path}" if path else prefix.rstrip("."), problem["msg"]))
    return errors


def _parser_errors(exc: ConfigError, doc: _Doc) -> list[FieldError]:
    return [FieldError(doc.field_of(e.line, e.message), e.message, e.line) for e in exc.errors]


def render_cluster(data: Mapping[str, Any] | ClusterForm) -> Rendered:
    """cluster.xml of the form, and every problem as a field error (the parser's included)."""
    try:
        form = data if isinstance(data, ClusterForm) else ClusterForm.model_validate(data)
    except ValidationError as exc:
        return Rendered("", _shape_errors(exc))
    doc = _Doc()
    doc.line("<cluster>")
    doc.element(1, "lans", [("port", form.port, "port")], close=False)
    for i, lan in enumerate(form.lans):
        where = f"lans.{i}"
        command = None if lan.command else False
        doc.element(
            2, "lan", [("name", lan.name, "name"), ("command", command, "command")], where, close=False
        )
        for j, node in enumerate(lan.nodes):
            doc.element(
                3, "node", [("name", node.name, "name"), ("addr", node.addr, "addr")], f"{where}.nodes.{j}"
            )
        doc.line("    </lan>", where)
    doc.line("  </lans>")
    doc.line("</cluster>")
    xml = doc.text()
    result = Rendered(xml)
    try:
        parsed = parse_cluster(xml)
    except ConfigError as exc:
        result.errors = _parser_errors(exc, doc)
    else:
        result.warnings = [
            FieldError(doc.field_of(w.line, w.message), w.message, w.line) for w in parsed.warnings
        ]
    return result


def render_module(data: Mapping[str, Any] | ModuleRequest, cluster: ClusterConfig | None = None) -> Rendered:
    """A new module's userconfig.xml (and package) from a template or from scratch, checked by
    the parser, and against `cluster` when given (its LANs and nodes)."""
    try:
        request = data if isinstance(data, ModuleRequest) else ModuleRequest.model_validate(data)
    except ValidationError as exc:
        return Rendered("", _shape_errors(exc))
    if request.template is not None:
        result, locate = _from_template(request)
    else:
        assert request.form is not None
        result, locate = _from_form(request.name, request.form)
    if result.errors:
        return result
    filename = f"{request.name}:{USERCONFIG}"
    try:
        parsed = parse_module(result.xml, filename, env={})
    except ConfigError as exc:
        result.errors = [FieldError(locate(e.line, e.message), e.message, e.line) for e in exc.errors]
        return result
    result.warnings = [FieldError(locate(w.line, w.message), w.message, w.line) for w in parsed.warnings]
    if cluster is not None:
        problems = validate_module_against_cluster(parsed.config, cluster)
        result.errors = [FieldError(locate(e.line, e.message), e.message, e.line) for e in problems]
    return result


# ---------------------------------------------------------------------- from a template


def _from_template(request: ModuleRequest) -> tuple[Rendered, Any]:
    assert request.template is not None
    try:
        template = templates.get(request.template)
    except TemplateError as exc:
        return Rendered("", [FieldError("template", str(exc))]), None
    errors = _template_value_errors(template, request.values)
    if errors:
        return Rendered("", errors), None
    try:
        package = module_templates.render(template, request.name, request.values)
    except TemplateError as exc:  # rules between values
        return Rendered("", [_template_error(template, str(exc))]), None
    xml = package[USERCONFIG].content.decode()
    macro_keys = {v.macro: v.key for v in template.values if v.macro}
    lines = xml.splitlines()

    def locate(line: int, message: str) -> str:
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        for macro in _MACRO_USE.findall(text) + re.findall(r'<macro\s+name="([A-Za-z_][A-Za-z0-9_]*)"', text):
            if macro in macro_keys:
                return f"values.{macro_keys[macro]}"
        return ""

    return Rendered(xml, files=dict(package)), locate


def _template_value_errors(template: Template, given: Mapping[str, str]) -> list[FieldError]:
    errors = []
    for key in sorted(set(given) - {v.key for v in template.values}):
        errors.append(FieldError(f"values.{key}", f"template {template.name} has no value {key!r}"))
    for spec in template.values:
        raw = given.get(spec.key)
        try:
            value = module_templates.check_value(spec, raw) if raw is not None else spec.default
        except TemplateError as exc:
            errors.append(FieldError(f"values.{spec.key}", str(exc)))
            continue
        if spec.required and not value:
            errors.append(FieldError(f"values.{spec.key}", f"required: {spec.description}"))
    return errors


def _template_error(template: Template, message: str) -> FieldError:
    keys = [v.key for v in template.values if re.search(rf"\b{re.escape(v.key)}\b", message)]
    return FieldError(f"values.{keys[0]}" if keys else "values", message)


# ---------------------------------------------------------------------- from scratch


def _farm_misfits(form: ModuleForm) -> list[FieldError]:
    """What a farm from scratch cannot have (a mirror's fields), each on its field."""
    errors = []
    if form.replicated:
        errors.append(
            FieldError("replicated", "a farm replicates nothing: every node serves with its own data")
        )
    if form.witness.kind != "none":
        errors.append(FieldError("witness.kind", "a farm has no primary to protect: no split-brain witness"))
    for script in ("start_prim", "stop_prim", "start_second", "stop_second"):
        if script in form.scripts:
            errors.append(FieldError(f"scripts.{script}", f"a farm runs start_both/stop_both, not {script}"))
    return errors


def _farm_vip(doc: _Doc, form: ModuleForm) -> None:
    """A farm's virtual IP, held by every serving node, and its balancing groups."""
    doc.line("  <vip>", "vip")
    doc.line("    <interface_list>", "vip")
    doc.line('      <interface check="on">', "vip")
    doc.element(4, "virtual_interface", [("type", form.vip.type, "type")], "vip", close=False)
    doc.element(5, "virtual_addr", [("addr", form.vip.addr, "addr"), ("where", "alias", None)], "vip")
    doc.line("        </virtual_interface>", "vip")
    doc.line("      </interface>", "vip")
    doc.line("    </interface_list>", "vip")
    if form.groups:
        doc.line("    <loadbalancing_list>", "groups")
        for i, group in enumerate(form.groups):
            where = f"groups.{i}"
            doc.element(3, "group", [("name", group.name, "name")], where, close=False)
            if group.hosts:
                doc.line("        <cluster>", where)
                for j, host in enumerate(group.hosts):
                    attrs = [("name", host.name, "name"), ("power", host.power, "power")]
                    doc.element(5, "host", attrs, f"{where}.hosts.{j}")
                    # the cluster check names the host, not the attribute: its name field
                    doc.fields[len(doc.lines)] = (f"{where}.hosts.{j}.name", doc.fields[len(doc.lines)][1])
                doc.line("        </cluster>", where)
            for j, rule in enumerate(group.rules):
                attrs = [
                    ("virtual_addr", rule.virtual_addr, "virtual_addr"),
                    ("port", rule.port, "port"),
                    ("proto", rule.proto, "proto"),
                    ("filter", rule.filter, "filter"),
                ]
                doc.element(4, "rule", attrs, f"{where}.rules.{j}")
            doc.line("      </group>", where)
        doc.line("    </loadbalancing_list>", "groups")
    doc.line("  </vip>", "vip")


def _from_form(name: str, form: ModuleForm) -> tuple[Rendered, Any]:  # noqa: PLR0912, PLR0915
    farm = form.mode == "farm"
    if farm and (misfits := _farm_misfits(form)):
        return Rendered("", misfits), None
    doc = _Doc()
    doc.line("<!DOCTYPE safe>")
    doc.line(f"<!-- module {name}: made with the console's guided form -->")
    doc.line("<safe>")
    doc.element(
        0,
        "service",
        [
            ("mode", form.mode, "mode"),
            ("defaultprim", None if farm else form.defaultprim, "defaultprim"),
            ("failover", None if farm else form.failover, "failover"),
        ],
        close=False,
    )
    outer, inner = ("farm", "lan") if farm else ("heart", "heartbeat")
    doc.element(1, outer, [("port", form.heartbeat_port, "heartbeat_port")], close=False)
    for i, lan in enumerate(form.heartbeats):
        doc.element(2, inner, [("name", lan, "")], f"heartbeats.{i}")
        doc.fields[len(doc.lines)] = (f"heartbeats.{i}", {"name": f"heartbeats.{i}"})
    doc.line(f"  </{outer}>")
    if farm and form.vip.kind == "cloud":
        return Rendered(
            "",
            [
                FieldError(
                    "vip.kind",
                    "a farm from scratch holds its virtual IP on every node "
                    "(arp); a cloud farm comes from the cloud_lb_farm template",
                )
            ],
        ), None
    if farm and form.vip.kind != "none":
        _farm_vip(doc, form)
    elif farm and form.groups:
        return Rendered("", [FieldError("groups", "balancing groups need a virtual IP")]), None
    elif form.vip.kind != "none":
        doc.line("  <vip>", "vip")
        doc.line("    <interface_list>", "vip")
        doc.line('      <interface check="on">', "vip")
        doc.line("        <real_interface>", "vip")
        provider = form.vip.provider if form.vip.kind == "cloud" else None
        attrs = [
            ("addr", form.vip.addr, "addr"),
            ("where", "one_side_alias", None),
            ("provider", provider, "provider"),
        ]
        if form.vip.kind == "cloud" and form.vip.options:
            doc.element(5, "virtual_addr", attrs, "vip", close=False)
            for key, value in form.vip.options.items():
                doc.element(6, "option", [("name", key, None), ("value", value, None)], f"vip.options.{key}")
            doc.line("          </virtual_addr>", "vip")
        else:
            doc.element(5, "virtual_addr", attrs, "vip")
        doc.line("        </real_interface>", "vip")
        doc.line("      </interface>", "vip")
        doc.line("    </interface_list>", "vip")
        doc.line("  </vip>", "vip")
    if form.replicated:
        doc.line('  <rfs async="second">')
        for i, rep in enumerate(form.replicated):
            where = f"replicated.{i}"
            if not rep.exclude:
                doc.element(2, "replicated", [("dir", rep.dir, "dir")], where)
                continue
            doc.element(2, "replicated", [("dir", rep.dir, "dir")], where, close=False)
            for j, path in enumerate(rep.exclude):
                doc.element(3, "notreplicated", [("path", path, "")], f"{where}.exclude.{j}")
                doc.fields[len(doc.lines)] = (f"{where}.exclude.{j}", {"path": f"{where}.exclude.{j}"})
            doc.line("    </replicated>", where)
        doc.line("  </rfs>")
    if form.scripts:
        doc.line('  <user logging="userlog">', "scripts")
        doc.line("  </user>", "scripts")
    witness = form.witness.kind != "none"
    if form.checkers or witness:
        doc.line("  <check>")
        for i, checker in enumerate(form.checkers):
            _checker(doc, checker, f"checkers.{i}")
        if witness:
            attrs = [
                ("ident", "witness", None),
                ("exec", form.witness.kind, None),
                ("arg", form.witness.arg, "arg"),
            ]
            doc.element(2, "splitbrain", attrs, "witness")
        doc.line("  </check>")
    if form.failover_rules.strip():
        if "]]>" in form.failover_rules:
            return Rendered("", [FieldError("failover_rules", "the rules may not contain ']]>'")]), None
        doc.line("  <failover>", "failover_rules")
        doc.line("  <![CDATA[", "failover_rules")
        for text in form.failover_rules.strip("\n").splitlines():
            doc.line("    " + text.strip(), "failover_rules")
        doc.line("  ]]>", "failover_rules")
        doc.line("  </failover>", "failover_rules")
    doc.line("</service>")
    doc.line("</safe>")
    xml = doc.text()
    files = {USERCONFIG: PackageFile(xml.encode(), 0o644)}
    for script, text in sorted(form.scripts.items()):
        body = text.replace("\r\n", "\n")
        if not body.startswith("#!"):
            body = "#!/bin/sh\n" + body
        files[f"bin/{script}"] = PackageFile(body.rstrip("\n").encode() + b"\n", 0o755)
    return Rendered(xml, files=files), doc.field_of


def _checker(doc: _Doc, checker: CheckerForm, where: str) -> None:
    common = [("when", checker.when, "when"), ("action", checker.action, "action")]
    timing = [("interval", checker.interval, "interval"), ("timeout", checker.timeout, "timeout")]
    if checker.kind == "custom":
        attrs = [
            ("ident", checker.ident, "ident"),
            ("exec", checker.exec, "exec"),
            ("arg", checker.arg, "arg"),
            *common,
        ]
        doc.element(2, "custom", attrs, where)
        return
    doc.element(2, checker.kind, [("ident", checker.ident, "ident"), *common], where, close=False)
    port = [("port", checker.port, "port")] if checker.kind == "tcp" else []
    doc.element(3, "to", [("addr", checker.addr, "addr"), *port, *timing], where)
    doc.line(f"    </{checker.kind}>", where)


class ClusterApply(_Form):
    """`PUT /api/v1/cluster/config`."""

    form: ClusterForm
    nodes: Literal["all", "local"] = "all"
    dry_run: bool = False
    reload: bool = Field(
        default=True,
        description="then each safekitd takes it live where it can: on every node or none",
    )


class ClusterReload(_Form):
    """`POST /api/v1/cluster/reload`: each safekitd takes its cluster.xml live if it can."""

    nodes: Literal["all", "local"] = "all"
    dry_run: bool = False


class ModuleInstall(_Form):
    """`POST /api/v1/modules/AM/install`: a ModuleRequest without the name (it is in the path)."""

    template: str | None = Field(default=None, max_length=64)
    values: dict[str, str] = Field(default_factory=dict)
    form: ModuleForm | None = None
    nodes: Literal["all", "local"] = "all"
    dry_run: bool = False


# ---------------------------------------------------------------------- the worker process
# safekitd never imports this module (pydantic and the template library would stay in its memory
# for good): `form_worker.FormWorker` runs `python -m safekit.api.forms` as a child and asks it,
# one JSON line per request, as the certificates are made by a child process (certs.py).


SCHEMAS_HEAD = '''"""The JSON schemas of the console's form models (`forms.py`), for the OpenAPI
document: a copy, so that safekitd serves the document without importing pydantic. Made by
`python -m safekit.api.forms --schemas > src/safekit/api/form_schemas.py`; tests/unit/api/test_forms.py
checks it is up to date."""

import json
from typing import Any

SCHEMAS: dict[str, Any] = '''


def schemas() -> dict[str, Any]:
    """The JSON schemas of the forms, as OpenAPI components (`form_schemas.py` holds a copy)."""
    found: dict[str, Any] = {}
    for model in (ClusterForm, ModuleRequest, ClusterApply, ClusterReload, ModuleInstall):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return dict(sorted(found.items()))


def _package(files: Mapping[str, PackageFile]) -> list[dict[str, Any]]:
    return [
        {"path": path, "mode": item.mode, "content": base64.b64encode(item.content).decode()}
        for path, item in sorted(files.items())
    ]


def answer(request: Mapping[str, Any]) -> dict[str, Any]:
    """One request of the worker: `op` and its data."""
    op = request.get("op")
    data = request.get("data")
    if op == "render_cluster":
        return render_cluster(data if isinstance(data, Mapping) else {}).as_dict()
    if op == "render_module":
        cluster = None
        if isinstance(request.get("cluster_xml"), str):
            try:
                cluster = parse_cluster(request["cluster_xml"])
            except ConfigError:
                cluster = None  # the module is still checked on its own
        result = render_module(data if isinstance(data, Mapping) else {}, cluster)
        found = result.as_dict()
        if result.valid and request.get("package"):
            found["package"] = _package(result.files)
        return found
    if op == "cluster_form":
        try:
            return {"form": cluster_form_of(parse_cluster(str(data))).model_dump(), "errors": []}
        except ConfigError as exc:
            return {
                "form": None,
                "errors": [{"field": "", "message": e.message, "line": e.line} for e in exc.errors],
            }
    if op == "templates":
        return {"templates": [t.as_dict() for t in templates.library().values()]}
    return {"error": f"unknown request {op!r}"}


def main() -> None:
    for line in sys.stdin:
        try:
            found = answer(json.loads(line))
        except Exception as exc:  # the worker answers every line, whatever happens
            found = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(found) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--schemas"]:  # writes form_schemas.py
        print(
            f'{SCHEMAS_HEAD}json.loads(\n    r"""\n{json.dumps(schemas(), indent=1, sort_keys=True)}\n"""\n)'
        )
    else:
        main()
