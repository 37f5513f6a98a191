"""Every endpoint refuses a missing or invalid credential and an insufficient role; sessions need
their CSRF token; logins are rate limited; commands are audited."""

from __future__ import annotations

from typing import Any

import pytest
from api_env import GOOD_XML, PASSWORD, Env

from safekit.api import openapi
from safekit.api.auth import ClusterTokens, make_cluster_token
from safekit.membership import clusterkey

PUBLIC = {("/api/v1/session", "post")}
BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/modules/{module}/commands": {"command": "start"},
    "/api/v1/modules/{module}/config": {"xml": GOOD_XML, "nodes": "local"},
    "/api/v1/config/validate": {"xml": GOOD_XML},
    "/api/v1/control": {"cmd": "stop", "module": "web"},
}


def _operations() -> list[tuple[str, str, str]]:
    """(path, method, role) of every operation of the published document."""
    doc = openapi.document("test")
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if (path, method) in PUBLIC:
                continue
            role = "admin" if op["description"].startswith("Role: admin") else "monitor"
            ops.append((path, method, role))
    return ops


OPERATIONS = _operations()


def _call(env: Env, path: str, method: str, headers: dict[str, str]) -> Any:
    url = path.replace("{module}", "web")
    body = BODIES.get(path)
    if method == "get" and path.endswith("/events"):
        url += ""  # SSE: refusals come before the stream starts
    return env.client.request(method.upper(), url, json=body, headers=headers)


def test_the_published_document_lists_every_route(env: Env) -> None:
    doc = env.client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    routes = {(r.path, m.lower()) for r in env.client.app.app.routes for m in r.methods or () if m != "HEAD"}  # type: ignore[attr-defined]
    api_routes = {(p, m) for p, m in routes if p.startswith("/api/v1/") and not p.endswith("openapi.json")}
    documented = {(p, m) for p, ms in doc["paths"].items() for m in ms}
    assert api_routes == documented


@pytest.mark.parametrize(("path", "method", "role"), OPERATIONS)
def test_refuses_missing_credentials(env: Env, path: str, method: str, role: str) -> None:
    r = _call(env, path, method, {})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("path", "method", "role"), OPERATIONS)
@pytest.mark.parametrize(
    "token",
    ["nonsense", "skt_000000000000_wrong", "skc1.bm9kZQ.1.00.00", "", "Basic YWxpY2U6cHc="],
)
def test_refuses_invalid_credentials(env: Env, path: str, method: str, role: str, token: str) -> None:
    headers = {"Authorization": token if token.startswith("Basic") else f"Bearer {token}"}
    r = _call(env, path, method, headers)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(("path", "method", "role"), [op for op in OPERATIONS if op[2] == "admin"])
def test_refuses_a_monitor_where_admin_is_needed(env: Env, path: str, method: str, role: str) -> None:
    r = _call(env, path, method, env.headers(env.monitor))
    assert r.status_code == 403, r.text
    assert "admin" in r.json()["error"]


def test_a_monitor_reads_but_cannot_command_through_control(env: Env) -> None:
    h = env.headers(env.monitor)
    assert env.client.get("/api/v1/modules/web", headers=h).json()["state"] == "PRIM"
    assert env.client.post("/api/v1/control", json={"cmd": "state"}, headers=h).status_code == 200
    r = env.client.post("/api/v1/control", json={"cmd": "stop", "module": "web"}, headers=h)
    assert r.status_code == 403
    assert not any(q.get("cmd") == "stop" for q in env.node.requests)
    assert env.audit()[-1]["outcome"].startswith("refused")


def test_an_expired_or_revoked_token_is_refused(env: Env) -> None:
    token = env.ctx.store.create_token(env.ctx.store.check_token(env.admin).role, "short", days=-1)  # type: ignore[union-attr]
    assert env.client.get("/api/v1/node", headers=env.headers(token)).status_code == 401
    ident = env.monitor.split("_")[1]
    assert env.client.get("/api/v1/node", headers=env.headers(env.monitor)).status_code == 200
    env.ctx.store.revoke_token(ident)
    assert env.client.get("/api/v1/node", headers=env.headers(env.monitor)).status_code == 401


def test_cluster_tokens_are_signed_fresh_and_single_use(env: Env) -> None:
    token = make_cluster_token(env.key, "root@n2")
    r = env.client.get("/api/v1/node", headers=env.headers(token))
    assert r.status_code == 200 and r.json()["user"] == "root@n2"
    assert env.client.get("/api/v1/node", headers=env.headers(token)).status_code == 401  # replay
    other = make_cluster_token(clusterkey.generate_key(), "root@evil")
    assert env.client.get("/api/v1/node", headers=env.headers(other)).status_code == 401
    old = make_cluster_token(env.key, "root@n2", now=1_000_000)
    assert env.client.get("/api/v1/node", headers=env.headers(old)).status_code == 401
    checker = ClusterTokens(env.key)
    assert checker.check(make_cluster_token(env.key, "x"), now=None) is not None


def test_a_command_runs_through_the_node_handler_and_is_audited(env: Env) -> None:
    r = env.client.post(
        "/api/v1/modules/web/commands", json={"command": "swap"}, headers=env.headers(env.admin)
    )
    assert r.status_code == 200, r.text
    assert {"cmd": "swap", "module": "web"} in env.node.requests
    entry = env.audit()[-1]
    assert entry["who"] == "token:ci-admin" and entry["what"] == "swap" and entry["module"] == "web"
    assert entry["from"] == "testclient" and entry["outcome"] == "ok"
    again = env.client.post(
        "/api/v1/modules/web/commands", json={"command": "swap"}, headers=env.headers(env.admin)
    )
    assert again.status_code == 409 and "primary" in again.json()["error"]
    assert env.audit()[-1]["outcome"].startswith("refused")


def test_switches_need_on_or_off(env: Env) -> None:
    h = env.headers(env.admin)
    bad = env.client.post("/api/v1/modules/web/commands", json={"command": "errd"}, headers=h)
    assert bad.status_code == 400
    ok = env.client.post("/api/v1/modules/web/commands", json={"command": "errd", "value": "off"}, headers=h)
    assert ok.status_code == 200 and ok.json()["controls"] == {"errd": "off"}


def test_unknown_module_is_404(env: Env) -> None:
    h = env.headers(env.admin)
    assert env.client.get("/api/v1/modules/nope", headers=h).status_code == 404
    assert (
        env.client.post("/api/v1/modules/nope/commands", json={"command": "stop"}, headers=h).status_code
        == 404
    )
    assert env.client.get("/api/v1/modules/..%2F..%2Fetc/log", headers=h).status_code == 404


def _login(env: Env, user: str = "alice", password: str = PASSWORD) -> Any:
    return env.client.post("/api/v1/session", json={"user": user, "password": password})


def test_session_login_sets_a_strict_httponly_cookie_and_needs_csrf(env: Env) -> None:
    r = _login(env)
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    csrf = r.json()["csrf"]
    assert env.client.get("/api/v1/cluster").status_code == 200  # reading needs no CSRF token
    body = {"command": "stop"}
    assert env.client.post("/api/v1/modules/web/commands", json=body).status_code == 403
    wrong = {"X-CSRF-Token": "x" * len(csrf)}
    assert env.client.post("/api/v1/modules/web/commands", json=body, headers=wrong).status_code == 403
    cross = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    assert env.client.post("/api/v1/modules/web/commands", json=body, headers=cross).status_code == 403
    ok = env.client.post("/api/v1/modules/web/commands", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert env.audit()[-1]["who"] == "session:alice"
    assert env.client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert env.client.get("/api/v1/cluster").status_code == 401


def test_a_monitor_session_cannot_command(env: Env) -> None:
    csrf = _login(env, "bob").json()["csrf"]
    r = env.client.post(
        "/api/v1/modules/web/commands", json={"command": "stop"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 403


def test_logins_are_rate_limited_and_audited(env: Env) -> None:
    for _ in range(5):
        assert _login(env, password="wrong password").status_code == 401
    limited = _login(env)  # even the right password waits
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    outcomes = [e["outcome"] for e in env.audit() if e["what"] == "login"]
    assert outcomes == ["refused"] * 5 + ["rate limited"]


def test_unknown_user_and_wrong_password_look_the_same(env: Env) -> None:
    a = _login(env, "nobody", "whatever1")
    b = _login(env, "alice", "whatever1")
    assert a.status_code == b.status_code == 401 and a.json() == b.json()


def test_validation_reports_lines(env: Env) -> None:
    h = env.headers(env.monitor)
    bad = GOOD_XML.replace('<heartbeat name="default"/>', '<heartbeat name="default" pulse="fast"/>')
    r = env.client.post("/api/v1/config/validate", json={"xml": bad}, headers=h).json()
    assert r["valid"] is False and r["errors"][0]["line"] == 4 and "pulse" in r["errors"][0]["message"]
    assert env.client.post("/api/v1/config/validate", json={"xml": GOOD_XML}, headers=h).json()["valid"]
    broken = env.client.post("/api/v1/config/validate", json={"xml": "<safe>"}, headers=h).json()
    assert broken["valid"] is False and broken["errors"]


def test_apply_config_needs_a_stopped_module_and_writes_the_file(env: Env) -> None:
    h = env.headers(env.admin)
    new = GOOD_XML.replace("<heart>", '<heart pulse="300ms">')
    refused = env.client.put("/api/v1/modules/web/config", json={"xml": new, "nodes": "local"}, headers=h)
    assert refused.status_code == 409 and "stopped" in refused.json()["error"]
    invalid = env.client.put("/api/v1/modules/web/config", json={"xml": "<safe><x/></safe>"}, headers=h)
    assert invalid.status_code == 422 and invalid.json()["errors"]
    env.node.states["web"] = "STOP"
    r = env.client.put("/api/v1/modules/web/config", json={"xml": new, "nodes": "local"}, headers=h)
    assert r.status_code == 200 and r.json()["nodes"]["n1"]["ok"], r.text
    path = env.paths.module_dir("web") / "conf" / "userconfig.xml"
    assert 'pulse="300ms"' in path.read_text()
    assert {"cmd": "config", "module": "web"} in env.node.requests
    got = env.client.get("/api/v1/modules/web/config", headers=h).json()
    assert got["xml"] == new and got["differs"] is True


def test_logs_of_each_kind(env: Env) -> None:
    h = env.headers(env.monitor)
    env.paths.user_log("web").parent.mkdir(parents=True, exist_ok=True)
    env.paths.user_log("web").write_text("".join(f"script {i}\n" for i in range(500)))
    assert env.client.get("/api/v1/modules/web/log", headers=h).json()["lines"] == ["line 1", "line 2"]
    script = env.client.get("/api/v1/modules/web/log?kind=script&lines=3", headers=h).json()["lines"]
    assert script == ["script 497", "script 498", "script 499"]
    assert env.client.get("/api/v1/modules/web/log?kind=daemon", headers=h).json()["lines"] == []
    assert env.client.get("/api/v1/modules/web/log?kind=secret", headers=h).status_code == 400
    assert env.client.get("/api/v1/modules/web/log?node=other", headers=h).status_code == 404


def test_security_headers_and_console(env: Env) -> None:
    page = env.client.get("/")
    assert page.status_code == 200 and "<title>safekit console</title>" in page.text
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    # the console asks nothing of another origin (issue 19): every fetch kind is 'none' or 'self'
    assert csp["default-src"] == "'none'"
    for kind in ("script-src", "style-src", "connect-src", "form-action"):
        assert csp[kind] == "'self'", kind
    assert csp["img-src"] == "'self' data:"
    assert page.headers["x-frame-options"] == "DENY"
    assert env.client.get("/console/console.js").headers["content-type"].startswith("text/javascript")
    assert env.client.get("/console/../auth.py").status_code == 404
    api = env.client.get("/api/v1/node", headers=env.headers(env.monitor))
    assert api.headers["cache-control"] == "no-store"


def test_bodies_are_checked(env: Env) -> None:
    h = env.headers(env.admin)
    url = "/api/v1/modules/web/commands"
    assert env.client.post(url, content=b"{}", headers=h).status_code == 415
    assert (
        env.client.post(url, content=b"[1]", headers={**h, "Content-Type": "application/json"}).status_code
        == 400
    )
    assert env.client.post(url, json={"command": "rm -rf"}, headers=h).status_code == 400
    assert env.client.post(url, json={"command": "stop", "x": 1}, headers=h).status_code == 400
    big = {"xml": "x" * (1024 * 1024 + 1)}
    assert env.client.post("/api/v1/config/validate", json=big, headers=h).status_code == 413
