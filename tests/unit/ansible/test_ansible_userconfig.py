"""The collection's userconfig.xml renderer and parser: what it renders passes the engine's own
validator, and parameters -> XML -> parameters is the identity (what safekit.ha.node_info returns is what
safekit.ha.app_module accepts)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from safekit_collection import MODULES

# isort: split
from ansible_collections.safekit.ha.plugins.module_utils.userconfig import (
    NotStructured,
    canonical_params,
    parse_userconfig,
    render_cluster,
    render_userconfig,
)
from ansible_collections.safekit.ha.plugins.modules import app_module as module_plugin
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.config import parse_cluster, parse_module

SPEC_VALIDATOR = ArgumentSpecValidator(
    module_plugin.ARGUMENT_SPEC,
    mutually_exclusive=[["userconfig", key] for key in module_plugin.STRUCTURED],
)


def engine_accepts(xml: str) -> Any:
    return parse_module(xml, "userconfig.xml", env={}).config


def as_ansible_gives_them(params: dict[str, Any]) -> dict[str, Any]:
    """The module's parameters after Ansible's argument spec (None for what was not given, defaults)."""
    result = SPEC_VALIDATOR.validate(dict(params, name="am"))
    assert not result.error_messages, result.error_messages
    validated = dict(result.validated_parameters)
    return {key: validated[key] for key in module_plugin.STRUCTURED}


# ------------------------------------------------------------------------------------- strategies
names = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True)
ipv4 = st.tuples(st.integers(18, 19), st.integers(0, 255), st.integers(1, 254)).map(
    lambda t: "198.{}.{}.{}".format(*t)
)
seconds = st.sampled_from(["30", "5s", "1m30s", "300s", "2m"])
text_values = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Cn", "Co"), exclude_characters="%"), max_size=16
) | st.sampled_from(['a "quoted" <value> & more', "line1\nline2\ttab", "  spaced  ", ""])
heart_timing = st.sampled_from(
    [
        {},
        {"pulse": "100ms"},
        {"timeout": "2s"},
        {"pulse": "50ms", "timeout": "200ms"},
        {"pulse": "700", "timeout": "30000"},
    ]
)
check_timing = st.sampled_from(
    [
        {},
        {"interval": "10s"},
        {"interval": "10s", "timeout": "5s"},
        {"timeout": "1s"},
        {"interval": "2s", "timeout": "2s"},
    ]
)
when_action = st.fixed_dictionaries(
    {},
    optional={
        "when": st.sampled_from(["prim", "both", "pre"]),
        "action": st.sampled_from(["wait", "restart", "stopstart", "stop"]),
    },
)


def unique_by(
    key: str, elements: st.SearchStrategy[dict[str, Any]], max_size: int = 3
) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(elements, max_size=max_size, unique_by=lambda item: item[key])


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda dicts: {k: v for d in dicts for k, v in d.items()})


heartbeats = st.lists(
    merged(st.fixed_dictionaries({"name": names}), heart_timing),
    min_size=1,
    max_size=3,
    unique_by=lambda hb: hb["name"],
)
vips = unique_by(
    "addr",
    st.fixed_dictionaries(
        {"addr": ipv4},
        optional={"netmask": st.sampled_from(["24", "255.255.255.0", "16"]), "interface": names},
    ),
)
procs = st.lists(
    st.one_of(
        st.fixed_dictionaries({"name": names}),
        st.fixed_dictionaries({"nameregex": st.sampled_from(["python3?", "java", r"app-\d+"])}),
        # both: nameregex matches, name names the check (SafeKit's own templates do this)
        st.fixed_dictionaries({"name": names, "nameregex": st.just(r"ora_pmon_\w+")}),
    ).flatmap(
        lambda who: st.fixed_dictionaries(
            {
                **{k: st.just(v) for k, v in who.items()},
                "action": st.sampled_from(["restart", "stopstart", "stop", "noaction"]),
                "class": st.sampled_from(["prim", "both", "pre", "second", "sec"]),
            },
            optional={
                "argregex": st.sampled_from([r"http\.server 8080", "-D", ".*"]),
                "atleast": st.integers(0, 2),
            },
        ).map(lambda proc: dict(proc, atmax=-1) if proc.get("atleast", 1) > 1 else proc)
    ),
    max_size=3,
)
user = st.fixed_dictionaries(
    {},
    optional={
        "nicestoptimeout": seconds,
        "forcestoptimeout": seconds,
        "vars": st.dictionaries(
            st.from_regex(r"[A-Z_][A-Z0-9_]{0,6}", fullmatch=True), text_values, max_size=3
        ),
    },
)
errd = st.fixed_dictionaries({}, optional={"polltimer": seconds, "procs": procs})
tcp = unique_by(
    "ident",
    merged(
        st.fixed_dictionaries(
            {"ident": names, "addr": ipv4 | st.just("localhost"), "port": st.integers(1, 65535)}
        ),
        check_timing,
        when_action,
    ),
)
ping = unique_by(
    "ident", merged(st.fixed_dictionaries({"ident": names, "addr": ipv4}), check_timing, when_action)
)
custom = unique_by(
    "ident",
    merged(
        st.fixed_dictionaries(
            {"ident": names, "exec": st.sampled_from(["/opt/app/check", "check.sh"])},
            optional={"arg": st.sampled_from(["-q", "--port 8080"])},
        ),
        when_action,
    ),
)
checkers = st.fixed_dictionaries({}, optional={"tcp": tcp, "ping": ping, "custom": custom})
splitbrain = st.one_of(
    st.fixed_dictionaries(
        {"witnesses": st.lists(ipv4, min_size=1, max_size=2, unique=True)},
        optional={"ident": names, "exec": st.just("ping")},
    ),
    st.fixed_dictionaries(
        {"witnesses": st.lists(ipv4, min_size=1, max_size=1), "exec": st.just("arbitrator")},
        optional={"ident": names},
    ),
)
replicated_dirs = st.lists(
    st.fixed_dictionaries(
        {"path": st.sampled_from(["/srv/www", "/var/lib/app", "/data/db", "/opt/app/data", "/home/a b"])},
        optional={
            "notreplicated": st.lists(
                st.sampled_from(["cache", "tmp", "logs/old", 'odd "name" & <x>', ".hidden"]),
                max_size=3,
                unique=True,
            ),
            "notreplicated_regexpath": st.lists(
                st.sampled_from([r".*\.tmp", r"^cache/", r"[0-9]+\.log$", r"a|b"]), max_size=2, unique=True
            ),
        },
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda d: d["path"],
)
replication = st.fixed_dictionaries(
    {"dirs": replicated_dirs},
    optional={
        "async": st.sampled_from(["second", "none"]),
        "sendtimeout": seconds,
        "splitbrain_keep_free": st.sampled_from(["10%", "2G", "512M", "5.5%"]),
    },
)


@st.composite
def module_params(draw: st.DrawFn) -> dict[str, Any]:
    params: dict[str, Any] = {"heartbeats": draw(heartbeats)}
    optional = {
        "mode": st.just("mirror"),
        "heart_port": st.integers(1024, 65535),
        "vip": vips,
        "defaultprim": st.sampled_from(["alone", "lastprim"]) | names,
        "failover": st.booleans(),
        "maxloop": st.integers(0, 10),
        "loop_interval": st.sampled_from(["24", "24h", "1h30m"]),
        "user": user,
        "errd": errd,
        "checkers": checkers,
        "splitbrain": splitbrain,
        "replication": replication,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            params[key] = draw(strategy)
    # Failover rules may only name resources the module declares.
    # The engine's rules name a resource in dot-separated parts, none empty: a LAN named "a." or
    # "a..0" is valid in cluster.xml but cannot be named in a rule.
    resources = [f"heartbeat.{hb['name']}" for hb in params["heartbeats"]] + ["rfs.uptodate"]
    resources += [f"tcp.{c['ident']}" for c in params.get("checkers", {}).get("tcp", [])]
    resources = [r for r in resources if re.fullmatch(r"[a-z]+(\.[A-Za-z0-9_-]+)+", r)]
    chosen = draw(st.lists(st.sampled_from(resources), max_size=3))
    if chosen:
        params["failover_rules"] = "\n".join(
            f"rule{i}: if ({r} == down) then {draw(st.sampled_from(['restart', 'stopstart', 'swap']))}();"
            for i, r in enumerate(chosen)
        )
    return params


# ------------------------------------------------------------------------------------------ tests
@settings(max_examples=200, deadline=None)
@given(module_params())
def test_rendered_userconfig_passes_the_engine_validator_and_parses_back(params: dict[str, Any]) -> None:
    given_by_ansible = as_ansible_gives_them(params)
    xml = render_userconfig(given_by_ansible)
    engine_accepts(xml)
    back = parse_userconfig(xml)
    assert back == canonical_params(params)
    assert render_userconfig(back) == xml
    # What node_info returns is accepted as it is by safekit.ha.app_module.
    assert as_ansible_gives_them(back) is not None


@settings(max_examples=50, deadline=None)
@given(module_params())
def test_the_engine_reads_the_values_that_were_given(params: dict[str, Any]) -> None:
    config = engine_accepts(render_userconfig(params))
    assert [hb.name for hb in config.heart.heartbeats] == [hb["name"] for hb in params["heartbeats"]]
    if "heart_port" in params:
        assert config.heart.port == params["heart_port"]
    vips = [a.addr for i in (config.vip.interfaces if config.vip else ()) for a in i.addresses]
    assert vips == [v["addr"] for v in params.get("vip", [])]
    if params.get("user", {}).get("vars"):
        assert {v.name: v.value for v in config.user.vars} == params["user"]["vars"]
    if "splitbrain" in params:
        assert list(config.check.splitbrain.witnesses) == params["splitbrain"]["witnesses"]
        assert config.check.splitbrain.exec == params["splitbrain"].get("exec", "ping")
    if "failover" in params:
        assert config.service.failover is params["failover"]
    if "replication" in params:
        wanted = params["replication"]
        assert config.rfs is not None
        assert config.rfs.async_mode == wanted.get("async", "second")
        assert config.rfs.splitbrain_keep_free == wanted.get("splitbrain_keep_free", "10%")
        assert [d.dir for d in config.rfs.replicated] == [d["path"] for d in wanted["dirs"]]
        for got, want in zip(config.rfs.replicated, wanted["dirs"], strict=True):
            assert [n.path for n in got.notreplicated if n.path] == want.get("notreplicated", [])
            regexes = [n.regexpath for n in got.notreplicated if n.regexpath]
            assert regexes == want.get("notreplicated_regexpath", [])
    else:
        assert config.rfs is None


def test_defaults_are_a_mirror_with_one_heartbeat_on_lan_default() -> None:
    xml = render_userconfig({})
    config = engine_accepts(xml)
    assert config.service.mode == "mirror"
    assert [hb.name for hb in config.heart.heartbeats] == ["default"]
    assert parse_userconfig(xml) == {"mode": "mirror", "heartbeats": [{"name": "default"}]}


def test_scripts_need_a_user_section_and_an_empty_one_is_written() -> None:
    xml = render_userconfig({"user": {}})
    assert "<user/>" in xml
    assert engine_accepts(xml).user is not None
    assert parse_userconfig(xml)["user"] == {}


def test_the_documented_example_renders_a_valid_module() -> None:
    example = yaml.safe_load(module_plugin.EXAMPLES)[0]["safekit.ha.app_module"]
    structured = {k: v for k, v in example.items() if k in module_plugin.STRUCTURED}
    xml = render_userconfig(as_ansible_gives_them(structured))
    config = engine_accepts(xml)
    assert config.check.splitbrain is not None
    assert [r.label for r in config.failover.rules] == ["web_down"]
    assert parse_userconfig(xml) == canonical_params(structured)


@pytest.mark.parametrize(
    ("xml", "why"),
    [
        (
            '<safe><macro name="V" value="1.2.3.4"/>'
            '<service mode="mirror"><heart><heartbeat/></heart></service></safe>',
            "macro",
        ),
        (
            '<safe><service mode="mirror"><heart><heartbeat name="d" ident="flow"/></heart></service></safe>',
            "ident",
        ),
        (
            '<safe><service mode="mirror"><heart><heartbeat name="d"/></heart>'
            '<rfs locktimeout="100s"><replicated dir="/d"/></rfs></service></safe>',
            "locktimeout",
        ),
        (
            '<safe><service mode="mirror"><heart><heartbeat name="d"/></heart>'
            '<rfs><replicated dir="/d"><tocheck path="f"/></replicated></rfs></service></safe>',
            "tocheck",
        ),
        (
            '<safe><service mode="mirror"><heart><heartbeat name="d"/></heart>'
            '<rfs><replicated dir="/d"><notreplicated path="a" regexpath="b"/></replicated></rfs>'
            "</service></safe>",
            "exactly one",
        ),
        (
            '<safe><service mode="mirror" failover="yes">'
            '<heart><heartbeat name="d"/></heart></service></safe>',
            "on/off",
        ),
        (
            '<safe><service mode="mirror" maxloop="03"><heart><heartbeat name="d"/></heart></service></safe>',
            "number",
        ),
        (
            '<safe><service mode="mirror"><heart><heartbeat name="d"/></heart><check><tcp ident="a">'
            '<to addr="h" port="1"/><to addr="i" port="2"/></tcp></check></service></safe>',
            "<to>",
        ),
        ('<safe><service mode="mirror"><heart><heartbeat name="%LAN%"/></heart></service></safe>', "macro"),
        ("<safe><service", "well-formed"),
    ],
)
def test_what_the_parameters_cannot_say_is_refused(xml: str, why: str) -> None:
    with pytest.raises(NotStructured, match=why):
        parse_userconfig(xml)


def test_a_safekit_file_written_by_hand_keeps_its_raw_xml() -> None:
    docs = (MODULES.parents[5] / "docs" / "config.md").read_text()
    example = docs.split("```xml\n<!DOCTYPE safe>", 1)[1].split("```", 1)[0]
    with pytest.raises(NotStructured):
        parse_userconfig("<!DOCTYPE safe>" + example)


def test_cluster_xml_is_what_the_engine_reads() -> None:
    lans = [
        {
            "name": "default",
            "command": None,
            "nodes": [{"name": "n1", "addr": "198.18.0.11"}, {"name": "n2", "addr": "198.18.0.12"}],
        },
        {
            "name": "replication",
            "command": False,
            "nodes": [{"name": "n1", "addr": "198.19.0.11"}, {"name": "n2", "addr": "198.19.0.12"}],
        },
    ]
    xml = render_cluster(lans, 4800)
    cluster = parse_cluster(xml)
    assert [lan.name for lan in cluster.lans] == ["default", "replication"]
    assert [(n.name, n.addr) for n in cluster.lans[1].nodes] == [("n1", "198.19.0.11"), ("n2", "198.19.0.12")]
    assert 'command="off"' in xml and 'port="4800"' in xml
    assert "command=" not in xml.split("<lan")[1]
    assert render_cluster(lans) == xml.replace(' port="4800"', "")
