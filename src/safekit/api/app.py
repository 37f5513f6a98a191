"""The ASGI application: REST API under /api/v1 and the console under /.

Every command goes through the node's control handler (`NodeControl.handle`), the very code path
of the local control socket: the API adds authentication, roles, CSRF, rate limiting and the
audit log, never command logic of its own.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safekit import __version__, failover_report
from safekit.aio import within
from safekit.api import openapi
from safekit.api.audit import AuditLog
from safekit.api.auth import ClusterTokens, CredentialStore, LoginLimiter, Principal, Role, Sessions
from safekit.api.client import ApiClient, ApiClientError
from safekit.api.history import History
from safekit.api.watch import ClusterWatcher
from safekit.config import ConfigError
from safekit.config.cluster_parser import parse_cluster
from safekit.config.module_parser import parse_module
from safekit.config.xmlread import read_xml
from safekit.host import persist
from safekit.host.module_packages import MODULE_NAME, sha256_file
from safekit.host.paths import Paths
from safekit.report_cli import journal_lines

log = logging.getLogger("safekit.api")

SESSION_COOKIE = "safekit_session"
CSRF_HEADER = "x-csrf-token"
MAX_BODY = 1024 * 1024
MODULE_COMMANDS = (
    "start",
    "stop",
    "restart",
    "stopstart",
    "forcestop",
    "swap",
    "prim",
    "second",
    "primforce",
)
SWITCHES = ("errd", "checker", "failover")
READ_CONTROL = ("state", "get", "log", "getports", "confinfo", "module_list", "cluster_confinfo")
WRITE_CONTROL = (*MODULE_COMMANDS, *SWITCHES, "set", "config", "cluster_reload")
LOG_KINDS = ("module", "script", "daemon")
PEER_TIMEOUT = 2.0


class NodeControl(Protocol):
    """What the API needs of safekitd's node: its name and its control handler."""

    node_name: str | None

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class ApiContext:
    node: NodeControl
    paths: Paths
    store: CredentialStore
    audit: AuditLog
    cluster_tokens: ClusterTokens
    peers: dict[str, ApiClient] = field(default_factory=dict)
    cookie_secure: bool = True
    sessions: Sessions = field(default_factory=Sessions)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    monitor: Callable[[str], dict[str, Any] | None] | None = None
    """Metrics.monitoring: a module's heartbeat networks and replication figures on this node."""
    history: History | None = None
    networks: list[dict[str, Any]] = field(default_factory=list)
    """cluster.xml's heartbeat networks, each node's address on each (api/follow.py)."""


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# ---------------------------------------------------------------------- authentication


class Api:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        name = ctx.node.node_name or "node"
        self.watcher = ClusterWatcher(
            name, list(ctx.peers), self._local_modules, self._peer_state, networks=ctx.networks
        )

    def follow(self, peers: list[str], networks: list[dict[str, Any]]) -> None:
        """A live cluster.xml reload changed the nodes or networks (api/server.py follows it)."""
        self.ctx.networks = networks
        self.watcher.follow(peers, networks)

    @property
    def node_name(self) -> str:
        return self.ctx.node.node_name or "node"

    def authenticate(self, request: Request, needed: Role) -> Principal:
        principal, via_cookie, session_csrf = self._identify(request)
        if principal is None:
            raise HttpError(401, "authentication required", {"WWW-Authenticate": 'Bearer realm="safekit"'})
        if via_cookie and request.method not in ("GET", "HEAD"):
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent, session_csrf):
                raise HttpError(403, "missing or wrong CSRF token (send the X-CSRF-Token of the session)")
            origin = request.headers.get("origin")
            if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
                raise HttpError(403, "cross-origin request refused")
        if not principal.role.allows(needed):
            raise HttpError(403, f"{principal.name} has role {principal.role}: this needs {needed}")
        return principal

    def _identify(self, request: Request) -> tuple[Principal | None, bool, str]:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None, False, ""
            token = token.strip()
            principal = self.ctx.store.check_token(token) or self.ctx.cluster_tokens.check(token)
            return principal, False, ""
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            session = self.ctx.sessions.get(sid)
            if session is not None:
                return session.principal, True, session.csrf
        return None, False, ""

    # ------------------------------------------------------------------ node access
    async def _local_modules(self) -> list[dict[str, Any]]:
        answer = await self.ctx.node.handle({"cmd": "state", "verbose": True})
        modules: list[dict[str, Any]] = answer.get("modules", [])
        return modules

    async def _peer_state(self, peer: str) -> dict[str, Any]:
        client = self.ctx.peers[peer]
        status, answer = await asyncio.to_thread(client.request, "GET", "/api/v1/modules", None, PEER_TIMEOUT)
        if status != 200:
            return {"reachable": True, "modules": [], "error": f"HTTP {status}: {answer.get('error')}"}
        return {"reachable": True, "modules": answer.get("modules", [])}

    async def _known_module(self, module: str) -> None:
        if not MODULE_NAME.match(module):
            raise HttpError(404, f"no module {module!r}")
        installed = (self.ctx.paths.module_dir(module) / "conf" / "userconfig.xml").is_file()
        answer = await self.ctx.node.handle({"cmd": "module_list"})
        loaded = any(m.get("name") == module for m in answer.get("modules", []))
        if not (installed or loaded):
            raise HttpError(404, f"no module {module!r} on {self.node_name}")

    # ------------------------------------------------------------------ endpoints
    async def node_info(self, request: Request, who: Principal) -> Response:
        return JSONResponse(
            {
                "node": self.node_name,
                "version": __version__,
                "nodes": [self.node_name, *self.ctx.peers],
                "user": who.name,
                "role": str(who.role),
            }
        )

    async def modules(self, request: Request, who: Principal) -> Response:
        return JSONResponse({"node": self.node_name, "modules": await self._local_modules()})

    async def module(self, request: Request, who: Principal) -> Response:
        module = request.path_params["module"]
        await self._known_module(module)
        answer = await self.ctx.node.handle({"cmd": "state", "module": module, "verbose": True})
        if not answer.get("ok") or not answer.get("modules"):
            raise HttpError(404, str(answer.get("error") or f"no module {module!r}"))
        return JSONResponse(answer["modules"][0])

    async def cluster(self, request: Request, who: Principal) -> Response:
        async def peer(name: str) -> dict[str, Any]:
            try:
                return {"name": name, **await self._peer_state(name)}
            except ApiClientError as exc:
                return {"name": name, "reachable": False, "modules": [], "error": str(exc)}

        local = {"name": self.node_name, "reachable": True, "modules": await self._local_modules()}
        peers = await asyncio.gather(*(peer(n) for n in self.ctx.peers))
        return JSONResponse(
            {
                "node": self.node_name,
                "time": time.time(),
                "nodes": [local, *peers],
                "networks": self.ctx.networks,
                "timeline": list(self.watcher.timeline),
            }
        )

    async def events(self, request: Request, who: Principal) -> Response:
        queue = await self.watcher.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        snap = await within(queue.get(), 15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: state\ndata: {json.dumps(snap, default=str)}\n\n"
            finally:
                await self.watcher.unsubscribe(queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def command(self, request: Request, who: Principal) -> Response:
        module = request.path_params["module"]
        body = await _json_body(request)
        _only(body, {"command", "value", "mode"})
        command = body.get("command")
        if command not in (*MODULE_COMMANDS, *SWITCHES):
            raise HttpError(400, f"command must be one of {', '.join((*MODULE_COMMANDS, *SWITCHES))}")
        payload: dict[str, Any] = {"cmd": command, "module": module}
        if command in SWITCHES:
            if body.get("value") not in ("on", "off"):
                raise HttpError(400, f"{command}: value must be on or off")
            payload["value"] = body["value"]
        elif "value" in body:
            raise HttpError(400, f"{command} takes no value")
        if "mode" in body:
            allowed = {"swap": ("nosync",), "prim": ("fullsync",), "second": ("fullsync",)}.get(command, ())
            if body["mode"] not in allowed:
                raise HttpError(400, f"{command}: mode must be one of {', '.join(allowed) or 'nothing'}")
            payload["mode"] = body["mode"]
        what = f"{command} {payload.get('value', '')}".strip()
        target = self._target(request)
        if target is not None:
            status, data = await self._forward(target, "POST", f"/api/v1/modules/{module}/commands", body)
            self._audit(request, who, what, data, module=module, node=target)
            return JSONResponse(data, status_code=status)
        await self._known_module(module)
        answer = await self.ctx.node.handle(payload)
        self._audit(request, who, what, answer, module=module)
        return _answer(answer)

    def _target(self, request: Request) -> str | None:
        """`?node=NAME`: a peer to send the request to (None: this node)."""
        node = request.query_params.get("node")
        if node is None or node == self.node_name:
            return None
        if node not in self.ctx.peers:
            raise HttpError(404, f"no node {node!r} in the cluster")
        return node

    async def _forward(
        self, node: str, method: str, path: str, body: dict[str, Any] | None, timeout: float = 60.0
    ) -> tuple[int, dict[str, Any]]:
        try:
            return await asyncio.to_thread(self.ctx.peers[node].request, method, path, body, timeout)
        except ApiClientError as exc:
            return 502, {"ok": False, "error": str(exc)}

    async def control(self, request: Request, who: Principal) -> Response:
        """`safekit -H`: a control-socket request, as the local CLI would send it."""
        body = await _json_body(request)
        _only(body, {"cmd", "module", "value", "mode", "resource", "ident", "verbose", "all", "dry_run"})
        cmd = body.get("cmd")
        if cmd not in (*READ_CONTROL, *WRITE_CONTROL):
            raise HttpError(400, f"cmd must be one of {', '.join((*READ_CONTROL, *WRITE_CONTROL))}")
        for key in ("module", "value", "mode", "resource", "ident"):
            if key in body and not (isinstance(body[key], str) and len(body[key]) <= 256):
                raise HttpError(400, f"{key} must be a string of at most 256 characters")
        for key in ("verbose", "all", "dry_run"):
            if key in body and not isinstance(body[key], bool):
                raise HttpError(400, f"{key} must be true or false")
        if cmd in WRITE_CONTROL and not who.role.allows(Role.ADMIN):
            self._audit(
                request, who, f"control {cmd}", {"ok": False, "error": "forbidden"}, module=body.get("module")
            )
            raise HttpError(403, f"{who.name} has role {who.role}: {cmd} needs admin")
        answer = await self.ctx.node.handle(dict(body))
        if cmd in WRITE_CONTROL:
            self._audit(
                request,
                who,
                f"control {cmd} {body.get('value', '')}".strip(),
                answer,
                module=body.get("module"),
            )
        return JSONResponse(answer)

    async def logs(self, request: Request, who: Principal) -> Response:
        module = request.path_params["module"]
        kind = request.query_params.get("kind", "module")
        if kind not in LOG_KINDS:
            raise HttpError(400, f"kind must be one of {', '.join(LOG_KINDS)}")
        try:
            lines = int(request.query_params.get("lines", "200"))
        except ValueError:
            raise HttpError(400, "lines must be an integer") from None
        if not 1 <= lines <= 10000:
            raise HttpError(400, "lines must be between 1 and 10000")
        target = self._target(request)
        if target is not None:
            query = f"kind={kind}&lines={lines}"
            status, data = await self._forward(
                target, "GET", f"/api/v1/modules/{module}/log?{query}", None, 10
            )
            return JSONResponse(data, status_code=status)
        await self._known_module(module)
        if kind == "module":
            answer = await self.ctx.node.handle({"cmd": "log", "module": module, "all": lines > 100})
            text: list[str] = answer.get("lines", []) if answer.get("ok") else []
            text = text[-lines:]
        else:
            path = self.ctx.paths.user_log(module) if kind == "script" else self.ctx.paths.daemon_log
            text = await asyncio.to_thread(_tail, path, lines)
        return JSONResponse({"node": self.node_name, "module": module, "kind": kind, "lines": text})

    async def monitoring(self, request: Request, who: Principal) -> Response:
        """A module's heartbeat networks (up or down per peer, round trip) and replication
        figures (role, in sync, in flight, resync progress and time left, throughput) here."""
        module = request.path_params["module"]
        target = self._target(request)
        if target is not None:
            status, data = await self._forward(target, "GET", f"/api/v1/modules/{module}/monitoring", None, 5)
            return JSONResponse(data, status_code=status)
        await self._known_module(module)
        found = self.ctx.monitor(module) if self.ctx.monitor is not None else None
        if found is None:
            raise HttpError(404, f"module {module!r} is not running on {self.node_name}")
        return JSONResponse({"node": self.node_name, "module": module, "time": time.time(), **found})

    async def history(self, request: Request, who: Principal) -> Response:
        """`?since=` (wall clock, seconds) and `?step=` (seconds a row, for long ranges)."""
        module = request.path_params["module"]
        since = _number(request, "since", 0.0)
        step = _number(request, "step", 0.0)
        if not 0 <= step <= 86400:
            raise HttpError(400, "step must be between 0 and 86400 seconds")
        target = self._target(request)
        if target is not None:
            query = f"since={since:.3f}&step={step:g}"
            status, data = await self._forward(
                target, "GET", f"/api/v1/modules/{module}/history?{query}", None, 10
            )
            return JSONResponse(data, status_code=status)
        await self._known_module(module)
        history = self.ctx.history
        found = (
            None if history is None else await asyncio.to_thread(history.read, module, since, step or None)
        )
        if found is None:
            raise HttpError(404, f"no history of {module!r} on {self.node_name} yet")
        return JSONResponse({"node": self.node_name, "module": module, **found})

    async def report(self, request: Request, who: Principal) -> Response:
        """`safekit report -m AM --last N --json` of this node (or `?node=`)."""
        module = request.path_params["module"]
        try:
            last = int(request.query_params.get("last", "5"))
        except ValueError:
            raise HttpError(400, "last must be an integer") from None
        if not 1 <= last <= 100:
            raise HttpError(400, "last must be between 1 and 100")
        target = self._target(request)
        if target is not None:
            status, data = await self._forward(
                target, "GET", f"/api/v1/modules/{module}/report?last={last}", None, 10
            )
            return JSONResponse(data, status_code=status)
        await self._known_module(module)
        lines = await asyncio.to_thread(journal_lines, self.ctx.paths.module_journal(module))
        found = failover_report.episodes(failover_report.parse_lines(lines))
        return JSONResponse(
            {"node": self.node_name, "module": module, "episodes": [e.to_json() for e in found[-last:]]}
        )

    async def get_config(self, request: Request, who: Principal) -> Response:
        module = request.path_params["module"]
        await self._known_module(module)
        path = self.ctx.paths.module_dir(module) / "conf" / "userconfig.xml"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HttpError(404, f"{path}: {exc.strerror}") from exc
        answer = await self.ctx.node.handle({"cmd": "confinfo", "module": module})
        loaded = answer.get("loaded_sha256") if answer.get("ok") else None
        digest = sha256_file(path)
        return JSONResponse(
            {
                "node": self.node_name,
                "module": module,
                "path": str(path),
                "xml": data.decode("utf-8", errors="replace"),
                "sha256": digest,
                "loaded_sha256": loaded,
                "differs": None if loaded is None else loaded != digest,
            }
        )

    async def validate(self, request: Request, who: Principal) -> Response:
        body = await _json_body(request)
        _only(body, {"xml"})
        return JSONResponse(validate_xml(_xml_of(body)))

    async def put_config(self, request: Request, who: Principal) -> Response:
        module = request.path_params["module"]
        body = await _json_body(request)
        _only(body, {"xml", "nodes"})
        xml = _xml_of(body)
        scope = body.get("nodes", "all")
        if scope not in ("all", "local"):
            raise HttpError(400, "nodes must be all or local")
        result = validate_xml(xml, expect="safe")
        if not result["valid"]:
            self._audit(request, who, "config apply", {"ok": False, "error": "invalid"}, module=module)
            return JSONResponse({"error": "the configuration is not valid", **result}, status_code=422)
        await self._known_module(module)
        targets = [self.node_name, *(self.ctx.peers if scope == "all" else [])]
        # Phase 1: every node must have the module stopped before any file is replaced.
        states = await asyncio.gather(*(self._module_state(n, module) for n in targets))
        blocked = {n: s for n, s in zip(targets, states, strict=True) if s not in ("STOP", "absent")}
        if blocked:
            what = ", ".join(f"{n}: {s}" for n, s in blocked.items())
            message = f"{module} must be stopped on every node before its configuration is applied ({what})"
            self._audit(request, who, "config apply", {"ok": False, "error": message}, module=module)
            raise HttpError(409, message)
        results = {}
        for node in targets:
            results[node] = await self._apply_on(node, module, xml)
        ok = all(r.get("ok") for r in results.values())
        self._audit(request, who, f"config apply ({scope})", {"ok": ok}, module=module, nodes=results)
        return JSONResponse({"ok": ok, "nodes": results}, status_code=200 if ok else 409)

    async def _module_state(self, node: str, module: str) -> str:
        if node == self.node_name:
            answer = await self.ctx.node.handle({"cmd": "state", "module": module})
            mods = answer.get("modules") or []
            return str(mods[0]["state"]) if answer.get("ok") and mods else "absent"
        try:
            status, data = await asyncio.to_thread(
                self.ctx.peers[node].request, "GET", f"/api/v1/modules/{module}", None, PEER_TIMEOUT
            )
        except ApiClientError as exc:
            return f"unreachable ({exc})"
        if status == 404:
            return "absent"
        return str(data.get("state")) if status == 200 else f"HTTP {status}"

    async def _apply_on(self, node: str, module: str, xml: str) -> dict[str, Any]:
        if node != self.node_name:
            try:
                status, data = await asyncio.to_thread(
                    self.ctx.peers[node].request,
                    "PUT",
                    f"/api/v1/modules/{module}/config",
                    {"xml": xml, "nodes": "local"},
                    60.0,
                )
            except ApiClientError as exc:
                return {"ok": False, "error": str(exc)}
            if status == 200:
                return dict(data.get("nodes", {}).get(node) or {"ok": True})
            return {"ok": False, "error": f"HTTP {status}: {data.get('error') or data}"}
        path = self.ctx.paths.module_dir(module) / "conf" / "userconfig.xml"
        await asyncio.to_thread(persist.write_bytes, path, xml.encode(), 0o644)
        answer = await self.ctx.node.handle({"cmd": "config", "module": module})
        return {k: v for k, v in answer.items() if k in ("ok", "message", "error")}

    async def audit(self, request: Request, who: Principal) -> Response:
        try:
            lines = int(request.query_params.get("lines", "100"))
        except ValueError:
            raise HttpError(400, "lines must be an integer") from None
        if not 1 <= lines <= 10000:
            raise HttpError(400, "lines must be between 1 and 10000")
        entries = await asyncio.to_thread(self.ctx.audit.tail, lines)
        return JSONResponse({"entries": entries})

    # ------------------------------------------------------------------ sessions
    async def login(self, request: Request) -> Response:
        body = await _json_body(request)
        _only(body, {"user", "password"})
        user, password = body.get("user"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user or len(user) > 64:
            raise HttpError(400, "give user and password")
        if len(password) > 1024:
            raise HttpError(400, "password too long")
        source = _source(request)
        wait = self.ctx.limiter.retry_after(source, user)
        if wait > 0:
            self.ctx.audit.record(who=f"session:{user}", source=source, what="login", outcome="rate limited")
            raise HttpError(
                429, "too many failed logins: try again later", {"Retry-After": str(int(wait) + 1)}
            )
        principal = await asyncio.to_thread(self.ctx.store.check_password, user, password)
        if principal is None:
            self.ctx.limiter.failed(source, user)
            self.ctx.audit.record(who=f"session:{user}", source=source, what="login", outcome="refused")
            raise HttpError(401, "wrong user or password")
        sid, session = self.ctx.sessions.create(principal)
        self.ctx.audit.record(who=principal.describe(), source=source, what="login", outcome="ok")
        response = JSONResponse(
            {"user": principal.name, "role": str(principal.role), "method": "session", "csrf": session.csrf}
        )
        response.set_cookie(
            SESSION_COOKIE, sid, httponly=True, secure=self.ctx.cookie_secure, samesite="strict", path="/"
        )
        return response

    async def whoami(self, request: Request, who: Principal) -> Response:
        data: dict[str, Any] = {"user": who.name, "role": str(who.role), "method": who.method}
        sid = request.cookies.get(SESSION_COOKIE)
        session = self.ctx.sessions.get(sid) if sid and who.method == "session" else None
        if session is not None:
            data["csrf"] = session.csrf
        return JSONResponse(data)

    async def logout(self, request: Request, who: Principal) -> Response:
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            self.ctx.sessions.delete(sid)
        self.ctx.audit.record(who=who.describe(), source=_source(request), what="logout", outcome="ok")
        response = JSONResponse({"ok": True})
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self.ctx.cookie_secure, httponly=True, samesite="strict"
        )
        return response

    def _audit(
        self, request: Request, who: Principal, what: str, answer: dict[str, Any], **more: Any
    ) -> None:
        outcome = "ok" if answer.get("ok") else f"refused: {answer.get('error')}"
        self.ctx.audit.record(who=who.describe(), source=_source(request), what=what, outcome=outcome, **more)


# ---------------------------------------------------------------------- helpers


def _answer(answer: dict[str, Any]) -> JSONResponse:
    if answer.get("ok"):
        return JSONResponse(answer)
    return JSONResponse({"ok": False, "error": str(answer.get("error") or "refused")}, status_code=409)


def _number(request: Request, name: str, default: float) -> float:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise HttpError(400, f"{name} must be a number") from None
    if not math.isfinite(value):
        raise HttpError(400, f"{name} must be a finite number")
    return value


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise HttpError(400, f"unknown field(s): {', '.join(extra)}")


def _xml_of(body: dict[str, Any]) -> str:
    xml = body.get("xml")
    if not isinstance(xml, str) or not xml.strip():
        raise HttpError(400, "xml must be the file's text")
    try:
        encoded = xml.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        raise HttpError(400, "xml is not valid Unicode text") from None
    if len(encoded) > MAX_BODY:
        raise HttpError(400, "xml too large")
    return xml


async def _json_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise HttpError(415, "send application/json")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise HttpError(413, f"body larger than {MAX_BODY} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpError(413, f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deeply nested JSON
        raise HttpError(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    return body


def _tail(path: Path, count: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            block = 1 << 16
            data = b""
            while size > 0 and data.count(b"\n") <= count:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-count:]


_LINE = re.compile(r":(\d+):")


def validate_xml(xml: str, expect: str | None = None) -> dict[str, Any]:
    """{valid, kind, errors, warnings}; each problem with its line, element and message."""
    data = xml.encode()
    name = "userconfig.xml"
    errors: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    kind = None
    try:
        root = read_xml(data, name)
        kind = root.tag
        if expect is not None and root.tag != expect:
            raise ConfigError(name, root.line, root.tag, f"expected <{expect}> as the root element")
        if root.tag == "cluster":
            found = parse_cluster(data, "cluster.xml").warnings
        elif root.tag == "safe":
            found = parse_module(data, name).warnings
        else:
            raise ConfigError(name, root.line, root.tag, "the root element must be <cluster> or <safe>")
        warnings = [{"line": w.line, "element": w.element, "message": w.message} for w in found]
    except ConfigError as exc:
        errors = [{"line": e.line, "element": e.element, "message": e.message} for e in exc.errors]
    return {"valid": not errors, "kind": kind, "errors": errors, "warnings": warnings}


# ---------------------------------------------------------------------- routing

Endpoint = Callable[[Request, Principal], Awaitable[Response]]


def _guarded(api: Api, role: Role, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            who = api.authenticate(request, role)
            return await endpoint(request, who)
        except HttpError as exc:
            return _error(exc.status, exc.message, exc.headers)
        except Exception:
            log.exception("API %s %s failed", request.method, request.url.path)
            return _error(500, "internal error in safekitd (see its log)")

    return run


def _public(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpError as exc:
            return _error(exc.status, exc.message, exc.headers)

    return run


_CONSOLE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _console_assets() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("safekit.api") / "console"
    assets = {}
    for item in folder.iterdir():
        suffix = Path(item.name).suffix
        if suffix in _CONSOLE_TYPES:
            assets[item.name] = (item.read_bytes(), _CONSOLE_TYPES[suffix])
    return assets


CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Headers every answer carries (pure ASGI: no per-request objects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"strict-transport-security", b"max-age=31536000"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", CSP.encode()),
                ]
                if api and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = headers + [h for h in extra if h[0] not in names]
            await send(message)

        await self.app(scope, receive, with_headers)


RouteSet = Callable[["Api", Any], list[Route]]
"""More routes built on the Api and `_guarded` (the forms: api/config_forms.py, which imports this
module, so the caller passes them in: no import circle)."""


def create_app(ctx: ApiContext, *more: RouteSet) -> tuple[ASGIApp, Api]:
    api = Api(ctx)
    assets = _console_assets()
    document = openapi.document(__version__)

    async def console(request: Request) -> Response:
        name = request.path_params.get("asset", "index.html")
        found = assets.get(name)
        if found is None:
            return _error(404, "not found")
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "no-cache"})

    async def spec(request: Request) -> Response:
        return JSONResponse(document)

    m, a = Role.MONITOR, Role.ADMIN
    v1 = "/api/v1"
    routes = [
        Route("/", console, methods=["GET"]),
        Route("/console/{asset}", console, methods=["GET"]),
        Route(f"{v1}/openapi.json", spec, methods=["GET"]),
        Route(f"{v1}/session", _public(api.login), methods=["POST"]),
        Route(f"{v1}/session", _guarded(api, m, api.whoami), methods=["GET"]),
        Route(f"{v1}/session", _guarded(api, m, api.logout), methods=["DELETE"]),
        Route(f"{v1}/node", _guarded(api, m, api.node_info), methods=["GET"]),
        Route(f"{v1}/cluster", _guarded(api, m, api.cluster), methods=["GET"]),
        Route(f"{v1}/events", _guarded(api, m, api.events), methods=["GET"]),
        Route(f"{v1}/modules", _guarded(api, m, api.modules), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}", _guarded(api, m, api.module), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/commands", _guarded(api, a, api.command), methods=["POST"]),
        Route(f"{v1}/modules/{{module}}/log", _guarded(api, m, api.logs), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/monitoring", _guarded(api, m, api.monitoring), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/history", _guarded(api, m, api.history), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/report", _guarded(api, m, api.report), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/config", _guarded(api, m, api.get_config), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/config", _guarded(api, a, api.put_config), methods=["PUT"]),
        Route(f"{v1}/config/validate", _guarded(api, m, api.validate), methods=["POST"]),
        Route(f"{v1}/control", _guarded(api, m, api.control), methods=["POST"]),
        Route(f"{v1}/audit", _guarded(api, a, api.audit), methods=["GET"]),
        *(route for routes_of in more for route in routes_of(api, _guarded)),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "method not allowed")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    return SecurityHeaders(app), api
