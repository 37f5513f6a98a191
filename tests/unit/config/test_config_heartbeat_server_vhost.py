"""SafeKit's `<heartbeat><server addr>` and `<vhost>` (ADR 0055): the first is accepted with a
warning and checked against cluster.xml, the second refused with its reason and what to do."""

from __future__ import annotations

import pytest

from safekit.config import ConfigError, parse_cluster, parse_module, validate_module_against_cluster

CLUSTER = """<cluster><lans><lan name="default">
  <node name="n1" addr="198.18.0.11"/><node name="n2" addr="198.18.0.12"/>
</lan></lans></cluster>
"""


def module(heartbeat: str, extra: str = "") -> str:
    return f"""<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart>
    {heartbeat}
  </heart>
  {extra}
</service>
</safe>
"""


SERVERS = """<heartbeat name="default">
      <server addr="198.18.0.11"/>
      <server addr="{second}"/>
    </heartbeat>"""


def test_servers_of_the_lan_are_accepted_with_a_warning_that_names_cluster_xml() -> None:
    config, warnings = parse_module(module(SERVERS.format(second="198.18.0.12")), env={})
    [heartbeat] = config.heart.heartbeats if config.heart else ()
    assert [addr for addr, _ in heartbeat.servers] == ["198.18.0.11", "198.18.0.12"]
    [warning] = warnings
    assert (warning.line, warning.element) == (6, "server")
    assert "not used" in warning.message
    assert '<lan name="default"> in cluster.xml' in warning.message
    assert validate_module_against_cluster(config, parse_cluster(CLUSTER)) == []


def test_a_server_that_is_not_a_node_of_the_lan_is_refused_against_cluster_xml() -> None:
    config, _ = parse_module(module(SERVERS.format(second="198.18.0.99")), env={})
    [error] = validate_module_against_cluster(config, parse_cluster(CLUSTER))
    assert (error.line, error.element) == (7, "server")
    assert error.message.startswith(
        "198.18.0.99 is not the address of a node on LAN 'default' of cluster.xml "
        "(n1 198.18.0.11, n2 198.18.0.12)"
    )


def test_a_server_needs_an_ipv4_addr() -> None:
    with pytest.raises(ConfigError, match=r"<server>: .*'addr'"):
        parse_module(module('<heartbeat name="default"><server/></heartbeat>'), env={})


def test_vhost_is_refused_with_its_reason_and_the_alternative() -> None:
    vhost = '<vhost><virtualhostname name="vhost1" envfile="vhostenv" when="prim"/></vhost>'
    with pytest.raises(ConfigError) as raised:
        parse_module(module('<heartbeat name="default"/>', vhost), env={})
    [error] = raised.value.errors
    assert (error.line, error.element) == (7, "vhost")
    assert error.message.startswith("SafeKit's virtual hostname is not supported")
    assert "unshare --uts" in error.message
    assert "ADR 0055" in error.message
