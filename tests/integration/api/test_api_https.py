"""The API on real lab hosts, over HTTPS from the controller: TLS verified against the cluster CA,
tokens and roles, the cluster view through the peers' APIs, `safekit -H`, the audit log, and
safekitd's memory with the API serving."""

from __future__ import annotations

import json
import ssl
import urllib.request

import pytest
from conftest import MODULE, ApiLab, console_sessions, rss_kib
from cryptography.hazmat.primitives import serialization

from safekit.api import certs
from safekit.membership import clusterkey


def test_tls_is_verified_against_the_cluster_ca(api_lab: ApiLab) -> None:
    status, info = api_lab.call("node1", "GET", "/api/v1/node", api_lab.monitor_token)
    assert status == 200 and info["node"] == "node1" and info["role"] == "monitor"
    # Both nodes derive the same CA from the cluster key: node2's certificate verifies with node1's CA.
    assert api_lab.call("node2", "GET", "/api/v1/node", api_lab.admin_token)[0] == 401  # token of node1 only
    # A CA of another cluster key does not verify these nodes.
    other = certs.ca_certificate(clusterkey.generate_key()).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(urllib.error.URLError) as excinfo:
        urllib.request.urlopen(
            api_lab.url("node1", "/api/v1/openapi.json"),
            timeout=5,
            context=ssl.create_default_context(cadata=other),
        )
    assert isinstance(excinfo.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_on_9453_is_not_served(api_lab: ApiLab) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://{api_lab.address('node1')}:9453/api/v1/node", timeout=5)


def test_credentials_and_roles_over_https(api_lab: ApiLab) -> None:
    assert api_lab.call("node1", "GET", "/api/v1/modules", None)[0] == 401
    assert api_lab.call("node1", "GET", "/api/v1/modules", "skt_0000_bad")[0] == 401
    body = {"command": "swap"}
    status, answer = api_lab.call(
        "node1", "POST", f"/api/v1/modules/{MODULE}/commands", api_lab.monitor_token, body
    )
    assert status == 403, answer
    assert api_lab.cluster.state("node1", MODULE)["state"] == "PRIM"


def test_cluster_view_goes_through_the_peer_api(api_lab: ApiLab) -> None:
    status, view = api_lab.call("node1", "GET", "/api/v1/cluster", api_lab.monitor_token)
    assert status == 200
    states = {(n["name"], m["name"]): m["state"] for n in view["nodes"] for m in n["modules"]}
    assert states[("node1", MODULE)] == "PRIM" and states[("node2", MODULE)] == "SECOND"
    assert states[("node1", "web2")] == "STOP"
    log = api_lab.call(
        "node1", "GET", f"/api/v1/modules/{MODULE}/log?node=node2&lines=5", api_lab.monitor_token
    )
    assert log[0] == 200 and log[1]["node"] == "node2" and log[1]["lines"]


def test_safekit_dash_h_runs_on_every_node(api_lab: ApiLab) -> None:
    out = api_lab.cluster.safekit("node1", "-H", "*", "state", "-m", MODULE, "--json").stdout
    assert "node1" in out and "node2" in out
    blocks = [json.loads(b[b.index("{") :]) for b in out.split("-" * 20 + " ")[1:] if "{" in b]
    assert [b["modules"][0]["state"] for b in blocks] == ["PRIM", "SECOND"]
    code = api_lab.cluster.safekit("node1", "-H", "node2", "state", "-m", MODULE, "-lq", check=False)
    assert code.returncode == 4  # SafeKit's code for SECOND, from node2
    off = api_lab.cluster.safekit("node1", "-H", "node2", "checker", "off", "-m", MODULE)
    assert "off" in off.stdout
    api_lab.cluster.safekit("node1", "-H", "node2", "checker", "on", "-m", MODULE)
    audit = api_lab.lab.exec("node2", ["cat", "/var/log/safekit/audit.log"]).stdout.splitlines()
    entries = [json.loads(line) for line in audit]
    checker = [e for e in entries if e["what"].startswith("control checker")]
    assert [e["what"] for e in checker] == ["control checker off", "control checker on"]
    assert checker[0]["who"] == "cluster:root@node1" and checker[0]["from"] == api_lab.address("node1")


def test_safekitd_memory_with_the_api(api_lab: ApiLab) -> None:
    # Exercise the API first (console-like traffic: logins too, whatever ran before), then measure:
    # budget 80 MiB with two modules.
    console_sessions(api_lab, "node1", 8)
    for _ in range(20):
        api_lab.call("node1", "GET", "/api/v1/cluster", api_lab.monitor_token)
    for node in api_lab.cluster.nodes:
        rss_mib = rss_kib(api_lab, node) / 1024
        print(f"safekitd RSS on {node}: {rss_mib:.1f} MiB")
        assert rss_mib <= 80, f"{node}: safekitd uses {rss_mib:.1f} MiB (budget 80)"
