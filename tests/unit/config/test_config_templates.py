"""Modules shaped like SafeKit's own mirror.safe and farm.safe templates load unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from safekit.config import (
    DEFAULT_HEARTBEAT_PULSE,
    DEFAULT_HEARTBEAT_TIMEOUT,
    And,
    Comparison,
    check_file,
    load_cluster,
    load_module,
    parse_module,
    validate_module_against_cluster,
)

CLUSTER = """<?xml version="1.0" encoding="utf-8"?>
<cluster>
  <lans port="4800">
    <lan name="default" command="on" framework="on">
      <node name="node1" addr="198.18.0.11"/>
      <node name="node2" addr="198.18.0.12"/>
    </lan>
    <lan name="replication" command="off">
      <node name="node1" addr="198.19.0.11"/>
      <node name="node2" addr="198.19.0.12"/>
    </lan>
  </lans>
</cluster>
"""

MIRROR = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" maxloop="3" loop_interval="24" failover="on">
  <!-- Heartbeat Configuration -->
  <heart>
    <heartbeat name="default" ident="flow"/>
  </heart>
  <!-- Virtual IP Configuration -->
  <vip>
    <interface_list>
      <interface check="on" arpreroute="on">
        <real_interface>
          <virtual_addr addr="198.18.0.100" where="one_side_alias"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <!-- Software Error Detection Configuration -->
  <errd polltimer="10">
    <proc name="postgres" atleast="1" action="restart" class="prim"/>
  </errd>
  <!-- File Replication Configuration -->
  <rfs async="second" acl="off" nbrei="3" locktimeout="100" sendtimeout="30" reitimeout="150">
    <replicated dir="/test/replication" mode="read_only">
      <notreplicated path="AppTmpDir"/>
      <notreplicated regexpath=".*\\.tmp$"/>
    </replicated>
  </rfs>
  <!-- User scripts -->
  <user nicestoptimeout="300" forcestoptimeout="300" logging="userlog"/>
  <check>
    <tcp ident="db" when="prim"><to addr="127.0.0.1" port="5432" interval="10" timeout="5"/></tcp>
    <custom ident="app" when="prim" exec="customscript" arg="x" action="stopstart"/>
    <splitbrain ident="witness" exec="ping" arg="198.18.0.1"/>
  </check>
  <failover handle_time="15000" period="5000">
  <![CDATA[
    c_app: if (custom.app == down) then restart();
    isolated: if (heartbeat.default == down && splitbrain.uptodate == down) then wait();
  ]]>
  </failover>
</service>
</safe>
"""

FARM = """<!DOCTYPE safe>
<safe>
<service mode="farm" maxloop="3" loop_interval="24">
  <!-- Farm topology configuration for the membership protocol -->
  <farm>
    <lan name="default"/>
  </farm>
  <vip>
    <interface_list>
      <interface check="on" arpreroute="on">
        <virtual_interface type="vmac_directed">
          <virtual_addr addr="198.18.0.200" where="alias"/>
        </virtual_interface>
      </interface>
    </interface_list>
    <loadbalancing_list>
      <group name="FarmProto">
        <cluster>
          <host name="node1" power="1"/>
          <host name="node2" power="2"/>
        </cluster>
        <rule port="9010" proto="tcp" filter="on_addr"/>
      </group>
    </loadbalancing_list>
  </vip>
  <user nicestoptimeout="300" forcestoptimeout="300" logging="userlog"/>
  <errd polltimer="10">
    <proc name="nginx" atleast="1" action="restart" class="both"/>
  </errd>
  <check>
    <tcp ident="web"><to addr="127.0.0.1" port="80"/></tcp>
  </check>
</service>
</safe>
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "cluster.xml").write_text(CLUSTER)
    module_dir = tmp_path / "mirror" / "conf"
    module_dir.mkdir(parents=True)
    (module_dir / "userconfig.xml").write_text(MIRROR)
    (tmp_path / "farm.xml").write_text(FARM)
    return tmp_path


def test_mirror_template_loads_with_safekit_units_and_our_defaults(files: Path) -> None:
    module, warnings = load_module(files / "mirror", env={})
    assert module.mode == "mirror"
    assert module.service.loop_interval == 24 * 3600
    heartbeat = module.heart.heartbeats[0] if module.heart else None
    assert heartbeat is not None and heartbeat.carries_replication
    assert (heartbeat.pulse, heartbeat.timeout) == (DEFAULT_HEARTBEAT_PULSE, DEFAULT_HEARTBEAT_TIMEOUT)
    assert module.vip is not None and module.vip.addresses == ("198.18.0.100",)
    assert module.rfs is not None and module.rfs.replicated[0].read_only
    assert module.rfs.replicated[0].notreplicated[0].path == "AppTmpDir"
    assert module.user is not None and module.user.nicestoptimeout == 300.0
    assert module.errd is not None and module.errd.procs[0].name == "postgres"
    assert module.check.splitbrain is not None and module.check.splitbrain.witnesses == ("198.18.0.1",)
    assert module.failover.handle_time == 15.0 and module.failover.period == 5.0
    isolated = module.failover.rules[1]
    assert isolated.action == "wait"
    assert isolated.condition == And(
        (Comparison("heartbeat.default", "==", "down"), Comparison("splitbrain.uptodate", "==", "down"))
    )
    assert sorted(w.message.split("'")[1] for w in warnings) == ["acl", "arpreroute"]


def test_farm_template_loads(files: Path) -> None:
    module, _ = load_module(files / "farm.xml", env={})
    assert module.mode == "farm"
    assert module.farm is not None and module.farm.lans[0].name == "default"
    assert module.vip is not None
    interface = module.vip.interfaces[0]
    assert (interface.kind, interface.vmac_type, interface.addresses[0].where) == (
        "virtual",
        "vmac_directed",
        "alias",
    )
    group = module.vip.loadbalancing[0]
    assert [(h.name, h.power) for h in group.hosts] == [("node1", 1), ("node2", 2)]
    assert (group.rules[0].virtual_addr, group.rules[0].port, group.rules[0].filter) == ("*", 9010, "on_addr")
    assert module.check.tcp[0].when == "both"  # a farm checker runs on every node by default


def test_templates_fit_the_cluster(files: Path) -> None:
    cluster = load_cluster(files / "cluster.xml")
    assert cluster.port == 4800
    assert cluster.node_names == ("node1", "node2")
    assert [w.message.split("'")[1] for w in cluster.warnings] == ["framework"]
    for path in (files / "mirror", files / "farm.xml"):
        assert validate_module_against_cluster(load_module(path, env={}).config, cluster) == []


def test_check_file_tells_cluster_from_module(files: Path) -> None:
    assert [w.line for w in check_file(files / "cluster.xml")] == [4]
    assert {w.line for w in check_file(files / "mirror", env={})} == {11, 23}


def test_safekit_values_written_in_the_file_are_kept() -> None:
    text = MIRROR.replace("<heart>", '<heart pulse="700" timeout="30000">')
    module, _ = parse_module(text, "userconfig.xml", env={})
    assert module.heart is not None
    assert (module.heart.heartbeats[0].pulse, module.heart.heartbeats[0].timeout) == (0.7, 30.0)
