"""The forms over the API: who may read, render, apply and install; the cluster key never in an
answer or the audit log; apply and install write what the form says, where safekitd reads it."""

from __future__ import annotations

import base64
import json
from typing import Any

from api_env import Env

from safekit.config.cluster_parser import parse_cluster
from safekit.config.module_parser import parse_module
from safekit.membership import clusterkey

NEW_CLUSTER: dict[str, Any] = {
    "lans": [
        {
            "name": "default",
            "nodes": [{"name": "n1", "addr": "198.18.0.1"}, {"name": "n2", "addr": "198.18.0.2"}],
        },
        {
            "name": "second",
            "nodes": [{"name": "n1", "addr": "198.18.2.1"}, {"name": "n2", "addr": "198.18.2.2"}],
        },
    ]
}
MIRROR = {"template": "mirror", "values": {"virtual_ip": "198.18.0.210", "replicated_dir": "/srv/m"}}


def key_forms(key: bytes) -> list[str]:
    """The key as it could leak: raw base64 (the key file's body), hex, the file's text."""
    return [base64.b64encode(key).decode(), key.hex(), clusterkey.encode_key_file(key).strip()]


def assert_no_key(env: Env, text: str) -> None:
    for form in key_forms(env.key):
        assert form not in text


def test_cluster_form_read_without_the_key(env: Env) -> None:
    for token in (env.monitor, env.admin):
        response = env.client.get("/api/v1/cluster/config", headers=env.headers(token))
        assert response.status_code == 200
        data = response.json()
        assert data["form"]["lans"][0]["nodes"][1] == {"name": "n2", "addr": "198.18.0.2"}
        assert data["key_fingerprint"] == "fp-of-the-key"
        assert "key" not in json.dumps(data["form"])
        assert_no_key(env, response.text)


def test_render_gives_field_errors_to_a_monitor_too(env: Env) -> None:
    bad = json.loads(json.dumps(NEW_CLUSTER))
    bad["lans"][1]["nodes"][0]["addr"] = "198.18.2.x"
    response = env.client.post("/api/v1/forms/cluster", json=bad, headers=env.headers(env.monitor))
    assert response.status_code == 200
    data = response.json()
    assert data["valid"] is False
    assert [e["field"] for e in data["errors"]] == ["lans.1.nodes.0.addr"]
    good = env.client.post("/api/v1/forms/cluster", json=NEW_CLUSTER, headers=env.headers(env.monitor)).json()
    assert good["valid"] and parse_cluster(good["xml"]).lan("second") is not None


def test_only_an_admin_applies_the_cluster(env: Env) -> None:
    before = env.paths.cluster_xml.read_text()
    refused = env.client.put(
        "/api/v1/cluster/config", json={"form": NEW_CLUSTER}, headers=env.headers(env.monitor)
    )
    assert refused.status_code == 403
    assert env.paths.cluster_xml.read_text() == before
    applied = env.client.put(
        "/api/v1/cluster/config", json={"form": NEW_CLUSTER}, headers=env.headers(env.admin)
    )
    assert applied.status_code == 200, applied.text
    result = applied.json()["nodes"]["n1"]
    assert result["ok"] and result["restart_needed"] is False  # reloaded live (test_api_cluster_reload.py)
    assert parse_cluster(env.paths.cluster_xml.read_bytes()).lan("second") is not None
    assert_no_key(env, applied.text)
    entries = [e for e in env.audit() if e["what"].startswith("cluster config apply")]
    assert [e["outcome"] for e in entries] == ["ok"]
    assert_no_key(env, env.paths.log.joinpath("audit.log").read_text())
    assert clusterkey.decode_key_file(env.paths.cluster_key.read_text()) == env.key  # untouched


def test_an_invalid_cluster_is_not_applied(env: Env) -> None:
    before = env.paths.cluster_xml.read_text()
    bad = {"lans": [{"name": "default", "nodes": [{"name": "n1", "addr": "300.1.1.1"}]}]}
    response = env.client.put("/api/v1/cluster/config", json={"form": bad}, headers=env.headers(env.admin))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "lans.0.nodes.0.addr"
    # valid, but the module web's heartbeat LAN would be gone, and this node is not in it
    other = {
        "lans": [
            {
                "name": "other",
                "nodes": [{"name": "x1", "addr": "198.18.9.1"}, {"name": "x2", "addr": "198.18.9.2"}],
            }
        ]
    }
    response = env.client.put("/api/v1/cluster/config", json={"form": other}, headers=env.headers(env.admin))
    assert response.status_code == 409
    assert "n1" in response.json()["error"] and "module web" in response.json()["error"]
    assert env.paths.cluster_xml.read_text() == before


def test_templates_listed(env: Env) -> None:
    data = env.client.get("/api/v1/templates", headers=env.headers(env.monitor)).json()
    mirror = next(t for t in data["templates"] if t["name"] == "mirror")
    assert any(v["key"] == "virtual_ip" and v["required"] for v in mirror["values"])


def test_render_a_module_against_the_cluster(env: Env) -> None:
    body = {"name": "app", "form": {"heartbeats": ["nolan"], "replicated": [{"dir": "/srv/a"}]}}
    data = env.client.post("/api/v1/forms/module", json=body, headers=env.headers(env.monitor)).json()
    assert [e["field"] for e in data["errors"]] == ["heartbeats.0"]
    assert "no LAN named 'nolan'" in data["errors"][0]["message"]
    body["form"]["heartbeats"] = ["default"]
    data = env.client.post("/api/v1/forms/module", json=body, headers=env.headers(env.monitor)).json()
    assert data["valid"], data["errors"]
    parse_module(data["xml"], "userconfig.xml", env={})


def test_install_a_module_from_the_template(env: Env) -> None:
    path = "/api/v1/modules/m1/install"
    assert env.client.post(path, json=MIRROR, headers=env.headers(env.monitor)).status_code == 403
    assert not env.paths.module_dir("m1").exists()
    response = env.client.post(path, json=MIRROR, headers=env.headers(env.admin))
    assert response.status_code == 200, response.text
    assert response.json()["nodes"]["n1"]["ok"]
    target = env.paths.module_dir("m1")
    installed = (target / "conf" / "userconfig.xml").read_text()
    assert installed == response.json()["xml"]
    assert (target / "bin" / "start_prim").stat().st_mode & 0o777 == 0o755
    assert {"cmd": "config", "module": "m1"} in env.node.requests
    assert env.node.states["m1"] == "STOP"
    assert not [p for p in env.paths.modules.iterdir() if p.name.startswith(".")]  # no staging left
    entry = [e for e in env.audit() if e["what"].startswith("module install")][-1]
    assert entry["module"] == "m1" and entry["outcome"] == "ok"
    # once started, it is not installed over
    env.node.states["m1"] = "PRIM"
    again = env.client.post(path, json=MIRROR, headers=env.headers(env.admin))
    assert again.status_code == 409 and "must be stopped" in again.json()["error"]


def test_an_invalid_module_is_not_installed(env: Env) -> None:
    bad = {"template": "mirror", "values": {"virtual_ip": "198.18.0"}}
    response = env.client.post("/api/v1/modules/m2/install", json=bad, headers=env.headers(env.admin))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "values.virtual_ip"
    assert not env.paths.module_dir("m2").exists()
