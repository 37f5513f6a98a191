"""A module's references to cluster.xml: heartbeat and farm LANs, defaultprim, load-balanced hosts."""

from __future__ import annotations

from safekit.config import parse_cluster, parse_module, validate_module_against_cluster

CLUSTER = """<cluster><lans>
  <lan name="default"><node name="n1" addr="10.0.0.1"/><node name="n2" addr="10.0.0.2"/></lan>
  <lan name="solo"><node name="n1" addr="10.1.0.1"/></lan>
</lans></cluster>"""

MIRROR = """<safe>
<service mode="mirror" defaultprim="%PRIM%">
  <heart>
    <heartbeat name="default"/>
    <heartbeat name="%SECOND_LAN%"/>
  </heart>
</service>
</safe>"""

FARM = """<safe>
<service mode="farm">
  <farm><lan name="backbone"/></farm>
  <vip><interface_list><interface><virtual_interface type="vmac_invisible">
    <virtual_addr addr="10.0.0.100"/></virtual_interface></interface></interface_list>
    <loadbalancing_list><group name="g"><cluster><host name="n1"/><host name="n9"/></cluster>
      <rule virtual_addr="10.0.0.100" port="80" proto="tcp" filter="on_port"/></group></loadbalancing_list>
  </vip>
</service>
</safe>"""


def test_mirror_that_fits_the_cluster_has_no_errors() -> None:
    cluster = parse_cluster(CLUSTER, "cluster.xml")
    module, _ = parse_module(MIRROR, "userconfig.xml", env={"PRIM": "n2", "SECOND_LAN": "default2"})
    errors = validate_module_against_cluster(module, cluster)
    assert [str(e) for e in errors] == [
        "userconfig.xml:5: <heartbeat>: no LAN named 'default2' in cluster.xml (LANs: default, solo)"
    ]


def test_heartbeat_lan_needs_two_nodes_and_defaultprim_a_known_node() -> None:
    cluster = parse_cluster(CLUSTER, "cluster.xml")
    module, _ = parse_module(MIRROR, "userconfig.xml", env={"PRIM": "n7", "SECOND_LAN": "solo"})
    messages = [str(e) for e in validate_module_against_cluster(module, cluster)]
    assert messages == [
        "userconfig.xml:2: <service>: attribute 'defaultprim': 'n7' is neither alone, lastprim nor a node of "
        "cluster.xml (nodes: n1, n2)",
        "userconfig.xml:5: <heartbeat>: LAN 'solo' of cluster.xml has 1 node(s); a mirror needs 2",
    ]


def test_farm_lans_and_hosts_must_exist() -> None:
    cluster = parse_cluster(CLUSTER, "cluster.xml")
    module, _ = parse_module(FARM, "userconfig.xml", env={})
    messages = [str(e) for e in validate_module_against_cluster(module, cluster)]
    assert "userconfig.xml:3: <lan>: no LAN named 'backbone' in cluster.xml (LANs: default, solo)" in messages
    assert any(m.startswith("userconfig.xml:6: <host>: 'n9' is not a node of cluster.xml") for m in messages)
    assert len(messages) == 2
