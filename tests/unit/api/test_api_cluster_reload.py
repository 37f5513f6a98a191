"""The console's cluster apply reloads safekitd live (ADR 0043): every node is asked first whether it
would take the new cluster.xml live (a dry run of `cluster_reload` on the new text); the file is
written on every node, then reloaded on every node only when all accept, and each node's result
says what was applied or why not. `POST /api/v1/cluster/reload` asks each node to take its file."""

from __future__ import annotations

import ssl

from api_env import Env
from test_api_forms import NEW_CLUSTER

from safekit.api.client import ApiClient, NodeAddress
from safekit.api.follow import derive, plan_follow
from safekit.api.server import follow_peers
from safekit.config.cluster_parser import parse_cluster


def reload_requests(env: Env) -> list[dict[str, object]]:
    return [r for r in env.node.requests if r.get("cmd") == "cluster_reload"]


def test_an_accepted_cluster_is_written_then_reloaded_live(env: Env) -> None:
    response = env.client.put(
        "/api/v1/cluster/config", json={"form": NEW_CLUSTER}, headers=env.headers(env.admin)
    )
    assert response.status_code == 200, response.text
    result = response.json()["nodes"]["n1"]
    asked = reload_requests(env)
    # first a dry run on the rendered text (nothing written yet), then the reload of the written file
    assert asked[0]["dry_run"] is True and "second" in str(asked[0]["xml"])
    assert asked[1] == {"cmd": "cluster_reload"}
    assert result["reload"]["applied"] is True
    assert result["restart_needed"] is False  # safekitd runs the file now
    assert "applied live: heartbeat network second added" in result["message"]
    assert parse_cluster(env.paths.cluster_xml.read_bytes()).lan("second") is not None
    entry = [e for e in env.audit() if e["what"] == "cluster config apply (all)"][-1]
    assert entry["outcome"] == "ok" and entry["nodes"]["n1"]["reload"]["applied"] is True


def test_a_refused_reload_writes_the_file_and_says_why(env: Env) -> None:
    env.node.reload_refusal = "heartbeat network default carries the replication of module web, which runs"
    response = env.client.put(
        "/api/v1/cluster/config", json={"form": NEW_CLUSTER}, headers=env.headers(env.admin)
    )
    assert response.status_code == 200, response.text
    result = response.json()["nodes"]["n1"]
    assert [r.get("dry_run") for r in reload_requests(env)] == [True]  # never reloaded for real
    assert result["reload"]["applied"] is False
    assert "carries the replication of module web" in result["message"]
    assert result["restart_needed"] is True
    assert parse_cluster(env.paths.cluster_xml.read_bytes()).lan("second") is not None


def test_a_dry_run_reports_what_each_node_would_do_and_writes_nothing(env: Env) -> None:
    before = env.paths.cluster_xml.read_text()
    response = env.client.put(
        "/api/v1/cluster/config", json={"form": NEW_CLUSTER, "dry_run": True}, headers=env.headers(env.admin)
    )
    assert response.status_code == 200
    live = response.json()["nodes"]["n1"]["live"]
    assert live["ok"] is True and live["changes"] == ["heartbeat network second added"]
    assert env.paths.cluster_xml.read_text() == before


def test_reload_false_only_writes(env: Env) -> None:
    response = env.client.put(
        "/api/v1/cluster/config", json={"form": NEW_CLUSTER, "reload": False}, headers=env.headers(env.admin)
    )
    assert response.status_code == 200
    assert reload_requests(env) == []
    assert response.json()["nodes"]["n1"]["restart_needed"] is True


def test_the_reload_endpoint_is_for_admins_and_answers_per_node(env: Env) -> None:
    refused = env.client.post("/api/v1/cluster/reload", json={}, headers=env.headers(env.monitor))
    assert refused.status_code == 403
    assert reload_requests(env) == []
    response = env.client.post(
        "/api/v1/cluster/reload", json={"dry_run": True}, headers=env.headers(env.admin)
    )
    assert response.status_code == 200
    assert (
        response.json()["nodes"]["n1"]["message"]
        == "n1: would be applied live: heartbeat network second added"
    )
    env.node.reload_refusal = "this node (n1) is not in the new cluster.xml"
    response = env.client.post("/api/v1/cluster/reload", json={}, headers=env.headers(env.admin))
    assert response.json()["ok"] is False
    assert "not in the new cluster.xml" in response.json()["nodes"]["n1"]["error"]
    outcomes = [e["outcome"] for e in env.audit() if e["what"].startswith("cluster reload")]
    assert outcomes[0] == "ok" and "not in the new cluster.xml" in outcomes[1]
    assert "not in the new cluster.xml" in str(env.audit()[-1]["nodes"])


def test_the_api_calls_its_peers_at_their_new_addresses_after_a_reload() -> None:
    """server.follow_peers: the addresses the peer had first (it may not have reloaded yet), new
    ones after; a node added to the file becomes a peer, one removed is dropped."""
    token = lambda: "t"  # noqa: E731
    context = ssl.create_default_context()
    old = parse_cluster(
        "<cluster><lans>"
        '<lan name="default"><node name="n1" addr="198.18.0.1"/><node name="n2" addr="198.18.0.2"/>'
        '<node name="n4" addr="198.18.0.4"/></lan>'
        '<lan name="second"><node name="n1" addr="198.18.2.1"/><node name="n2" addr="198.18.2.2"/></lan>'
        "</lans></cluster>"
    )
    new = parse_cluster(
        "<cluster><lans>"
        '<lan name="default"><node name="n1" addr="198.18.0.1"/><node name="n2" addr="198.18.0.2"/>'
        '<node name="n3" addr="198.18.0.3"/></lan>'
        '<lan name="second"><node name="n1" addr="198.18.2.101"/><node name="n2" addr="198.18.2.102"/></lan>'
        "</lans></cluster>"
    )
    peers = {
        "n2": ApiClient(NodeAddress("n2", ("198.18.0.2", "198.18.2.2")), context, token),
        "n4": ApiClient(NodeAddress("n4", ("198.18.0.4",)), context, token),
    }
    plan = plan_follow(derive(old, "n1"), derive(new, "n1"))
    follow_peers(peers, plan, context=context, token=token, port=9453)
    assert peers["n2"].node.addresses == ("198.18.0.2", "198.18.2.102")
    assert sorted(peers) == ["n2", "n3"] and peers["n3"].node.addresses == ("198.18.0.3",)


def test_safekit_dash_h_reaches_the_reload_through_the_control_endpoint(env: Env) -> None:
    """`safekit -H "*" cluster reload` sends {"cmd": "cluster_reload"} to each node's
    /api/v1/control: a change, so admin only, and audited."""
    body = {"cmd": "cluster_reload", "dry_run": True}
    refused = env.client.post("/api/v1/control", json=body, headers=env.headers(env.monitor))
    assert refused.status_code == 403
    assert reload_requests(env) == []
    answer = env.client.post("/api/v1/control", json=body, headers=env.headers(env.admin))
    assert answer.status_code == 200 and answer.json()["ok"] is True
    assert reload_requests(env) == [{"cmd": "cluster_reload", "dry_run": True}]
    assert any(e["what"] == "control cluster_reload" for e in env.audit())
    bad = env.client.post(
        "/api/v1/control", json={**body, "xml": "<cluster/>"}, headers=env.headers(env.admin)
    )
    assert bad.status_code == 400  # the text to judge is the console's apply's, not -H's
