"""Shared by the API tests: a fake node (the control handler's answers) and the test environment."""

from __future__ import annotations

import functools
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from safekit.api import config_forms
from safekit.api.app import Api, ApiContext, create_app
from safekit.api.audit import AuditLog
from safekit.api.auth import ClusterTokens, CredentialStore, Role
from safekit.api.history import FILE_NAME, History, HistoryStore, fields_for, sample_of
from safekit.host.paths import Paths
from safekit.membership import clusterkey

GOOD_XML = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
</service>
</safe>
"""
CLUSTER_XML = """<cluster>
  <lans>
    <lan name="default">
      <node name="n1" addr="198.18.0.1"/>
      <node name="n2" addr="198.18.0.2"/>
    </lan>
  </lans>
</cluster>
"""
PASSWORD = "correct horse battery"
MONITORING: dict[str, Any] = {
    "heartbeats": [
        {"lan": "default", "peer": "n2", "up": True, "received": 9, "rtt": 0.0012, "rtt_last": 0.001}
    ],
    "witness": None,
    "replication": {
        "role": "primary",
        "link": "resync",
        "in_sync": False,
        "resync": {"mode": "checksum", "percent": 40.0, "remaining": 12.0},
        "throughput": 2.5e6,
        "in_flight_bytes": 4096,
        "in_flight_ops": 2,
        "journal_bytes": None,
    },
}
"""What Metrics.monitoring answers for the fake node's modules."""
HISTORY_START = 1_699_999_980.0  # on a minute boundary


@functools.cache
def _users_json() -> str:
    """alice (admin) and bob (monitor), hashed once for the whole run (scrypt is slow on purpose)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = CredentialStore(Path(tmp) / "users.json", Path(tmp) / "tokens.json")
        store.add_user("alice", PASSWORD, Role.ADMIN)
        store.add_user("bob", PASSWORD, Role.MONITOR)
        return store.users_path.read_text()


@dataclass
class FakeNode:
    """Answers like safekitd's Node.handle, and records what it was asked."""

    node_name: str | None = "n1"
    states: dict[str, str] = field(default_factory=lambda: {"web": "PRIM"})
    requests: list[dict[str, Any]] = field(default_factory=list)
    modules_dir: Path | None = None
    """Where `config` finds a newly installed module (loaded stopped, as safekitd does)."""
    cluster_sha256: str = "f" * 64
    cluster_xml: Path | None = None
    """Where `cluster_reload` reads the file it then runs (its sha256 becomes cluster_sha256)."""
    reload_refusal: str | None = None
    """Why `cluster_reload` refuses (None: it accepts)."""

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0911
        self.requests.append(request)
        cmd = request.get("cmd")
        module = request.get("module")
        if cmd == "cluster_reload":
            return self._reload(bool(request.get("dry_run")))
        if cmd == "cluster_confinfo":
            return {"ok": True, "cluster_sha256": self.cluster_sha256, "key_fingerprint": "fp-of-the-key"}
        new = self.modules_dir is not None and module not in self.states
        if cmd == "config" and new and (self.modules_dir / str(module) / "conf" / "userconfig.xml").is_file():  # type: ignore[operator]
            self.states[str(module)] = "STOP"
            return {"ok": True, "message": f"{module}: loaded"}
        if cmd == "module_list":
            return {"ok": True, "modules": [{"name": n, "loaded": "yes"} for n in self.states]}
        if cmd == "state":
            names = [module] if module else list(self.states)
            if module and module not in self.states:
                return {"ok": False, "error": f"no module {module!r} on this node"}
            mods = [self._status(n) for n in names]
            return {"ok": True, "node": self.node_name, "modules": mods}
        if module not in self.states:
            return {"ok": False, "error": f"no module {module!r} on this node"}
        if cmd == "log":
            return {"ok": True, "lines": ["line 1", "line 2"]}
        if cmd == "confinfo":
            return {"ok": True, "module": module, "loaded_sha256": "0" * 64}
        if cmd == "config":
            return {"ok": True, "message": f"{module}: configuration applied"}
        if cmd == "swap":
            if self.states[module] != "PRIM":
                return {"ok": False, "error": f"{module}: swap applies on the primary"}
            self.states[module] = "SECOND"
            return {"ok": True, "message": f"{module}: swapping"}
        if cmd in ("errd", "checker", "failover"):
            return {
                "ok": True,
                "message": f"{cmd} {request.get('value')}",
                "controls": {cmd: request.get("value")},
            }
        if cmd == "stop":
            self.states[module] = "STOP"
        return {"ok": True, "message": f"{module}: {cmd}"}

    def _reload(self, dry_run: bool) -> dict[str, Any]:
        """As Node.reload_cluster answers (daemon/node.py)."""
        changes = ["heartbeat network second added"]
        if self.reload_refusal is not None:
            return {
                "ok": False,
                "applied": False,
                "changes": changes,
                "refusals": [self.reload_refusal],
                "error": f"{self.node_name}: not applied live: {self.reload_refusal}",
            }
        if not dry_run and self.cluster_xml is not None:
            self.cluster_sha256 = hashlib.sha256(self.cluster_xml.read_bytes()).hexdigest()
        prefix = "would be " if dry_run else ""
        return {
            "ok": True,
            "applied": not dry_run,
            "changes": changes,
            "refusals": [],
            "message": f"{self.node_name}: {prefix}applied live: {changes[0]}",
        }

    def _status(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "state": self.states[name],
            "readiness": "Ready",
            "reason": "",
            "resources": {"heartbeat.default": "up"},
            "controls": {"errd": "on", "checker": "on", "failover": "on"},
        }


@dataclass
class Env:
    client: TestClient
    node: FakeNode
    api: Api
    ctx: ApiContext
    paths: Paths
    admin: str
    monitor: str
    key: bytes

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def audit(self) -> list[dict[str, Any]]:
        return self.ctx.audit.tail(1000)


def make_env(tmp_path: Path) -> Iterator[Env]:
    paths = Paths(
        safe=tmp_path / "opt",
        conf=tmp_path / "etc",
        var=tmp_path / "var",
        log=tmp_path / "log",
        run=tmp_path / "run",
    )
    conf = paths.module_dir("web") / "conf"
    conf.mkdir(parents=True)
    (conf / "userconfig.xml").write_text(GOOD_XML)
    store = CredentialStore(paths.conf / "api" / "users.json", paths.conf / "api" / "tokens.json")
    store.users_path.parent.mkdir(parents=True)
    store.users_path.write_text(_users_json())
    admin = store.create_token(Role.ADMIN, "ci-admin")
    monitor = store.create_token(Role.MONITOR, "ci-monitor")
    key = clusterkey.generate_key()
    paths.cluster_xml.write_text(CLUSTER_XML)
    paths.cluster_key.write_text(clusterkey.encode_key_file(key))
    node = FakeNode(modules_dir=paths.modules, cluster_xml=paths.cluster_xml)

    def monitoring_of(module: str) -> dict[str, Any] | None:
        return MONITORING if module in node.states else None

    async def module_states() -> list[dict[str, Any]]:
        return (await node.handle({"cmd": "state", "verbose": True}))["modules"]

    ring = HistoryStore(paths.module_var("web") / FILE_NAME, fields_for(MONITORING), slots=100)
    for i in range(30):  # five minutes of samples
        ring.append(HISTORY_START + 10 * i, sample_of({"state": "PRIM", "readiness": "Ready"}, MONITORING))
    ring.close()
    ctx = ApiContext(
        monitor=monitoring_of,
        history=History(paths.module_var, module_states, monitoring_of),
        node=node,
        paths=paths,
        store=store,
        audit=AuditLog(paths.log / "audit.log"),
        cluster_tokens=ClusterTokens(key),
        cookie_secure=False,  # the test client speaks http://testserver
    )
    app, api = create_app(ctx, config_forms.routes)
    with TestClient(app, base_url="http://testserver") as client:
        yield Env(client, node, api, ctx, paths, admin, monitor, key)
