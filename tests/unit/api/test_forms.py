"""The console's forms rendered on the server: cluster.xml and a new module's userconfig.xml round
trip through the daemon's parser, and a bad value comes back as an error of its field."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from safekit.api.form_worker import FormWorker
from safekit.api.forms import ClusterForm, cluster_form_of, render_cluster, render_module
from safekit.config.cluster_parser import parse_cluster
from safekit.config.module_parser import parse_module

CLUSTER: dict[str, Any] = {
    "port": 4900,
    "lans": [
        {
            "name": "default",
            "nodes": [{"name": "n1", "addr": "198.18.0.1"}, {"name": "n2", "addr": "198.18.0.2"}],
        },
        {
            "name": "backup",
            "command": False,
            "nodes": [{"name": "n1", "addr": "198.18.1.1"}, {"name": "n2", "addr": "198.18.1.2"}],
        },
    ],
}


def fields(result: Any) -> dict[str, str]:
    return {e.field: e.message for e in result.errors}


def test_cluster_form_round_trips_through_the_parser() -> None:
    result = render_cluster(CLUSTER)
    assert result.valid, result.errors
    parsed = parse_cluster(result.xml)
    assert parsed.port == 4900
    assert [lan.name for lan in parsed.lans] == ["default", "backup"]
    assert parsed.lan("backup").command is False  # type: ignore[union-attr]
    assert parsed.lan("default").node("n2").addr == "198.18.0.2"  # type: ignore[union-attr]
    # and back: the form of the parsed file is the form given
    assert cluster_form_of(parsed) == ClusterForm.model_validate(CLUSTER)


def test_a_bad_address_is_an_error_of_its_field() -> None:
    bad = {**CLUSTER, "lans": [dict(CLUSTER["lans"][0])]}
    bad["lans"][0]["nodes"] = [{"name": "n1", "addr": "198.18.0.1"}, {"name": "n2", "addr": "198.18.0.999"}]
    result = render_cluster(bad)
    assert not result.valid
    assert list(fields(result)) == ["lans.0.nodes.1.addr"]
    assert "not an IPv4 address" in fields(result)["lans.0.nodes.1.addr"]
    assert result.errors[0].line is not None


def test_errors_between_fields_point_at_the_later_one() -> None:
    bad = {
        "lans": [
            {
                "name": "default",
                "nodes": [{"name": "n1", "addr": "198.18.0.1"}, {"name": "n2", "addr": "198.18.0.1"}],
            }
        ]
    }
    assert "lans.0.nodes.1" in fields(render_cluster(bad))
    twice = {"lans": [CLUSTER["lans"][0], CLUSTER["lans"][0]]}
    assert "given to both" not in str(fields(render_cluster(twice)))  # same nodes, same addresses
    assert "lans.1" in fields(render_cluster(twice))  # LAN declared twice


def test_the_form_shape_is_checked_field_by_field() -> None:
    result = render_cluster({"port": "port", "lans": [{"name": "x", "nodes": [{"name": "n1"}]}], "key": "k"})
    assert set(fields(result)) == {"port", "lans.0.nodes.0.addr", "key"}
    assert result.xml == ""


def test_attribute_values_are_escaped_not_concatenated() -> None:
    result = render_cluster({"lans": [{"name": 'a"b<c', "nodes": [{"name": "n1", "addr": "198.18.0.1"}]}]})
    assert 'name="a&quot;b&lt;c"' in result.xml
    assert "lans.0.name" in fields(result)  # not a valid LAN name, said on the field


SCRATCH: dict[str, Any] = {
    "name": "app",
    "form": {
        "heartbeats": ["default"],
        "heartbeat_port": 4830,
        "vip": {"kind": "arp", "addr": "198.18.0.210"},
        "replicated": [{"dir": "/srv/app", "exclude": ["tmp", "cache"]}],
        "checkers": [{"kind": "tcp", "ident": "app", "addr": "127.0.0.1", "port": 8080, "interval": "5s"}],
        "witness": {"kind": "ping", "arg": "198.18.0.254"},
        "failover_rules": "app_down: if (tcp.app == down) then restart();",
        "scripts": {"start_prim": "exec /opt/app/run &", "stop_prim": "#!/bin/bash\npkill -f /opt/app/run"},
    },
}


def test_module_from_scratch_round_trips_through_the_parser() -> None:
    result = render_module(SCRATCH, parse_cluster(render_cluster(CLUSTER).xml))
    assert result.valid, result.errors
    config = parse_module(result.xml, "userconfig.xml", env={}).config
    assert config.heart is not None and config.heart.port == 4830
    assert config.rfs is not None
    assert [r.dir for r in config.rfs.replicated] == ["/srv/app"]
    assert [n.path for n in config.rfs.replicated[0].notreplicated] == ["tmp", "cache"]
    assert config.vip is not None
    assert "<splitbrain" in result.xml and "app_down" in result.xml
    assert sorted(result.files) == ["bin/start_prim", "bin/stop_prim", "conf/userconfig.xml"]
    assert result.files["bin/start_prim"].content.startswith(b"#!/bin/sh\n")
    assert result.files["bin/stop_prim"].content.startswith(b"#!/bin/bash\n")
    assert result.files["bin/start_prim"].mode == 0o755


def test_a_mirror_from_scratch_with_a_cloud_provider_vip() -> None:
    """The guided form's other VIP kind: a cloud provider with its options, as the engine reads it."""
    vip = {
        "kind": "cloud",
        "addr": "198.18.0.220",
        "provider": "aws_route",
        "options": {"route_table_ids": "rtb-1"},
    }
    result = render_module(
        {**SCRATCH, "form": {**SCRATCH["form"], "vip": vip}}, parse_cluster(render_cluster(CLUSTER).xml)
    )
    assert result.valid, result.errors
    config = parse_module(result.xml, "userconfig.xml", env={}).config
    assert config.vip is not None
    [address] = config.vip.interfaces[0].addresses
    assert (address.addr, address.provider, address.options) == (
        "198.18.0.220",
        "aws_route",
        (("route_table_ids", "rtb-1"),),
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vip": {"kind": "arp", "addr": "198.18.0.300"}}, "vip.addr"),
        ({"replicated": [{"dir": "relative"}]}, "replicated.0.dir"),
        ({"replicated": [{"dir": "/srv/a", "exclude": ["../up"]}]}, "replicated.0.exclude.0"),
        (
            {
                "checkers": [
                    {"kind": "tcp", "ident": "c", "addr": "h", "port": 1, "interval": "2s", "timeout": "9s"}
                ]
            },
            "checkers.0.timeout",
        ),
        ({"failover_rules": "x: if (tcp.nothing == down) then restart();"}, "failover_rules"),
        ({"heartbeats": ["nolan"]}, "heartbeats.0"),
        ({"heartbeat_port": "x"}, "form.heartbeat_port"),
        ({"scripts": {"start_everything": "x"}}, "form.scripts.start_everything.[key]"),
    ],
)
def test_a_bad_module_value_is_an_error_of_its_field(change: dict[str, Any], field: str) -> None:
    request = {**SCRATCH, "form": {**SCRATCH["form"], **change}}
    result = render_module(request, parse_cluster(render_cluster(CLUSTER).xml))
    assert field in fields(result), result.errors


def test_module_from_the_mirror_template() -> None:
    request = {
        "name": "mirror1",
        "template": "mirror",
        "values": {"virtual_ip": "198.18.0.211", "replicated_dir": "/srv/m"},
    }
    result = render_module(request)
    assert result.valid, result.errors
    assert '<macro name="VIRTUAL_IP" value="198.18.0.211"/>' in result.xml
    assert "bin/start_prim" in result.files
    parse_module(result.xml, "userconfig.xml", env={})


def test_a_bad_template_value_is_an_error_of_its_field() -> None:
    result = render_module(
        {"name": "m", "template": "mirror", "values": {"virtual_ip": "1.2.3", "nope": "x"}}
    )
    assert set(fields(result)) == {"values.virtual_ip", "values.nope"}
    missing = render_module({"name": "m", "template": "mirror", "values": {}})
    assert "required" in fields(missing)["values.virtual_ip"]


def test_one_source_and_a_module_name() -> None:
    assert fields(render_module({"name": "m"}))  # neither template nor form
    assert "name" in fields(render_module({"name": "../x", "form": {}}))
    assert "template" in fields(render_module({"name": "m", "template": "nosuch"}))


def test_the_openapi_copy_of_the_schemas_is_up_to_date() -> None:
    from safekit.api import form_schemas, forms  # noqa: PLC0415

    assert forms.schemas() == form_schemas.SCHEMAS, (
        "run: python -m safekit.api.forms --schemas > src/safekit/api/form_schemas.py"
    )


def test_safekitd_does_not_load_pydantic_for_the_api() -> None:
    """The API (and its OpenAPI document) without the forms' modules: they run in the worker."""
    code = (
        "import sys; from safekit.api import app, config_forms, openapi; openapi.document('x'); "
        "heavy = ('pydantic', 'safekit.api.forms', 'safekit.module_templates'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_worker_answers_and_is_replaced_when_it_dies() -> None:
    async def scenario() -> None:
        worker = FormWorker(idle=60)
        try:
            first = await worker.ask("render_cluster", CLUSTER)
            assert first["valid"] and "<cluster>" in first["xml"]
            assert worker._process is not None
            worker._process.kill()
            await worker._process.wait()
            again = await worker.ask("render_module", SCRATCH, cluster_xml=first["xml"], package=True)
            assert again["valid"], again["errors"]
            assert {f["path"] for f in again["package"]} == {
                "conf/userconfig.xml",
                "bin/start_prim",
                "bin/stop_prim",
            }
            assert (await worker.ask("nonsense"))["error"].startswith("unknown request")
        finally:
            await worker.close()
        assert worker._process is None

    asyncio.run(scenario())


FARM: dict[str, Any] = {
    "name": "lb",
    "form": {
        "mode": "farm",
        "heartbeats": ["default", "backup"],
        "heartbeat_port": 4850,
        "vip": {"kind": "arp", "addr": "198.18.0.220", "type": "vmac_directed"},
        "groups": [
            {
                "name": "web",
                "hosts": [{"name": "n1", "power": 2}, {"name": "n2"}],
                "rules": [{"virtual_addr": "198.18.0.220", "port": 80, "filter": "on_port"}],
            }
        ],
        "checkers": [{"kind": "tcp", "ident": "web", "addr": "127.0.0.1", "port": 80}],
        "scripts": {"start_both": "exec /opt/web/run &", "stop_both": "pkill -f /opt/web/run"},
    },
}


def test_a_farm_from_scratch_round_trips_through_the_engines_loader() -> None:
    """The guided form's farm (virtual IP on every node, a group with its hosts and rule), read back
    by the parser safekitd loads modules with, and checked against cluster.xml."""
    result = render_module(FARM, parse_cluster(render_cluster(CLUSTER).xml))
    assert result.valid, result.errors
    config = parse_module(result.xml, "userconfig.xml", env={}).config
    assert config.mode == "farm" and config.heart is None and config.rfs is None
    assert config.farm is not None and config.farm.port == 4850
    assert [lan.name for lan in config.farm.lans] == ["default", "backup"]
    assert 'type="vmac_directed"' in result.xml and 'where="alias"' in result.xml
    assert '<host name="n1" power="2"/>' in result.xml
    assert '<rule virtual_addr="198.18.0.220" port="80" proto="tcp" filter="on_port"/>' in result.xml
    assert sorted(result.files) == ["bin/start_both", "bin/stop_both", "conf/userconfig.xml"]
    assert "defaultprim" not in result.xml  # a mirror's attribute


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vip": {"kind": "arp", "addr": "198.18.0.999"}}, "vip.addr"),
        ({"groups": [{"name": "web", "hosts": [{"name": "n9"}]}]}, "groups.0.hosts.0.name"),
        ({"groups": [{"name": "web", "rules": [{"port": 70000}]}]}, "groups.0.rules.0.port"),
        ({"heartbeats": ["nolan"]}, "heartbeats.0"),
        ({"replicated": [{"dir": "/srv/a"}]}, "replicated"),
        ({"witness": {"kind": "ping", "arg": "198.18.0.254"}}, "witness.kind"),
        ({"scripts": {"start_prim": "x"}}, "scripts.start_prim"),
        ({"vip": {"kind": "cloud", "addr": "198.18.0.220", "provider": "aws_route"}}, "vip.kind"),
        ({"vip": {"kind": "none"}}, "groups"),
    ],
)
def test_a_bad_farm_value_is_an_error_of_its_field(change: dict[str, Any], field: str) -> None:
    request = {**FARM, "form": {**FARM["form"], **change}}
    result = render_module(request, parse_cluster(render_cluster(CLUSTER).xml))
    assert field in fields(result), result.errors
