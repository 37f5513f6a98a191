"""The module template library: every template renders into a module our config parser accepts, and
site values are checked with errors a user can act on (safekit.module_templates, safekit.templates)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from safekit import cli, templates
from safekit.checkers import errd
from safekit.config import check_file, parse_module
from safekit.daemon.module_executor import process_rule
from safekit.host.module_packages import extract_safe
from safekit.module_templates import (
    SHELL_LIBRARY,
    USERCONFIG,
    Template,
    TemplateError,
    parse_assignments,
    parse_manifest,
    render,
    resolve_values,
)

LIBRARY = templates.library()
SHARED_DIR = Path(templates.__file__).parent / templates.LIBRARY_DIR
SOURCE_LIBRARY = '. "$(dirname "$0")/safekit-template.sh"'
EXPECTED = {"mirror", "farm", "postgresql", "mariadb", "nginx_farm", "apache_farm", "kvm_vm", "cloud_lb_farm"}
REQUIRED_FOR = {
    "virtual_ip": "198.18.0.200",
    "pg_password": "secret",
    "db_password": "secret",
    "vm_name": "vm1",
    "lb_kind": "aws_lb",
    "port": "8080",
}
ALSO_NEEDED = {
    "farm": {"virtual_ip": "198.18.0.200"},  # optional, but the template's usual shape
    "cloud_lb_farm": {"app_command": "/opt/app/server --port 8080"},  # it or start_command
}
TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-3:123456789012:targetgroup/web/0123456789abcdef"


def minimal(template: Template) -> dict[str, str]:
    values = {v.key: REQUIRED_FOR[v.key] for v in template.values if v.required}
    return {**values, **ALSO_NEEDED.get(template.name, {})}


def every_value(template: Template) -> dict[str, str]:
    """A value for every key (optional parts of the file switched on)."""
    samples = {
        "witness": "198.18.0.254",
        "nodes": "node1,node2,node3:2",
        "app_command": 'python3 -m http.server 8080 --bind "0.0.0.0"',
        "start_command": "systemctl start app",
        "stop_command": "systemctl stop app",
        "check_port": "8080",
        "nginx_include": "/etc/safekit/site.conf",
        "apache_include": "/etc/safekit/site.conf",
        "db_clients": "10.1.2.3/16",
        "health_path": "/healthz",
        "target_group_arn": TARGET_GROUP,
    }
    values = minimal(template)
    values.update({k: v for k, v in samples.items() if template.value(k) is not None})
    return values


def test_the_library_holds_every_template() -> None:
    assert set(LIBRARY) >= EXPECTED
    for template in LIBRARY.values():
        assert template.summary and len(template.summary) < 160, template.name
        assert "README.md" in template.files, f"{template.name} has no README.md"


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("values", [minimal, every_value], ids=["required", "all"])
def test_every_template_renders_a_module_the_config_parser_loads(name: str, values: object) -> None:
    template = LIBRARY[name]
    package = render(template, "app1", values(template))  # type: ignore[operator]
    xml = package[USERCONFIG].content.decode()
    result = parse_module(xml, f"{name}/{USERCONFIG}", env={})
    assert result.warnings == ()
    assert result.config.service.mode == template.mode
    assert "<!--@" not in xml
    if template.value("virtual_ip") is not None:
        assert result.config.vip is not None and result.config.vip.addresses == ("198.18.0.200",)
    else:  # behind a cloud load balancer: no address on the nodes
        assert result.config.vip is None
    scripts = (
        {"prestart", "start_prim", "stop_prim"} if template.mode == "mirror" else {"start_both", "stop_both"}
    )
    for script in scripts:
        item = package[f"bin/{script}"]
        assert item.mode == 0o755 and item.content.startswith(b"#!/bin/sh\n"), script
    assert template.name not in ("postgresql", "mariadb") or result.config.errd is not None


def test_values_land_in_the_macros_and_switch_optional_parts() -> None:
    mirror = LIBRARY["mirror"]
    bare = parse_module(render(mirror, "m", minimal(mirror))[USERCONFIG].content, env={}).config
    assert bare.check.splitbrain is None and bare.check.tcp == ()
    assert bare.rfs is not None and bare.rfs.replicated[0].dir == "/srv/data"
    full = parse_module(
        render(mirror, "m", {**every_value(mirror), "replicated_dir": "/var/lib/app/"})[USERCONFIG].content,
        env={},
    )
    config = full.config
    assert config.check.splitbrain is not None and config.check.splitbrain.witnesses == ("198.18.0.254",)
    assert config.check.tcp[0].targets[0].port == 8080
    assert config.rfs is not None and config.rfs.replicated[0].dir == "/var/lib/app"
    assert dict((v.name, v.value) for v in config.user.vars)["APP_COMMAND"] == (  # type: ignore[union-attr]
        'python3 -m http.server 8080 --bind "0.0.0.0"'
    )


def test_farm_nodes_become_the_load_balancing_group() -> None:
    nginx = LIBRARY["nginx_farm"]
    xml = render(nginx, "web", {"virtual_ip": "10.0.0.9", "nodes": "a, b:3", "port": "8080"})[
        USERCONFIG
    ].content
    vip = parse_module(xml, env={}).config.vip
    assert vip is not None
    (group,) = vip.loadbalancing
    assert group.name == "web"
    assert [(h.name, h.power) for h in group.hosts] == [("a", 1), ("b", 3)]
    assert [(r.port, r.proto) for r in group.rules] == [(8080, "tcp")]
    without = parse_module(render(nginx, "web", {"virtual_ip": "10.0.0.9"})[USERCONFIG].content, env={})
    assert without.config.vip is not None and without.config.vip.loadbalancing == ()


def test_the_postgresql_template_watches_the_postmaster_and_its_port() -> None:
    pg = LIBRARY["postgresql"]
    config = parse_module(
        render(pg, "db", {**minimal(pg), "pgdata": "/data/pg", "pgport": "5433"})[USERCONFIG].content, env={}
    ).config
    assert config.rfs is not None and [d.dir for d in config.rfs.replicated] == ["/data/pg"]
    assert config.errd is not None
    (proc,) = config.errd.procs
    assert proc.name == "postgres" and proc.argregex == "-D /data/pg( |$)"
    assert config.check.tcp[0].targets[0].port == 5433
    # A backend whose client has not sent its startup packet yet still carries the postmaster's
    # command line: it must not count as a second postmaster (a restart of the database).
    rule = process_rule(proc)
    postmaster = ("/usr/lib/postgresql/15/bin/postgres", "-D", "/data/pg", "-c", "port=5433")
    running = [
        errd.ProcessInfo(10, "postgres", postmaster),
        errd.ProcessInfo(11, "postgres", ("postgres: db: checkpointer ",)),
        errd.ProcessInfo(12, "postgres", postmaster),  # forked, waiting for its startup packet
    ]
    [verdict] = errd.evaluate([rule], running)
    assert verdict.ok, verdict.reason
    [gone] = errd.evaluate([rule], running[1:2])
    assert not gone.ok and gone.reason == "postgres: 0 running, at least 1 needed"
    assert config.user is not None and config.user.nicestoptimeout > 30  # PG_STOP_TIMEOUT fits


def test_the_nginx_template_watches_its_own_master_only() -> None:
    nginx = LIBRARY["nginx_farm"]
    xml = render(nginx, "web", {"virtual_ip": "10.0.0.9", "port": "8080"})[USERCONFIG].content
    config = parse_module(xml, env={}).config
    assert config.errd is not None
    (proc,) = config.errd.procs
    rule = errd.ProcessRule("nginx", name=proc.name, argregex=proc.argregex, atleast=1, atmax=1)
    running = [
        errd.ProcessInfo(1, "nginx", ("nginx: master process nginx -c /run/safekit-nginx-8080/nginx.conf",)),
        errd.ProcessInfo(2, "nginx", ("nginx: worker process",)),
        errd.ProcessInfo(
            3, "nginx", ("nginx: master process /usr/sbin/nginx -g daemon on; master_process on;",)
        ),
        errd.ProcessInfo(4, "nginx", ("nginx: master process nginx -c /run/safekit-nginx-80/nginx.conf",)),
    ]
    [verdict] = errd.evaluate([rule], running)
    assert verdict.ok and verdict.count == 1  # not the workers, Debian's nginx or another port's
    [gone] = errd.evaluate([rule], running[1:])
    assert not gone.ok


def test_the_kvm_vm_template_replicates_the_vm_directory_and_watches_the_domain() -> None:
    vm = LIBRARY["kvm_vm"]
    package = render(vm, "vm", {**minimal(vm), "vm_dir": "/data/vms/web/", "shutdown_timeout": "45"})
    config = parse_module(package[USERCONFIG].content, env={}).config
    assert config.rfs is not None and [d.dir for d in config.rfs.replicated] == ["/data/vms/web"]
    (custom,) = config.check.custom
    assert (custom.ident, custom.exec, custom.when, custom.action) == ("vm", "vmcheck", "prim", "restart")
    assert package["bin/vmcheck"].mode == 0o755 and package["bin/vm.sh"].mode == 0o644
    assert config.user is not None
    variables = {v.name: v.value for v in config.user.vars}
    assert variables["VM_NAME"] == "vm1" and variables["VM_DIR"] == "/data/vms/web"
    assert variables["VM_SHUTDOWN_TIMEOUT"] == "45" and variables["LIBVIRT_URI"] == "qemu:///system"
    # the longest graceful stop (240 s, vm.sh caps it) and a destroy fit in the module's stop time
    assert config.user.nicestoptimeout >= 240 + int(variables["VIRSH_TIMEOUT"])


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"virtual_ip": "1.2.3.4"}, "vm_name is required"),
        ({"virtual_ip": "1.2.3.4", "vm_name": "my vm"}, "vm_name: 'my vm': letters, digits"),
        ({"virtual_ip": "1.2.3.4", "vm_name": "vm1", "vm_dir": "vms"}, "absolute path"),
        ({"virtual_ip": "1.2.3.4", "vm_name": "vm1", "shutdown_timeout": "0"}, "whole number of seconds"),
        ({"virtual_ip": "1.2.3.4", "vm_name": "vm1", "shutdown_timeout": "2m"}, "whole number of seconds"),
    ],
)
def test_the_kvm_vm_site_values_are_checked(given: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        resolve_values(LIBRARY["kvm_vm"], given)


@pytest.mark.parametrize(
    ("driver", "problem"),
    [
        ("<driver name='qemu' type='raw' cache='writeback'/>", ""),
        ("<driver name='qemu' type='qcow2'/>", ""),
        ("<driver name='qemu' type='raw' cache='writethrough'/>", ""),
        ("<driver name='qemu' type='raw' cache='none' io='native'/>", "O_DIRECT"),
        ('<driver name="qemu" type="raw" cache="directsync"/>', "O_DIRECT"),
        ("<driver name='qemu' type='raw' cache='unsafe'/>", "flushes would be ignored"),
    ],
)
def test_the_kvm_vm_refuses_disks_the_replicated_directory_cannot_serve(
    tmp_path: Path, driver: str, problem: str
) -> None:
    """start_prim's check of the definition: O_DIRECT (not on the FUSE directory) and cache=unsafe
    (acknowledged writes lost) are refused with a line saying what to use."""
    (tmp_path / "vm1.xml").write_text(
        f"<domain><name>vm1</name><devices><disk>{driver}</disk></devices></domain>"
    )
    vm_sh = LIBRARY["kvm_vm"].files["bin/vm.sh"].decode()
    done = subprocess.run(
        ["sh", "-c", f'. "{SHARED_DIR / SHELL_LIBRARY}"\n{vm_sh}\ndefinition_problem', "start_prim"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "VM_NAME": "vm1", "VM_DIR": str(tmp_path)},
    )
    assert (done.returncode != 0) == (problem == ""), done
    assert problem in done.stdout
    if problem:
        assert "cache='writeback'" in done.stdout
    (tmp_path / "vm1.xml").write_text("<domain><name>vm2</name></domain>")
    other = subprocess.run(
        ["sh", "-c", f'. "{SHARED_DIR / SHELL_LIBRARY}"\n{vm_sh}\ndefinition_problem', "start_prim"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "VM_NAME": "vm1", "VM_DIR": str(tmp_path)},
    )
    assert other.returncode == 0 and "does not define <name>vm1</name>" in other.stdout


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"virtual_ip": "1.2.3.4", "colour": "red"}, "unknown value 'colour'"),
        ({}, "virtual_ip is required"),
        ({"virtual_ip": "1.2.3"}, "not an IPv4 address"),
        ({"virtual_ip": "127.0.0.1"}, "unicast address"),
        ({"virtual_ip": "1.2.3.4", "check_port": "0"}, "not a port"),
        ({"virtual_ip": "1.2.3.4", "replicated_dir": "srv/data"}, "absolute path"),
        ({"virtual_ip": "1.2.3.4", "replicated_dir": "/srv/../etc"}, "'..'"),
        ({"virtual_ip": "1.2.3.4", "witness_kind": "carrier-pigeon"}, "one of ping, arbitrator"),
        ({"virtual_ip": "1.2.3.4", "witness": "1.2.3.254 x"}, "not an IPv4 address"),
        ({"virtual_ip": "1.2.3.4", "witness": "1.2.3.254:9455"}, "without a port"),
        ({"virtual_ip": "1.2.3.4", "witness": "1.2.3.1 1.2.3.2", "witness_kind": "arbitrator"}, "one HOST"),
        ({"virtual_ip": "1.2.3.4", "app_command": "echo 100%USER%"}, "'%' is not allowed"),
        ({"virtual_ip": "1.2.3.4", "app_command": "a\nb"}, "control characters"),
        ({"virtual_ip": "1.2.3.4", "heartbeat_lan": "-x"}, "letters, digits"),
    ],
)
def test_bad_values_are_refused_with_what_to_do(given: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace("%", "%")):
        resolve_values(LIBRARY["mirror"], given)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(TemplateError) as caught:
        resolve_values(LIBRARY["postgresql"], {"pgport": "x", "nope": "1"})
    text = str(caught.value)
    for part in ("unknown value 'nope'", "pgport", "virtual_ip is required", "pg_password is required"):
        assert part in text


def test_farm_nodes_and_secrets() -> None:
    farm = LIBRARY["farm"]
    with pytest.raises(TemplateError, match="two nodes or more"):
        resolve_values(farm, {"virtual_ip": "1.2.3.4", "nodes": "node1"})
    with pytest.raises(TemplateError, match="listed twice"):
        resolve_values(farm, {"virtual_ip": "1.2.3.4", "nodes": "a,a:2"})
    with pytest.raises(TemplateError, match="no spaces, quotes"):
        resolve_values(LIBRARY["mariadb"], {"virtual_ip": "1.2.3.4", "db_password": "it's"})
    assert resolve_values(farm, {"virtual_ip": "1.2.3.4", "nodes": "a:1 b:2"})["nodes"] == "a,b:2"
    assert LIBRARY["postgresql"].value("pg_password").secret  # type: ignore[union-attr]


def test_the_generic_farm_may_have_no_virtual_ip() -> None:
    """Without virtual_ip the farm has no <vip> (a cloud load balancer spreads the clients); with it,
    the file is the one it always was: only the marker lines differ."""
    farm = LIBRARY["farm"]
    bare = render(farm, "app", {"app_command": "/opt/app/server"})[USERCONFIG].content.decode()
    assert "<vip>" not in bare and parse_module(bare, env={}).config.vip is None
    with_vip = render(farm, "app", {"virtual_ip": "10.0.0.9"})[USERCONFIG].content.decode()
    block = """
  </farm>
  <vip>
    <interface_list>
      <interface check="on">
        <virtual_interface type="vmac_invisible">
          <virtual_addr addr="%VIRTUAL_IP%" where="alias"/>
        </virtual_interface>
      </interface>
    </interface_list>
  </vip>
  <user """
    assert block in with_vip and "<!--@" not in with_vip
    # the load-balancing group is the virtual IP's: without one (the Ansible role gives every
    # farm its nodes) there is none
    grouped = render(farm, "app", {"nodes": "node1,node2"})[USERCONFIG].content.decode()
    assert "<vip>" not in grouped and "loadbalancing" not in grouped
    assert parse_module(grouped, env={}).config.vip is None


@pytest.mark.parametrize(
    ("kind", "options", "lb_vars"),
    [
        ("aws_lb", {}, {}),
        ("aws_lb", {"target_group_arn": TARGET_GROUP}, {"LB_TARGET_GROUP_ARN": TARGET_GROUP}),
        ("azure_lb", {}, {}),
        ("azure_lb", {"probe_port": "8081"}, {"LB_PROBE_PORT": "8081"}),
        ("gcp_ilb", {}, {}),
    ],
)
def test_the_cloud_lb_farm_renders_with_every_provider_kind(
    kind: str, options: dict[str, str], lb_vars: dict[str, str]
) -> None:
    template = LIBRARY["cloud_lb_farm"]
    values = {"lb_kind": kind, "port": "8080", "start_command": "systemctl start app", **options}
    package = render(template, "svc", values)
    result = parse_module(package[USERCONFIG].content, env={})
    assert result.warnings == ()
    config = result.config
    assert config.service.mode == "farm" and config.vip is None  # no address on the nodes
    (custom,) = config.check.custom
    assert (custom.ident, custom.exec, custom.when, custom.action) == ("http", "httpcheck", "both", "restart")
    assert config.user is not None
    variables = {v.name: v.value for v in config.user.vars}
    assert variables["LB_KIND"] == kind and variables["WEB_PORT"] == variables["CHECK_PORT"] == "8080"
    assert variables["HEALTH_PATH"] == "/"
    for name in ("LB_TARGET_GROUP_ARN", "LB_PROBE_PORT"):
        assert variables[name] == lb_vars.get(name, "")
    # leaving the load balancer and a bounded stop of the service fit in the module's stop time
    assert config.user.nicestoptimeout >= int(variables["LB_TIMEOUT"]) + 5 + int(variables["STOP_TIMEOUT"])
    assert package["bin/httpcheck"].mode == 0o755 and package["bin/lb.sh"].mode == 0o644


def test_the_cloud_lb_farm_refuses_bad_values_in_one_report() -> None:
    template = LIBRARY["cloud_lb_farm"]
    with pytest.raises(TemplateError) as caught:
        resolve_values(
            template,
            {"lb_kind": "gcp_ilb", "port": "9010", "health_path": "health", "target_group_arn": TARGET_GROUP,
             "probe_port": "8081", "virtual_ip": "10.0.0.9"},
        )  # fmt: skip
    text = str(caught.value)
    for part in (
        "unknown value 'virtual_ip'",
        "health_path: 'health': a URL path",
        "app_command or start_command is required",
        "target_group_arn is for lb_kind=aws_lb, not gcp_ilb",
        "probe_port is for lb_kind=azure_lb, not gcp_ilb",
        "port 9010 is the engine's health endpoint",
    ):
        assert part in text, text
    for given, message in (
        ({}, "lb_kind is required"),
        ({"lb_kind": "alb"}, "one of aws_lb, azure_lb, gcp_ilb"),
        ({"lb_kind": "aws_lb", "target_group_arn": "web"}, "not a target group ARN"),
        ({"lb_kind": "azure_lb", "probe_port": "8080"}, "a port of its own"),
        ({"lb_kind": "azure_lb", "probe_port": "9010"}, "a port of its own"),
    ):
        with pytest.raises(TemplateError, match=message):
            resolve_values(template, {"port": "8080", "app_command": "/opt/app/server", **given})


def _lb(tmp_path: Path, function: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """lb.sh's `function` run by sh as the module's scripts source it (library, app.sh, lb.sh)."""
    lb_sh = LIBRARY["cloud_lb_farm"].files["bin/lb.sh"].decode()
    script = f'. "{SHARED_DIR / SHELL_LIBRARY}"\n. "{SHARED_DIR / "bin" / "app.sh"}"\n{lb_sh}\n{function}'
    return subprocess.run(
        ["sh", "-c", script, "start_both"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SAFEMODULE": f"sktest-lb-{os.getpid()}", **variables},
    )


def test_the_azure_probe_port_is_open_only_while_the_node_serves(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    settings = {"LB_KIND": "azure_lb", "LB_PROBE_PORT": port}
    try:
        joined = _lb(tmp_path, "lb_join && port_open $LB_PROBE_PORT && echo open", **settings)
        assert joined.stdout.splitlines() == [f"azure_lb: probe port {port} open", "open"], joined
        again = _lb(tmp_path, "lb_join", **settings)  # idempotent: the same listener
        assert again.returncode == 0
        left = _lb(tmp_path, "lb_leave; port_open $LB_PROBE_PORT || echo closed", **settings)
        assert left.stdout.splitlines() == [f"azure_lb: probe port {port} closed", "closed"], left
        with socket.create_server(("0.0.0.0", int(port))):  # the port taken by something else
            taken = _lb(tmp_path, "lb_join", **settings)
        assert taken.returncode == 1 and taken.stdout == f"azure_lb: probe port {port} not open\n", taken
    finally:
        _lb(tmp_path, "stop_probe", **settings)
        shutil.rmtree(f"/run/safekit-sktest-lb-{os.getpid()}", ignore_errors=True)


def test_a_registration_that_fails_fails_the_join_with_its_reason(tmp_path: Path) -> None:
    """aws_lb with a target group, and no instance identity to be had (the metadata service cannot be
    reached): lb_join fails (start_both then fails, the node stays out) and says why; lb_leave says
    the deregistration failed and does not hold up the stop. Both bounded by LB_TIMEOUT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = {
        "LB_KIND": "aws_lb",
        "LB_TARGET_GROUP_ARN": TARGET_GROUP,
        "LB_TIMEOUT": "3",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "SAFEKIT_AWS_METADATA_URL": f"http://127.0.0.1:{closed}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}",
    }
    began = time.monotonic()
    joined = _lb(tmp_path, "lb_join", **settings)
    assert joined.returncode == 1, joined
    assert joined.stdout.startswith(f"aws_lb: not registered in {TARGET_GROUP}: "), joined.stdout
    assert "metadata" in joined.stdout or "reached" in joined.stdout, joined.stdout
    left = _lb(tmp_path, "lb_leave", **settings)
    assert left.returncode == 0 and left.stdout.startswith("aws_lb: deregistration failed: "), left
    assert time.monotonic() - began < 2 * (3 + 5) + 10


@pytest.mark.parametrize("kind", ["aws_lb", "azure_lb", "gcp_ilb"])
def test_without_options_the_load_balancer_needs_no_cloud_call(tmp_path: Path, kind: str) -> None:
    """No target group, no probe port: the load balancer probes the health endpoint, nothing else is
    done (no SDK, no credentials needed: an unreachable endpoint would fail a call)."""
    settings = {"LB_KIND": kind, "AWS_ENDPOINT_URL": "http://192.0.2.1:9"}
    joined = _lb(tmp_path, "lb_join && lb_leave", **settings)
    assert joined.returncode == 0
    assert joined.stdout.splitlines() == [
        f"{kind}: the load balancer probes the health endpoint (no cloud call)",
        f"{kind}: nothing to undo",
    ]


def test_assignments() -> None:
    assert parse_assignments(["VIRTUAL_IP=1.2.3.4", "cmd=a=b"]) == {"virtual_ip": "1.2.3.4", "cmd": "a=b"}
    with pytest.raises(TemplateError, match="KEY=VALUE"):
        parse_assignments(["virtual_ip"])
    with pytest.raises(TemplateError, match="given twice"):
        parse_assignments(["a=1", "A=2"])


def test_a_manifest_must_agree_with_its_userconfig() -> None:
    files = {
        USERCONFIG: b'<safe>\n<macro name="PORT" value="80"/>\n<!--@if other-->\n<!--@endif-->\n</safe>\n'
    }
    good = "description: d\nmode: farm\nvalues:\n  - {key: port, kind: port, default: 80, description: p}\n"
    with pytest.raises(TemplateError, match="marker names no value"):
        parse_manifest("t", good, files)
    both = {USERCONFIG: files[USERCONFIG].replace(b"@if other", b"@if port other")}
    with pytest.raises(TemplateError, match="marker names no value"):  # every key of an @if is a value
        parse_manifest("t", good, both)
    parse_manifest("t", good, {USERCONFIG: files[USERCONFIG].replace(b"@if other", b"@if port port")})
    with pytest.raises(TemplateError, match="differs from the macro"):
        parse_manifest("t", good.replace("default: 80", "default: 81"), files)
    with pytest.raises(TemplateError, match="no <macro"):
        parse_manifest("t", good.replace("key: port", "key: other"), files)
    with pytest.raises(TemplateError, match="mode must be"):
        parse_manifest("t", good.replace("mode: farm", "mode: cluster"), files)
    with pytest.raises(TemplateError, match="default of port"):
        parse_manifest("t", good.replace("default: 80", "default: 0"), files)


def test_cli_lists_templates(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["module", "templates", "--json"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)["templates"]}
    assert set(listed) >= EXPECTED
    keys = {v["key"] for v in listed["postgresql"]["values"]}
    assert {"virtual_ip", "pgdata", "pg_password", "witness"} <= keys
    assert cli.main(["module", "templates"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in EXPECTED)


def test_cli_new_writes_a_safe_that_install_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "db.safe"
    argv = [
        "module",
        "new",
        "db",
        "-t",
        "postgresql",
        "--set",
        "VIRTUAL_IP=10.0.0.5",
        "--set",
        "pg_password=pw",
    ]
    assert cli.main([*argv, "--output", str(out)]) == 0
    first = out.read_bytes()
    assert cli.main([*argv, "--output", str(out)]) == 1  # not replaced without --force
    assert "--force" in capsys.readouterr().err
    assert cli.main([*argv, "--output", str(out), "--force"]) == 0
    assert out.read_bytes() == first  # same values, same bytes
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        names = set(archive.namelist())
        mode = archive.getinfo("bin/start_prim").external_attr >> 16
    assert {USERCONFIG, "bin/start_prim", "bin/stop_prim", "README.md"} <= names
    assert "template.yml" not in names and mode & stat.S_IXUSR
    root = extract_safe(out, tmp_path / "x")  # what `safekit module install` does first
    assert check_file(root / "conf" / "userconfig.xml") == ()
    assert (root / "bin" / "start_prim").stat().st_mode & stat.S_IXUSR


def test_cli_new_refuses_bad_values_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["module", "new", "w", "-t", "nginx_farm", "--set", "port=http", "-o", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "w not written" in err and "virtual_ip is required" in err and "port: 'http'" in err
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["module", "new", "w", "-t", "nope", "-o", str(tmp_path)]) == 1
    assert "no template 'nope'" in capsys.readouterr().err


def test_cli_new_writes_a_directory_or_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["module", "new", "web", "-t", "farm", "--set", "virtual_ip=10.0.0.5"]
    assert cli.main([*base, "-o", f"{tmp_path}/web/"]) == 0
    assert (tmp_path / "web" / "bin" / "start_both").stat().st_mode & stat.S_IXUSR
    assert check_file(tmp_path / "web") == ()
    capsys.readouterr()
    assert cli.main([*base, "-o", "-"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["mode"] == "farm" and "bin/start_both" in answer["files"]
    assert answer["files"][USERCONFIG] == (tmp_path / "web" / USERCONFIG).read_text()


def test_a_heartbeat_port_is_given_or_left_to_the_engine() -> None:
    pg = LIBRARY["postgresql"]
    given = parse_module(
        render(pg, "db", {**minimal(pg), "heartbeat_port": "4820"})[USERCONFIG].content, env={}
    )
    assert given.config.heart is not None and given.config.heart.port == 4820
    left = parse_module(render(pg, "db", minimal(pg))[USERCONFIG].content, env={})
    assert left.config.heart is not None and left.config.heart.port is None
    nginx = LIBRARY["nginx_farm"]
    farm = parse_module(
        render(nginx, "w", {**minimal(nginx), "farm_port": "4910"})[USERCONFIG].content, env={}
    )
    assert farm.config.farm is not None and farm.config.farm.port == 4910


def test_markers_must_be_well_formed() -> None:
    head = "description: d\nmode: farm\nvalues:\n  - {key: port, kind: port, description: p}\n"
    for body, problem in (
        (b"<!--@if port-->\n", "has no <!--@endif-->"),
        (b"<!--@else-->\n", "without <!--@if-->"),
        (b"<!--@if port-->\n<!--@if port-->\n<!--@endif-->\n", "inside"),
    ):
        files = {USERCONFIG: b'<safe>\n<macro name="PORT" value=""/>\n' + body + b"</safe>\n"}
        template = parse_manifest("t", head, files)
        with pytest.raises(TemplateError, match=problem):
            render(template, "m", {})


def test_every_readme_names_every_site_value() -> None:
    for template in LIBRARY.values():
        readme = template.files["README.md"].decode()
        missing = [v.key for v in template.values if f"`{v.key}`" not in readme]
        assert not missing, f"{template.name}/README.md does not describe {missing}"


def test_the_package_data_ships_every_template_file() -> None:
    root = Path(templates.__file__).parent
    pyproject = (root.parents[2] / "pyproject.toml").read_text()
    globs = tomllib.loads(pyproject)["tool"]["setuptools"]["package-data"]["safekit.templates"]
    for path in root.rglob("*"):
        if path.is_file() and path.name != "__init__.py" and "__pycache__" not in path.parts:
            relative = path.relative_to(root)
            assert any(relative.match(glob) for glob in globs), f"{relative} is not in the wheel"


@pytest.mark.parametrize(("role", "mode"), [("mirror", "mirror"), ("farm", "farm")])
def test_the_roles_argument_specs_know_every_site_value(role: str, mode: str) -> None:
    root = Path(templates.__file__).parents[3]
    roles = root / "collections" / "ansible_collections" / "safekit" / "ha" / "roles"
    specs = yaml.safe_load((roles / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    names = {t.name for t in LIBRARY.values() if t.mode == mode}
    assert set(options["safekit_module_template"]["choices"]) == {"", *names}
    for name in names:
        for value in LIBRARY[name].values:
            assert f"safekit_template_{value.key}" in options, (
                f"{role}: no safekit_template_{value.key} ({name})"
            )
            assert options[f"safekit_template_{value.key}"].get("choices", list(value.choices)) == list(
                value.choices
            )


# ---------------------------------------------------------------------- the scripts' shell library


def _scripts(package: dict[str, bytes]) -> dict[str, str]:
    return {
        path: content.decode()
        for path, content in package.items()
        if path.startswith("bin/") and content.startswith(b"#!/bin/sh\n")
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_package_carries_the_shell_library_its_scripts_source(name: str) -> None:
    template = LIBRARY[name]
    package = render(template, "app1", minimal(template))
    library = package[SHELL_LIBRARY]
    assert library.content == (SHARED_DIR / SHELL_LIBRARY).read_bytes() and library.mode == 0o644
    contents = {path: item.content for path, item in package.items()}
    for path, text in _scripts(contents).items():
        sources = [line for line in text.splitlines() if line.startswith(". ")]
        assert "$SAFEUSERBIN/" not in "".join(sources), f"{name}/{path}: sources from its own directory"
        if path == "bin/start_second":  # stop_prim under its own name, nothing of its own
            assert not sources and 'exec "$SAFEUSERBIN/stop_prim" force "$@"' in text
            continue
        assert sources and sources[0] == SOURCE_LIBRARY, f"{name}/{path} does not source the library first"
        for line in sources[1:]:  # what else it sources is in the package, beside it
            assert line.startswith('. "$(dirname "$0")/') and f"bin/{line.split('/')[-1][:-1]}" in package


def test_the_templates_share_files_rather_than_copies_of_them() -> None:
    packages = {name: render(t, "m", minimal(t)) for name, t in LIBRARY.items()}
    assert packages["mirror"]["bin/app.sh"] == packages["farm"]["bin/app.sh"]
    assert packages["nginx_farm"]["bin/httpcheck"] == packages["apache_farm"]["bin/httpcheck"]
    assert packages["nginx_farm"]["bin/httpcheck"].mode == 0o755
    # a template's own folder holds what is its own: no file of it is another's or the library's
    own: dict[bytes, str] = {}
    shared = {p.read_bytes() for p in SHARED_DIR.rglob("*") if p.is_file()}
    for name, template in LIBRARY.items():
        for path, content in template.files.items():
            if path.startswith("bin/"):
                assert content not in shared, f"{name}/{path} is a copy of a file of the library"
                assert own.setdefault(content, f"{name}/{path}") == f"{name}/{path}", (
                    f"{name}/{path} is a copy of {own[content]}"
                )


def test_a_manifest_names_files_of_the_library() -> None:
    files = {USERCONFIG: b"<safe>\n</safe>\n"}
    library = {SHELL_LIBRARY: b"say() { :; }\n", "bin/app.sh": b"APP=1\n"}
    head = "description: d\nmode: farm\n"
    template = parse_manifest("t", head + "shared: [bin/app.sh]\n", files, library)
    assert template.shared == library
    package = render(template, "m", {})
    assert package["bin/app.sh"].content == b"APP=1\n" and package[SHELL_LIBRARY].mode == 0o644
    assert set(render(parse_manifest("t", head, files, library), "m", {})) == {USERCONFIG, SHELL_LIBRARY}
    with pytest.raises(TemplateError, match=r"no bin/nope\.sh in the library"):
        parse_manifest("t", head + "shared: [bin/nope.sh]\n", files, library)
    with pytest.raises(TemplateError, match="both the template's and the library's"):
        parse_manifest("t", head + "shared: [bin/app.sh]\n", {**files, "bin/app.sh": b""}, library)
    with pytest.raises(TemplateError, match="shared must be a list"):
        parse_manifest("t", head + "shared: bin/app.sh\n", files, library)


def _sh(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`script` run by sh after sourcing the library, as a module's script does."""
    return subprocess.run(
        ["sh", "-c", f'. "{SHARED_DIR / SHELL_LIBRARY}"\n{script}', "start_both", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_shell_library_finds_waits_and_says(tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    script = f"""
        sleep 30 &
        child=$!
        echo "$child" > {pidfile}
        [ "$(pidfile_pid {pidfile})" = "$child" ] || echo "pidfile_pid: $(pidfile_pid {pidfile})"
        [ "$(find_process sleep 30)" != "" ] || echo "find_process: no sleep 30"
        find_process sleep 31 && echo "find_process: a sleep 31"
        cmdline_has "$child" "^sleep 30" || echo "cmdline_has: no"
        ended "$child" && echo "ended: already"
        poll 1 false; echo "poll false: $?"
        poll 1 sh -c 'exit 3'; echo "poll gives up: $?"
        third() {{ [ "$POLLED" -ge 2 ]; }}
        poll 1 third; echo "poll third: $? after $POLLED tries"
        slow() {{ sleep 0.6; false; }}
        start=$(centis); poll 1 slow; took=$(($(centis) - start))
        [ "$took" -le 200 ] && echo "poll slow: bounded by time" || echo "poll slow: $took cs"
        wait_gone "$child" 0; echo "wait_gone running: $?"
        kill "$child"
        wait_gone "$child" 5; echo "wait_gone stopped: $?"
        pidfile_pid {pidfile} || echo "pidfile_pid: gone"
        stop_gently 1 0 0 "never said" || echo "stop_gently: runs"
        exit_if_running "it already runs" "pid" echo 42
        say "not reached"
    """
    done = _sh(script)
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        "poll false: 1",
        "poll gives up: 3",
        "poll third: 0 after 2 tries",
        "poll slow: bounded by time",
        "wait_gone running: 1",
        "wait_gone stopped: 0",
        "pidfile_pid: gone",
        "stop_gently: runs",
        "start_both: it already runs (pid 42)",
    ]
    assert done.returncode == 0


def test_stop_app_ends_the_whole_process_group() -> None:
    """A shell-wrapped app_command that ignores SIGTERM: its children get the group's signal, and
    nothing of the group survives the stop (dash once refused `kill -TERM -- -PGID`, and the stop
    then signalled the leader alone, leaving its children running)."""
    module = f"sktest-{os.getpid()}"
    marker = f"{4000 + os.getpid() % 1000}.5"
    script = f"""
        . "{SHARED_DIR / "bin" / "app.sh"}"
        APP_COMMAND='sh -c "trap \\"\\" TERM; sleep {marker}; true"'
        STOP_TIMEOUT=2
        start_app || exit 1
        stop_app
        sleep 0.2
        find_process sleep {marker} && echo "left running"
        exit 0
    """
    try:
        done = subprocess.run(
            ["sh", "-c", f'. "{SHARED_DIR / SHELL_LIBRARY}"\n{script}', "stop_prim"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "SAFEMODULE": module},
        )
    finally:
        for proc in Path("/proc").glob("[0-9]*"):  # what a failed stop left: only this test's sleep
            with contextlib.suppress(OSError):
                if (proc / "cmdline").read_bytes() == f"sleep\0{marker}\0".encode():
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(f"/run/safekit-{module}", ignore_errors=True)
        Path(f"/var/log/safekit/modules/{module}.app.log").unlink(missing_ok=True)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "left running" not in done.stdout, done.stdout
    assert "started (pid" in done.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_scripts_pass_shellcheck(name: str, tmp_path: Path) -> None:
    template = LIBRARY[name]
    templates.write_directory(render(template, name, minimal(template)), tmp_path / name)
    bin_dir = tmp_path / name / "bin"
    scripts = sorted(p.name for p in bin_dir.iterdir() if p.read_bytes().startswith(b"#!/bin/sh\n"))
    done = subprocess.run(
        ["shellcheck", "--shell=sh", "--external-sources", "--source-path=SCRIPTDIR", *scripts],
        cwd=bin_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout
