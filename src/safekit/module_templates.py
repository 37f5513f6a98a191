"""Module templates: a ready-made module (`.safe` layout) plus the few values that differ per site.

A template is a module directory (`conf/userconfig.xml`, `bin/` scripts, `README.md`) and a
manifest, `template.yml`, naming its *site values*: the virtual IP, the witness, a data directory,
a port. Most are `<macro>`s of userconfig.xml (the SafeKit way: the scripts read them through
`<user><var value="%MACRO%"/>`); rendering sets those macros' values and keeps the file otherwise
as written. Two small line markers let a value add or drop a part of the file:

- `<!--@if KEY-->` ... [`<!--@else-->` ...] `<!--@endif-->` (each on its own line): the lines of the
  first part are kept when the value KEY is not empty, those of the second when it is (an optional
  split-brain witness, an optional checker, an attribute given or left to the engine);
  `<!--@if KEY1 KEY2-->`: when every one of them is not empty (a part inside an optional part);
- `<!--@hosts KEY-->`: replaced by one `<host name power/>` line per node of a `nodes` value
  (the farm's `<loadbalancing_list>`).

What the templates' scripts share is not repeated in each: the library (`_lib/` of the template
folder) holds `bin/safekit-template.sh`, the shell library every script sources from its own
directory, and files that some templates share (`bin/app.sh` of the generic mirror and farm,
`bin/httpcheck` of the web farms), which a manifest names under `shared:`. Rendering copies the
shell library and the shared files into the package's `bin/`, so a `.safe` stays self-contained.

This module is pure: manifests and files come in as text and bytes, a package (path -> content and
mode) goes out. Reading the library shipped in the package (`safekit.templates`) and writing a
`.safe` are done by the callers. Errors are `TemplateError`s a user can act on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

import yaml

MANIFEST: Final = "template.yml"
USERCONFIG: Final = "conf/userconfig.xml"
SHELL_LIBRARY: Final = "bin/safekit-template.sh"
"""The shell library of the templates' scripts, in every package rendered with a library."""
Kind = Literal[
    "ipv4", "witness", "port", "path", "cidr", "seconds", "name", "choice", "text", "password",
    "command", "url_path", "nodes",
]  # fmt: skip
KINDS: Final = get_args(Kind)
_KEY: Final = re.compile(r"[a-z][a-z0-9_]*")
_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_NODE: Final = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.-]*)(?::([0-9]+))?")
_IF: Final = re.compile(r"^\s*<!--@if ([a-z][a-z0-9_]*(?: [a-z][a-z0-9_]*)*)-->\s*$")
_ELSE: Final = re.compile(r"^\s*<!--@else-->\s*$")
_ENDIF: Final = re.compile(r"^\s*<!--@endif-->\s*$")
_HOSTS: Final = re.compile(r"^(\s*)<!--@hosts ([a-z][a-z0-9_]*)-->\s*$")
_MACRO_LINE: Final = re.compile(r'(<macro\s+name="([A-Za-z_][A-Za-z0-9_]*)"\s+value=")([^"]*)(")')
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
MAX_SECONDS: Final = 86_400


class TemplateError(ValueError):
    """A template, a site value or a request that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class SiteValue:
    """One value a site gives to a template: what it is, its default, and how it is checked."""

    key: str
    description: str
    kind: Kind = "text"
    default: str = ""
    required: bool = False
    macro: str | None = None
    """The `<macro>` of userconfig.xml it sets (None: used by markers only, e.g. `nodes`)."""
    choices: tuple[str, ...] = ()
    secret: bool = False
    """Not shown in listings (a password); it is still written in userconfig.xml."""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "description": self.description,
            "kind": self.kind,
            "default": self.default,
            "required": self.required,
        }
        if self.macro:
            data["macro"] = self.macro
        if self.choices:
            data["choices"] = list(self.choices)
        if self.secret:
            data["secret"] = True
        return data


@dataclass(frozen=True)
class Template:
    """A module template: its manifest and its files (relative path -> bytes)."""

    name: str
    mode: Literal["mirror", "farm"]
    summary: str
    values: tuple[SiteValue, ...]
    files: Mapping[str, bytes] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    """Debian packages the nodes need for the application."""
    shared: Mapping[str, bytes] = field(default_factory=dict)
    """Files of the library copied into the package at render time (relative path -> bytes): the
    shell library and the files the manifest names under `shared:`."""

    def value(self, key: str) -> SiteValue | None:
        return next((v for v in self.values if v.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "description": self.summary,
            "needs": list(self.needs),
            "values": [v.as_dict() for v in self.values],
        }


@dataclass(frozen=True)
class PackageFile:
    content: bytes
    mode: int


Package = Mapping[str, PackageFile]
"""A rendered module: relative path (`conf/userconfig.xml`, `bin/start_prim`, ...) -> file."""


# ---------------------------------------------------------------------- manifests


def parse_manifest(
    name: str, text: str, files: Mapping[str, bytes], library: Mapping[str, bytes] | None = None
) -> Template:
    """A template from its `template.yml` text and its files; checks that the two agree.

    `library`: the files the templates share (relative path -> bytes). The package gets its
    `SHELL_LIBRARY` and the files the manifest names under `shared:`.
    """
    where = f"template {name}: {MANIFEST}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{where}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: a mapping with description, mode and values is expected")
    unknown = set(data) - {"description", "mode", "values", "needs", "shared"}
    if unknown:
        raise TemplateError(f"{where}: unknown keys {sorted(unknown)}")
    mode = data.get("mode")
    if mode not in ("mirror", "farm"):
        raise TemplateError(f"{where}: mode must be mirror or farm, not {mode!r}")
    summary = data.get("description")
    if not isinstance(summary, str) or not summary.strip():
        raise TemplateError(f"{where}: a one-line description is needed")
    raw_values = data.get("values") or []
    if not isinstance(raw_values, list):
        raise TemplateError(f"{where}: values must be a list")
    values = tuple(_site_value(where, item) for item in raw_values)
    keys = [v.key for v in values]
    if len(set(keys)) != len(keys):
        raise TemplateError(f"{where}: a key is listed twice in {keys}")
    needs = data.get("needs") or []
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise TemplateError(f"{where}: needs must be a list of package names")
    if USERCONFIG not in files:
        raise TemplateError(f"template {name}: no {USERCONFIG}")
    shared = _shared_files(where, data.get("shared") or [], files, library or {})
    template = Template(name, mode, " ".join(summary.split()), values, dict(files), tuple(needs), shared)
    _check_template_files(template)
    return template


def _shared_files(
    where: str, names: object, files: Mapping[str, bytes], library: Mapping[str, bytes]
) -> dict[str, bytes]:
    """The library's files for this template: the shell library (when there is one) and `shared:`."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TemplateError(f"{where}: shared must be a list of paths of the library (e.g. bin/app.sh)")
    missing = [n for n in names if n not in library]
    if missing:
        raise TemplateError(
            f"{where}: shared: no {', '.join(missing)} in the library ({', '.join(sorted(library))})"
        )
    wanted = [SHELL_LIBRARY] if SHELL_LIBRARY in library else []
    wanted += [n for n in names if n not in wanted]
    clash = [n for n in wanted if n in files]
    if clash:
        raise TemplateError(f"{where}: {', '.join(clash)} is both the template's and the library's")
    return {n: library[n] for n in wanted}


def _site_value(where: str, item: object) -> SiteValue:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise TemplateError(f"{where}: each value is a mapping with a key, not {item!r}")
    key = item["key"]
    allowed = {"key", "description", "kind", "default", "required", "macro", "choices", "secret"}
    if set(item) - allowed:
        raise TemplateError(f"{where}: value {key}: unknown fields {sorted(set(item) - allowed)}")
    if not _KEY.fullmatch(key):
        raise TemplateError(f"{where}: value key {key!r}: use lower-case letters, digits, '_'")
    kind = item.get("kind", "text")
    if kind not in KINDS:
        raise TemplateError(f"{where}: value {key}: kind {kind!r} is not one of {', '.join(KINDS)}")
    default = item.get("default", "")
    default = "" if default is None else str(default)
    macro = item.get("macro", None if kind == "nodes" else key.upper())
    choices = tuple(str(c) for c in item.get("choices") or ())
    if kind == "choice" and not choices:
        raise TemplateError(f"{where}: value {key}: a choice needs choices")
    value = SiteValue(
        key=key,
        description=" ".join(str(item.get("description", "")).split()),
        kind=kind,
        default=default,
        required=bool(item.get("required", False)),
        macro=macro,
        choices=choices,
        secret=bool(item.get("secret", False)),
    )
    if not value.description:
        raise TemplateError(f"{where}: value {key}: a description is needed")
    if default:
        try:
            check_value(value, default)
        except TemplateError as exc:
            raise TemplateError(f"{where}: default of {exc}") from None
    return value


def _check_template_files(template: Template) -> None:
    """Every macro-backed value has its `<macro>` in userconfig.xml, with the manifest's default."""
    xml = template.files[USERCONFIG].decode()
    macros = {m.group(2): m.group(3) for m in _MACRO_LINE.finditer(xml)}
    for value in template.values:
        if value.macro is None:
            continue
        if value.macro not in macros:
            raise TemplateError(
                f'template {template.name}: value {value.key}: no <macro name="{value.macro}">'
            )
        if macros[value.macro] != _xml_attr(value.default):
            raise TemplateError(
                f"template {template.name}: value {value.key}: the manifest's default {value.default!r} "
                f"differs from the macro's value {macros[value.macro]!r}"
            )
    keys = {v.key for v in template.values}
    for pattern in (_IF, _HOSTS):
        for line in xml.splitlines():
            match = pattern.match(line)
            if match and not set(match.groups()[-1].split()) <= keys:
                raise TemplateError(f"template {template.name}: marker names no value: {line.strip()}")


# ---------------------------------------------------------------------- values


def check_value(spec: SiteValue, raw: str) -> str:
    """The value normalised, or TemplateError saying what is wrong with it and what is expected."""
    text = raw.strip()
    problem = f"{spec.key}: {raw!r}"
    if _CONTROL.search(raw):
        raise TemplateError(f"{problem}: control characters (a newline, a tab) are not allowed")
    if "%" in text:
        # userconfig.xml would read %NAME% as a macro or an environment variable.
        raise TemplateError(f"{problem}: '%' is not allowed (SafeKit reads %NAME% as a macro)")
    if text == "":
        return ""
    check = _CHECKS.get(spec.kind)
    return check(spec, text, problem) if check else text


def _ipv4(spec: SiteValue, text: str, problem: str) -> str:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise TemplateError(f"{problem}: not an IPv4 address (e.g. 192.168.1.100)") from None
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise TemplateError(f"{problem}: a unicast address of the nodes' network is needed")
    return str(address)


def _witness(spec: SiteValue, text: str, problem: str) -> str:
    parts = [p for p in re.split(r"[\s,]+", text) if p]
    out = []
    for part in parts:
        host, _, port = part.partition(":")
        _ipv4(spec, host, problem)
        if port:
            _port(spec, port, problem)
        out.append(part)
    return " ".join(out)


def _port(spec: SiteValue, text: str, problem: str) -> str:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise TemplateError(f"{problem}: not a port (1-65535)")
    return str(int(text))


def _path(spec: SiteValue, text: str, problem: str) -> str:
    if not text.startswith("/") or text == "/":
        raise TemplateError(f"{problem}: an absolute path below / is needed (e.g. /srv/data)")
    if re.search(r"[\s\"'\\$`]", text) or "/../" in f"{text}/" or "/./" in f"{text}/":
        raise TemplateError(f"{problem}: no spaces, quotes, '$', '\\', '.' or '..' parts")
    return text.rstrip("/") or "/"


def _cidr(spec: SiteValue, text: str, problem: str) -> str:
    if text in ("samenet", "samehost", "all"):
        return text
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError:
        raise TemplateError(f"{problem}: not an IPv4 network (e.g. 192.168.1.0/24)") from None


def _seconds(spec: SiteValue, text: str, problem: str) -> str:
    if not text.isdigit() or not 1 <= int(text) <= MAX_SECONDS:
        raise TemplateError(f"{problem}: a whole number of seconds, 1 to {MAX_SECONDS}")
    return str(int(text))


def _name(spec: SiteValue, text: str, problem: str) -> str:
    if not _NAME.fullmatch(text) or len(text) > 64:
        raise TemplateError(f"{problem}: letters, digits, '_', '.', '-' (not first), at most 64")
    return text


def _choice(spec: SiteValue, text: str, problem: str) -> str:
    if text not in spec.choices:
        raise TemplateError(f"{problem}: one of {', '.join(spec.choices)}")
    return text


def _password(spec: SiteValue, text: str, problem: str) -> str:
    if re.search(r"[\s'\"\\]", text):
        raise TemplateError(f"{spec.key}: no spaces, quotes or '\\' in a password")
    return text


def _url_path(spec: SiteValue, text: str, problem: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9_./-]*", text):
        raise TemplateError(f"{problem}: a URL path such as /health (letters, digits, '_', '.', '-', '/')")
    return text


def _nodes(spec: SiteValue, text: str, problem: str) -> str:
    nodes = parse_nodes(text, problem)
    return ",".join(f"{n}:{p}" if p != 1 else n for n, p in nodes)


def parse_nodes(text: str, problem: str = "nodes") -> list[tuple[str, int]]:
    """`node1,node2,node3:2` -> [(node1, 1), (node2, 1), (node3, 2)] (power after ':', default 1)."""
    nodes: list[tuple[str, int]] = []
    for part in (p for p in re.split(r"[\s,]+", text.strip()) if p):
        match = _NODE.fullmatch(part)
        if not match:
            raise TemplateError(f"{problem}: {part!r} is not NODE or NODE:POWER (e.g. node1,node2,node3:2)")
        name, power = match.group(1), int(match.group(2) or 1)
        if any(name == n for n, _ in nodes):
            raise TemplateError(f"{problem}: node {name} is listed twice")
        nodes.append((name, power))
    if len(nodes) < 2:
        raise TemplateError(f"{problem}: a farm has two nodes or more")
    return nodes


_CHECKS: Final = {
    "ipv4": _ipv4,
    "witness": _witness,
    "port": _port,
    "path": _path,
    "cidr": _cidr,
    "seconds": _seconds,
    "name": _name,
    "choice": _choice,
    "password": _password,
    "url_path": _url_path,
    "nodes": _nodes,
}


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (the CLI's `--set`) -> {key: value}; keys are case-insensitive."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise TemplateError(f"--set {item!r}: write KEY=VALUE (e.g. --set virtual_ip=192.168.1.100)")
        if key in values:
            raise TemplateError(f"--set {key}: given twice")
        values[key] = value
    return values


def resolve_values(template: Template, given: Mapping[str, str]) -> dict[str, str]:
    """Every site value of the template: the given ones checked and normalised, the rest defaults.

    Raises TemplateError listing every problem: unknown keys, missing required values, bad values.
    """
    problems: list[str] = []
    known = {v.key for v in template.values}
    for key in sorted(set(given) - known):
        problems.append(f"unknown value {key!r} (template {template.name} takes: {', '.join(sorted(known))})")
    resolved: dict[str, str] = {}
    for spec in template.values:
        raw = given.get(spec.key)
        try:
            value = check_value(spec, raw) if raw is not None else spec.default
        except TemplateError as exc:
            problems.append(str(exc))
            continue
        if spec.required and not value:
            problems.append(f"{spec.key} is required: {spec.description}")
        resolved[spec.key] = value
    # rules between values, on those that passed their own check: every problem in one report
    problems.extend(_cross_checks(resolved))
    if problems:
        raise TemplateError("; ".join(problems))
    return resolved


def _cross_checks(values: Mapping[str, str]) -> list[str]:
    """Rules between values that every template shares the names of."""
    problems = []
    witness, kind = values.get("witness", ""), values.get("witness_kind", "ping")
    if witness and kind == "arbitrator" and len(witness.split()) != 1:
        problems.append(f"witness {witness!r}: the arbitrator is one HOST[:PORT] (safekit arbiter)")
    if witness and kind == "ping" and ":" in witness:
        problems.append(f"witness {witness!r}: ping witnesses are addresses, without a port")
    problems.extend(_load_balancer_checks(values))
    return problems


_TARGET_GROUP_ARN: Final = re.compile(
    r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/\S+"
)
HEALTH_PORT: Final = 9010
"""The engine's health endpoint, which the cloud load balancers probe (not for a service)."""


def _load_balancer_checks(values: Mapping[str, str]) -> list[str]:
    """The cloud load-balancer farm's rules: a service to run, each provider's own options only."""
    if "lb_kind" not in values:
        return []
    problems = []
    kind = values["lb_kind"]
    if "app_command" in values and not (values.get("app_command") or values.get("start_command")):
        problems.append("app_command or start_command is required: the service every node runs")
    arn, probe, port = (
        values.get("target_group_arn", ""),
        values.get("probe_port", ""),
        values.get("port", ""),
    )
    if arn and kind != "aws_lb":
        problems.append(f"target_group_arn is for lb_kind=aws_lb, not {kind}")
    elif arn and not _TARGET_GROUP_ARN.fullmatch(arn):
        problems.append(
            f"target_group_arn {arn!r}: not a target group ARN "
            "(arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)"
        )
    if probe and kind != "azure_lb":
        problems.append(f"probe_port is for lb_kind=azure_lb, not {kind}")
    elif probe and probe in (str(HEALTH_PORT), port):
        problems.append(
            f"probe_port {probe}: a port of its own (not the health endpoint's 9010 nor the service's)"
        )
    if port == str(HEALTH_PORT):
        problems.append("port 9010 is the engine's health endpoint: give the service another port")
    return problems


# ---------------------------------------------------------------------- rendering


def render(template: Template, module: str, given: Mapping[str, str]) -> Package:
    """The module package for these site values (checked first: see `resolve_values`).

    `module` (the module's name) is checked by the caller; it names the load-balancing group.
    """
    values = resolve_values(template, given)
    package: dict[str, PackageFile] = {}
    # the template's own files, and the library's it uses (copied, so the package needs nothing else)
    for path, content in sorted({**template.files, **template.shared}.items()):
        if path == MANIFEST:
            continue
        text = render_userconfig(template, module, values).encode() if path == USERCONFIG else content
        # scripts (and the programs of custom checkers) are executable, what they source is not
        executable = path.startswith("bin/") and text.startswith(b"#!")
        package[path] = PackageFile(text, 0o755 if executable else 0o644)
    return package


def render_userconfig(template: Template, module: str, values: Mapping[str, str]) -> str:
    """The template's userconfig.xml with the values in its macros and its markers applied."""
    text = template.files[USERCONFIG].decode()
    by_macro = {v.macro: values[v.key] for v in template.values if v.macro}

    def set_macro(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in by_macro:
            return match.group(0)
        return f"{match.group(1)}{_xml_attr(by_macro[name])}{match.group(4)}"

    text = _MACRO_LINE.sub(set_macro, text)
    lines: list[str] = []
    block: tuple[str, bool] | None = None
    # the @if block we are in: its key, and whether the lines at this point are kept
    for line in text.splitlines():
        if match := _IF.match(line):
            if block is not None:
                raise TemplateError(f"template {template.name}: <!--@if--> inside <!--@if {block[0]}-->")
            block = (match.group(1), all(values.get(key) for key in match.group(1).split()))
            continue
        if _ELSE.match(line) or _ENDIF.match(line):
            if block is None:
                raise TemplateError(f"template {template.name}: {line.strip()} without <!--@if-->")
            block = (block[0], not block[1]) if _ELSE.match(line) else None
            continue
        if block is not None and not block[1]:
            continue
        if match := _HOSTS.match(line):
            indent, key = match.groups()
            for node, power in parse_nodes(values[key]) if values.get(key) else ():
                lines.append(f'{indent}<host name="{_xml_attr(node)}" power="{power}"/>')
            continue
        lines.append(line)
    if block is not None:
        raise TemplateError(f"template {template.name}: <!--@if {block[0]}--> has no <!--@endif-->")
    return "\n".join(lines).replace("@MODULE@", _xml_attr(module)) + "\n"


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def describe(template: Template) -> str:
    """The template and its site values, a few lines (`safekit module templates T`)."""
    lines = [f"{template.name} ({template.mode}): {template.summary}"]
    for v in template.values:
        tag = "required" if v.required else f"default {v.default!r}" if v.default else "optional"
        lines.append(f"  {v.key:<16} {tag}: {v.description}")
    return "\n".join(lines)
