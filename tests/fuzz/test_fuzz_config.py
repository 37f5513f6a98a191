"""Fuzz the configuration readers (safekit.config): cluster.xml and userconfig.xml are written by
hand, copied between machines, and uploaded through the API.

Contract: parsing returns a model or raises `ConfigError` - never another exception - and every
error names the file given, a line that exists in the document (0 when none applies) and a
non-empty message. Entity declarations are refused, never expanded; nothing outside the document
is read. Durations, macros and failover rules are fuzzed on their own as well (see
test_fuzz_failover_rules.py for the rules).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from config_inputs import CLUSTERS, MODULES, ROOT, with_values_replaced, xml_mutation
from fuzz_support import bounded, count, fuzz_settings, run_decoder, timeout_seconds
from hypothesis import given
from hypothesis import strategies as st

from safekit.config import ConfigError, parse_cluster, parse_duration, parse_module
from safekit.config.cluster import ClusterConfig
from safekit.config.durations import UNITS, format_duration
from safekit.config.macros import ExpansionTooLarge, MacroExpander, UnknownReference
from safekit.config.module_parser import ModuleResult
from safekit.config.validation import validate_module_against_cluster
from safekit.config.xmlread import XmlElement, read_xml

ENV = {"HOME": "/root", "PERCENT": "%NOPE%", "EMPTY": "", "LAN": "default"}
"""The environment `%NAME%` falls back to; PERCENT's value looks like a reference on purpose."""

pytestmark = pytest.mark.timeout(timeout_seconds())


CLUSTER = parse_cluster((ROOT / "examples" / "cluster-lab.xml").read_text(), "cluster.xml")


def test_the_seed_documents_are_there_and_valid() -> None:
    """The mutation targets start from documents that parse: otherwise they fuzz only the errors."""
    assert len(MODULES) >= 2 and CLUSTERS
    for name, text in MODULES.items():
        if name.startswith("docs/"):
            continue  # snippets may be fragments
        parse_module(text, name, ENV)
    for name, text in CLUSTERS.items():
        parse_cluster(text, name)


def _lines(data: str | bytes) -> int:
    """Lines of the document as expat counts them (\\r, \\n and \\r\\n end a line)."""
    if isinstance(data, bytes):
        return data.count(b"\n") + data.count(b"\r") + 1
    return data.count("\n") + data.count("\r") + 1


def _check_error(exc: BaseException, data: str | bytes, filename: str) -> None:
    assert isinstance(exc, ConfigError)
    assert exc.errors, "a ConfigError carries at least itself"
    for error in exc.errors:
        assert error.filename == filename
        assert isinstance(error.message, str) and error.message.strip()
        assert 0 <= error.line <= _lines(data), f"line {error.line} of a {_lines(data)}-line document"
        assert error.element is None or isinstance(error.element, str)
    assert str(exc).startswith(f"{filename}:")


def _parse(data: str | bytes, kind: str, filename: str) -> ModuleResult | ClusterConfig | None:
    if kind == "safe":
        result, error = run_decoder("parse_module", lambda: parse_module(data, filename, ENV), ConfigError)
    else:
        result, error = run_decoder("parse_cluster", lambda: parse_cluster(data, filename), ConfigError)
    if error is not None:
        _check_error(error, data, filename)
        return None
    if isinstance(result, ModuleResult):
        for warning in result.warnings:
            assert warning.filename == filename and warning.message.strip()
        with bounded("validate_module_against_cluster"):
            for problem in validate_module_against_cluster(result.config, CLUSTER):
                assert problem.message.strip()
    return result  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- mutations of real files


@given(st.data())
@fuzz_settings()
def test_mutated_userconfig_files(data: st.DataObject) -> None:
    count("config: mutated userconfig.xml")
    name = data.draw(st.sampled_from(sorted(MODULES)))
    original = MODULES[name].encode()
    document = data.draw(xml_mutation(original))
    as_text = data.draw(st.booleans())
    _parse(document.decode("utf-8", "surrogateescape") if as_text else document, "safe", name)


@given(st.data())
@fuzz_settings()
def test_odd_attribute_values_in_real_files(data: st.DataObject) -> None:
    count("config: odd attribute values")
    # the file that uses every section, most often: its values reach every attribute reader
    name = data.draw(st.sampled_from([*sorted(MODULES), *sorted(CLUSTERS), *["every-section.xml"] * 4]))
    text = MODULES.get(name) or CLUSTERS[name]
    _parse(data.draw(with_values_replaced(text)), "safe" if name in MODULES else "cluster", name)


@given(st.data())
@fuzz_settings()
def test_mutated_cluster_files(data: st.DataObject) -> None:
    count("config: mutated cluster.xml")
    name = data.draw(st.sampled_from(sorted(CLUSTERS)))
    document = data.draw(xml_mutation(CLUSTERS[name].encode()))
    _parse(document, "cluster", name)


# --------------------------------------------------------------------------- generated documents

_TAGS = (
    "safe", "service", "macro", "heart", "heartbeat", "farm", "lan", "vip", "interface_list", "interface",
    "real_interface", "virtual_interface", "virtual_addr", "option", "loadbalancing_list", "group",
    "cluster", "host", "rule", "rfs", "replicated", "notreplicated", "tocheck", "user", "var", "errd",
    "proc", "check", "tcp", "ping", "intf", "ip", "module", "custom", "splitbrain", "to", "failover",
    "lans", "node",
)  # fmt: skip
_ATTRIBUTES = (
    "name", "value", "mode", "boot", "failover", "defaultprim", "maxloop", "loop_interval", "port",
    "pulse", "timeout", "ident", "mlost_count", "slost_count", "power", "tcpreset", "check",
    "arpinterval", "addr", "where", "netmask", "provider", "type", "virtual_addr", "proto", "filter",
    "async", "locktimeout", "sendtimeout", "reitimeout", "nbrei", "packetsize", "syncdelta",
    "namespacepolicy", "dir", "path", "regexpath", "nicestoptimeout", "forcestoptimeout", "logging",
    "polltimer", "nameregex", "argregex", "service", "atleast", "atmax", "action", "class",
    "start_after", "when", "interval", "exec", "arg", "extends", "period", "handle_time", "command",
)  # fmt: skip
_VALUES = (
    "", " ", "on", "off", "yes", "no", "mirror", "farm", "alone", "lastprim", "default", "flow",
    "node1", "node2", "0", "1", "-1", "65535", "65536", "99999999999999999999", "1" * 400, "1e9",
    "0.5", "700", "700ms", "1m30s", "30s1m", "1d2h3m4s5ms6us", "9" * 400 + "d", "١٢", "\u00bd",
    "%VIRTUAL_IP%", "%PERCENT%", "%NOPE%", "%%", "50%", "%LAN%", "192.168.1.1", "256.1.1.1",
    "198.18.0.1", "0.0.0.0", "/24", "255.255.255.0", "/var/lib/app", "/", "../x", "a/../b", "//x",
    "a{99999999999}", "(" * 300 + ")" * 300, "(?a)(?u)", "[", "*", "arp", "aws_route", "Upper",
    "prim", "both", "pre", "restart", "stopstart", "stop", "wait", "tcp", "udp", "on_port",
    "read_only", "second", "none", "ping", "vmac_directed", "one_side_alias", "alias",
)  # fmt: skip
_RULE_TEXT = (
    "r: if (heartbeat.default == down) then stop();",
    "r: if (heartbeat.? == down && !(ping.witness == up)) then wait();",
    "x: if (custom.app != up || rfs.uptodate == init) then swap();",
    "r: if (" + "!" * 200 + "heartbeat.default == up) then stop();",
    "r: if (" + "(" * 200 + "a.b == up" + ")" * 200 + ") then stop();",
    "r: if (nope.x == up) then restart();",
    "r if then;",
    ";;;",
)

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


def _element(children: st.SearchStrategy[str] | None) -> st.SearchStrategy[str]:
    def render(tag: str, attrs: dict[str, str], inner: list[str], text: str) -> str:
        attributes = "".join(f" {name}={quoteattr(value)}" for name, value in attrs.items())
        body = escape(text) + "".join(inner)
        return f"<{tag}{attributes}>{body}</{tag}>" if body else f"<{tag}{attributes}/>"

    return st.builds(
        render,
        st.sampled_from(_TAGS) | st.from_regex(r"[a-z_][a-z0-9_.-]{0,10}", fullmatch=True),
        st.dictionaries(st.sampled_from(_ATTRIBUTES), st.sampled_from(_VALUES) | _text, max_size=4),
        st.lists(children, max_size=4) if children is not None else st.just([]),
        st.just("") | st.sampled_from(_RULE_TEXT) | _text,
    )


_elements = st.recursive(_element(None), _element, max_leaves=25)


_RFS_ATTRIBUTES = ("async", "locktimeout", "sendtimeout", "reitimeout", "nbrei", "packetsize", "syncdelta")
_RFS_ATTRIBUTES += ("splitbrain_keep_free",)

# What each element may hold, as the parsers read it: (attributes, children). Generation follows
# it most of the time, so that the values reach the code that reads them, and strays from it
# sometimes (an unknown attribute or child, text where none belongs).
_SCHEMA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "safe": ((), ("macro", "service")),
    "macro": (("name", "value"), ()),
    "service": (
        ("mode", "boot", "failover", "defaultprim", "maxloop", "loop_interval"),
        ("heart", "farm", "vip", "rfs", "user", "errd", "check", "failover"),
    ),
    "heart": (("port", "pulse", "timeout"), ("heartbeat",)),
    "heartbeat": (("name", "ident", "pulse", "timeout"), ()),
    "farm": (("pulse", "mlost_count", "slost_count", "port"), ("lan",)),
    "vip": (("tcpreset",), ("interface_list", "loadbalancing_list")),
    "interface_list": ((), ("interface",)),
    "interface": (("name", "check", "arpinterval"), ("real_interface", "virtual_interface")),
    "real_interface": ((), ("virtual_addr",)),
    "virtual_interface": (("type",), ("virtual_addr",)),
    "virtual_addr": (("addr", "where", "netmask", "check", "provider"), ("option",)),
    "option": (("name", "value"), ()),
    "loadbalancing_list": ((), ("group",)),
    "group": (("name",), ("cluster", "rule")),
    "cluster": ((), ("host",)),
    "host": (("name", "power"), ()),
    "rule": (("virtual_addr", "port", "proto", "filter"), ()),
    "rfs": (_RFS_ATTRIBUTES, ("replicated",)),
    "replicated": (("dir", "mode"), ("notreplicated", "tocheck")),
    "notreplicated": (("path", "regexpath"), ()),
    "tocheck": (("path",), ()),
    "user": (("nicestoptimeout", "forcestoptimeout", "logging"), ("var",)),
    "var": (("name", "value"), ()),
    "errd": (("polltimer",), ("proc",)),
    "proc": (
        ("name", "nameregex", "argregex", "service", "atleast", "atmax", "action", "class", "start_after"),
        (),
    ),
    "check": ((), ("tcp", "ping", "intf", "ip", "module", "custom", "splitbrain")),
    "tcp": (("ident", "when", "action"), ("to",)),
    "ping": (("ident", "when", "action"), ("to",)),
    "intf": (("ident", "when", "action"), ("to",)),
    "ip": (("ident", "when", "action"), ("to",)),
    "module": (("name", "when", "action"), ("to",)),
    "custom": (("ident", "when", "action", "exec", "arg"), ()),
    "splitbrain": (("ident", "exec", "arg"), ()),
    "to": (("addr", "port", "interval", "timeout", "name"), ()),
    "failover": (("extends", "period", "handle_time"), ()),
    # cluster.xml ("cluster" above is the farm group's; the root is generated apart)
    "lans": (("port",), ("lan",)),
    "lan": (("name", "command", "power"), ("node",)),
    "node": (("name", "addr"), ()),
}
_PLAUSIBLE = {
    "mode": ("mirror", "farm", "read_only"),
    "name": ("default", "flow", "node1", "node2", "app", "eth0", "%LAN%", "M", "VIRTUAL_IP"),
    "value": ("%VIRTUAL_IP%", "%PERCENT%", "%M%%M%", "198.18.0.200", "x"),
    "addr": ("198.18.0.1", "198.18.0.2", "192.168.1.1", "%VIRTUAL_IP%", "example.org"),
    "port": ("80", "4800", "0", "65536", "*"),
    "arg": ("198.18.0.254", "198.18.0.254 198.18.0.253", " ", "bad_host!", "h:9455", "h:0", "h:\u00b2", "h:"),
    "exec": ("ping", "arbitrator", "/bin/true"),
    "splitbrain_keep_free": ("10%", "100%", "99.5%", "2G", "512M", "1.5TB", "\u0661\u0662%", "%", "-1%"),
}
_ANY_VALUE = st.sampled_from(_VALUES) | _text
_VALUE_OF = {name: st.sampled_from(values) | _ANY_VALUE for name, values in _PLAUSIBLE.items()}
_TEXT = st.sampled_from(("", "", "", " \n ")) | _text
_RULES = (
    st.sampled_from(_RULE_TEXT) | st.lists(st.sampled_from(_RULE_TEXT), max_size=3).map("\n".join) | _text
)


@st.composite
def _schema_element(draw: st.DrawFn, tag: str, budget: list[int] | None = None) -> str:
    """`tag` with attributes and children per _SCHEMA; `budget` bounds the elements of a document."""
    budget = [30] if budget is None else budget
    budget[0] -= 1
    allowed, kids = _SCHEMA.get(tag, ((), ()))
    names = [a for a in allowed if draw(st.integers(0, 2))]  # each attribute 2 times in 3
    if draw(st.integers(0, 9)) == 0:
        names.append(draw(st.sampled_from(_ATTRIBUTES)))
    attrs = {name: draw(_VALUE_OF.get(name, _ANY_VALUE)) for name in names}
    children: list[str] = []
    for kid in kids:
        for _ in range(draw(st.sampled_from((0, 1, 1, 2)))):
            if budget[0] > 0:
                children.append(draw(_schema_element(kid, budget)))
    if budget[0] > 0 and draw(st.integers(0, 9)) == 0:
        children.append(draw(_schema_element(draw(st.sampled_from(_TAGS)), budget)))
    text = draw(_RULES if tag == "failover" else _TEXT)
    attributes = "".join(f" {name}={quoteattr(value)}" for name, value in attrs.items())
    body = escape(text) + "".join(children)
    return f"<{tag}{attributes}>{body}</{tag}>" if body else f"<{tag}{attributes}/>"


_PROLOGS = (
    "",
    "<!DOCTYPE safe>\n",
    '<?xml version="1.0"?>\n',
    '<?xml version="1.0" encoding="UTF-8"?>\n',
    '<?xml version="1.0" encoding="ISO-8859-1"?>\n',
    '<?xml version="1.0" encoding="utf-7"?>\n',
    '<?xml version="1.0" encoding="shift_jis"?>\n',
    '<?xml version="1.0" encoding="rot13"?>\n',
    '<?xml version="1.0" encoding="klingon"?>\n',
    '<?xml version="1.0" encoding="utf-16"?>\n',
)


@st.composite
def generated_documents(draw: st.DrawFn, root: str) -> str:
    if draw(st.integers(0, 4)) == 0:  # free-form: any tags, any attributes, anywhere
        body = "\n".join(draw(st.lists(_elements, max_size=3)))
        document = f"<{root}>\n{body}\n</{root}>\n"
    elif root == "safe":
        document = draw(_schema_element("safe"))
    else:
        lans = draw(st.lists(_schema_element("lans"), min_size=0, max_size=2))
        document = f"<cluster>{''.join(lans)}</cluster>"
    return draw(st.sampled_from(_PROLOGS)) + document


@given(generated_documents("safe"), st.booleans())
@fuzz_settings()
def test_generated_userconfig_documents(document: str, as_bytes: bool) -> None:
    count("config: generated userconfig.xml")
    _parse(document.encode() if as_bytes else document, "safe", "userconfig.xml")


@given(generated_documents("cluster"))
@fuzz_settings()
def test_generated_cluster_documents(document: str) -> None:
    count("config: generated cluster.xml")
    _parse(document, "cluster", "cluster.xml")


@given(st.binary(max_size=400) | st.text(max_size=200))
@fuzz_settings()
def test_raw_input_to_the_xml_reader(data: bytes | str) -> None:
    count("config: raw bytes and text")
    root, error = run_decoder("read_xml", lambda: read_xml(data, "f.xml"), ConfigError)
    if error is not None:
        _check_error(error, data, "f.xml")
    else:
        assert isinstance(root, XmlElement)
    _parse(data, "safe", "userconfig.xml")
    _parse(data, "cluster", "cluster.xml")


# --------------------------------------------------------------------------- entities


@pytest.fixture(scope="module")
def listener() -> socket.socket:
    """A TCP port on 127.0.0.1 that an external reference would reach if it were followed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock  # type: ignore[misc]


SECRET = "SAFEKIT-FUZZ-SECRET-5f1c"


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("entity") / "secret.txt"
    path.write_text(SECRET)
    return path


@st.composite
def entity_documents(draw: st.DrawFn, url: str, file_url: str) -> tuple[str, bool]:
    """A document with a DTD; True when it declares an entity (which must be refused)."""
    laughs = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    declarations = {
        "internal": '<!ENTITY e "expanded">',
        "laughs": '<!ENTITY l0 "lol">' + laughs,
        "system file": f'<!ENTITY e SYSTEM "{file_url}">',
        "system url": f'<!ENTITY e SYSTEM "{url}">',
        "public": f'<!ENTITY e PUBLIC "-//x//y" "{url}">',
        "parameter": f'<!ENTITY % p SYSTEM "{url}"> %p;',
        "unparsed": f'<!NOTATION n SYSTEM "x"><!ENTITY e SYSTEM "{url}" NDATA n>',
        "attlist": '<!ATTLIST heartbeat name CDATA "injected">',
        "none": "",
    }
    kind = draw(st.sampled_from(sorted(declarations)))
    external_dtd = draw(st.sampled_from(("", f' SYSTEM "{url}"', f' SYSTEM "{file_url}"')))
    reference = draw(st.sampled_from(("", "&e;", "&l9;", '<heartbeat name="&e;"/>')))
    document = (
        f"<!DOCTYPE safe{external_dtd} [{declarations[kind]}]>\n<safe>{reference}"
        '<service mode="mirror"><heart><heartbeat name="default"/></heart></service></safe>'
    )
    return document, kind not in ("attlist", "none")


@given(data=st.data())
@fuzz_settings(0.5)
def test_entities_are_refused_and_nothing_external_is_read(
    data: st.DataObject, listener: socket.socket, secret_file: Path
) -> None:
    count("config: entities and external references")
    port = listener.getsockname()[1]
    document, declares = data.draw(entity_documents(f"http://127.0.0.1:{port}/x.dtd", secret_file.as_uri()))
    result = _parse(document, "safe", "userconfig.xml")
    if declares:
        assert result is None, "an entity declaration is refused"
    assert SECRET not in repr(result) and "expanded" not in repr(result) and "lol" not in repr(result)
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected


# --------------------------------------------------------------------------- durations and macros


_durations = st.lists(
    st.tuples(st.sampled_from(tuple(UNITS)), st.integers(0, 10**6)),
    min_size=1,
    max_size=6,
    unique_by=lambda p: p[0],
)


@given(_durations)
@fuzz_settings()
def test_durations_round_trip(parts: list[tuple[str, int]]) -> None:
    count("config: durations, valid")
    order = list(UNITS)
    parts = sorted(parts, key=lambda p: order.index(p[0]))
    text = "".join(f"{n}{unit}" for unit, n in parts)
    seconds = parse_duration(text, "s")
    expected = float(sum(n * UNITS[unit] for unit, n in parts))
    assert seconds == expected
    if seconds > 0:
        assert parse_duration(format_duration(seconds), "s") == seconds


@given(
    st.text(st.sampled_from("0123456789.msudh ١٢\t-+e"), max_size=30) | st.text(max_size=30),
    st.sampled_from(tuple(UNITS)),
)
@fuzz_settings()
def test_any_text_is_a_duration_or_a_clear_error(text: str, unit: str) -> None:
    count("config: durations, any text")
    seconds, _ = run_decoder("parse_duration", lambda: parse_duration(text, unit), ValueError)
    if seconds is not None:
        assert isinstance(seconds, float) and 0 <= seconds < float("inf")


@given(
    st.dictionaries(st.from_regex(r"[A-Z_]{1,4}", fullmatch=True), st.text(max_size=12), max_size=4),
    st.lists(
        st.sampled_from(("%A%", "%B%", "%NOPE%", "%", "%%", "50%", "x", "%A", "A%", "%_%")), max_size=12
    ),
)
@fuzz_settings()
def test_macro_references_expand_or_name_the_culprit(macros: dict[str, str], pieces: list[str]) -> None:
    count("config: macros")
    expander = MacroExpander({}, {"A": "%B%", "B": "bee"})
    for name, value in macros.items():
        with contextlib.suppress(UnknownReference):
            expander.define(name, value)
    text = "".join(pieces)
    expanded, error = run_decoder(
        "expand", lambda: expander.expand(text), (UnknownReference, ExpansionTooLarge)
    )
    if expanded is not None:
        assert isinstance(expanded, str)
        if "%" not in text:
            assert expanded == text
    else:
        assert isinstance(error, LookupError)
