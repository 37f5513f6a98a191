"""GET /modules/AM/monitoring and /modules/AM/history: the console's monitoring view and charts."""

from __future__ import annotations

import json

from api_env import HISTORY_START, MONITORING, Env


def test_monitoring_shows_the_module_figures(env: Env) -> None:
    r = env.client.get("/api/v1/modules/web/monitoring", headers=env.headers(env.monitor))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["node"] == "n1"
    assert body["module"] == "web"
    assert body["heartbeats"] == MONITORING["heartbeats"]
    assert body["replication"]["resync"]["remaining"] == 12.0


def test_monitoring_of_an_unknown_module_or_node_is_404(env: Env) -> None:
    h = env.headers(env.monitor)
    assert env.client.get("/api/v1/modules/nope/monitoring", headers=h).status_code == 404
    assert env.client.get("/api/v1/modules/web/monitoring?node=n9", headers=h).status_code == 404
    env.ctx.monitor = None  # a daemon without metrics: nothing to show, said so
    r = env.client.get("/api/v1/modules/web/monitoring", headers=h)
    assert r.status_code == 404
    assert "not running" in r.json()["error"]


def test_history_since_and_step(env: Env) -> None:
    h = env.headers(env.monitor)
    r = env.client.get("/api/v1/modules/web/history", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == 10.0
    assert body["fields"][0] == "state"
    assert len(body["samples"]) == 30
    throughput = body["fields"].index("throughput") + 1
    assert body["samples"][0][throughput] == 2.5e6
    since = HISTORY_START + 200
    later = env.client.get(f"/api/v1/modules/web/history?since={since}", headers=h).json()
    assert [s[0] for s in later["samples"]] == [HISTORY_START + 10 * i for i in range(21, 30)]
    minutes = env.client.get("/api/v1/modules/web/history?step=60", headers=h).json()
    assert len(minutes["samples"]) == 5  # five minutes, one row each


def test_history_refuses_bad_numbers(env: Env) -> None:
    h = env.headers(env.monitor)
    for query in ("since=yesterday", "step=-1", "step=1e9", "since=nan", "step=inf"):
        r = env.client.get(f"/api/v1/modules/web/history?{query}", headers=h)
        assert r.status_code == 400, query


def test_no_history_yet_is_404(env: Env) -> None:
    env.node.states["db"] = "STOP"
    r = env.client.get("/api/v1/modules/db/history", headers=env.headers(env.monitor))
    assert r.status_code == 404
    assert "no history" in r.json()["error"]


def test_failover_reports_from_the_module_journal(env: Env) -> None:
    journal = env.paths.module_journal("web")
    journal.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {
            "t": 100.0,
            "kind": "transition",
            "from": "SECOND (Ready)",
            "to": "WAIT (Transient)",
            "reason": "peer lost",
        },
        {"t": 101.0, "kind": "step", "name": "AcquireVip", "duration": 0.05, "ok": True},
        {"t": 101.1, "kind": "script", "name": "start_prim", "duration": 0.4, "outcome": "ok"},
        {
            "t": 101.6,
            "kind": "transition",
            "from": "WAIT (Transient)",
            "to": "ALONE (Ready)",
            "reason": "witness",
        },
    ]
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    h = env.headers(env.monitor)
    r = env.client.get("/api/v1/modules/web/report", headers=h)
    assert r.status_code == 200, r.text
    (episode,) = r.json()["episodes"]
    assert episode["failover"] is True
    assert episode["took"] == 1.6
    assert [e["name"] for e in episode["entries"]][1:3] == ["AcquireVip", "start_prim"]
    assert env.client.get("/api/v1/modules/web/report?last=0", headers=h).status_code == 400
    assert env.client.get("/api/v1/modules/nope/report", headers=h).status_code == 404
