"""The console's configuration forms over the API: cluster.xml as a form (read, rendered and
checked as the user types, applied to every node) and a new module from a template or from scratch
(rendered and checked, then installed on every node). The XML comes from `forms` on the server.

Applying follows the module configuration's path (`PUT /api/v1/modules/AM/config`): the node
called checks, asks every node to check (`dry_run`), then sends each node the same request with
`nodes: "local"` under a cluster token; each node writes its own files. The cluster key is never
read here: the node's answer gives its fingerprint only.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from safekit.api.app import Api, HttpError, _json_body, _only
from safekit.api.auth import Principal, Role
from safekit.api.form_worker import FormWorker, FormWorkerError
from safekit.config import ClusterConfig, ConfigError
from safekit.config.cluster_parser import parse_cluster
from safekit.config.loader import check_file, load_module
from safekit.config.validation import validate_module_against_cluster
from safekit.host import persist
from safekit.host.module_packages import MODULE_NAME, sha256_file

INSTALL_FIELDS = {"template", "values", "form", "nodes", "dry_run"}


def _invalid(result: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"error": "the configuration is not valid", **result}, status_code=422)


def _scope(body: dict[str, Any]) -> tuple[str, bool]:
    nodes = body.get("nodes", "all")
    if nodes not in ("all", "local"):
        raise HttpError(400, "nodes must be all or local")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise HttpError(400, "dry_run must be true or false")
    return nodes, dry_run


class FormsApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.ctx = api.ctx
        self.worker = FormWorker()

    async def _ask(self, op: str, data: Any = None, **more: Any) -> dict[str, Any]:
        try:
            answer = await self.worker.ask(op, data, **more)
        except FormWorkerError as exc:
            raise HttpError(503, str(exc)) from exc
        if "error" in answer and "valid" not in answer:
            raise HttpError(503, f"the form renderer failed: {answer['error']}")
        return answer

    def _cluster_text(self) -> str | None:
        try:
            return self.ctx.paths.cluster_xml.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    # ------------------------------------------------------------------ cluster.xml
    async def get_cluster(self, request: Request, who: Principal) -> Response:
        path = self.ctx.paths.cluster_xml
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise HttpError(404, f"{path}: {exc.strerror}") from exc
        info = await self.ctx.node.handle({"cmd": "cluster_confinfo"})
        running = info.get("ok") is True
        digest = sha256_file(path)
        text = data.decode("utf-8", errors="replace")
        found = await self._ask("cluster_form", text)
        loaded = info.get("cluster_sha256") if running else None
        return JSONResponse(
            {
                "node": self.api.node_name,
                "path": str(path),
                "xml": text,
                "sha256": digest,
                "loaded_sha256": loaded,
                "differs": None if loaded is None else loaded != digest,
                "key_fingerprint": info.get("key_fingerprint") if running else None,
                "form": found.get("form"),
                "errors": found.get("errors", []),
            }
        )

    async def render_cluster(self, request: Request, who: Principal) -> Response:
        body = await _json_body(request)
        return JSONResponse(await self._ask("render_cluster", body))

    async def put_cluster(self, request: Request, who: Principal) -> Response:
        body = await _json_body(request)
        _only(body, {"form", "nodes", "dry_run", "reload"})
        scope, dry_run = _scope(body)
        reload = body.get("reload", True)
        if not isinstance(reload, bool):
            raise HttpError(400, "reload must be true or false")
        result = await self._ask("render_cluster", body.get("form"))
        what = f"cluster config apply ({scope}){' dry run' if dry_run else ''}"
        if not result.get("valid"):
            self.api._audit(request, who, what, {"ok": False, "error": "invalid"})
            return _invalid(result)
        problems = await asyncio.to_thread(self._cluster_problems, parse_cluster(result["xml"]))
        if problems:
            message = f"{self.api.node_name}: " + "; ".join(problems)
            self.api._audit(request, who, what, {"ok": False, "error": message})
            raise HttpError(409, message)
        me = self.api.node_name
        # Would safekitd here take the new file live (daemon/cluster_reload.py)? Asked of every node
        # before anything is written; the reload happens everywhere or nowhere.
        live = await self._live_check(result["xml"]) if reload and (dry_run or scope == "all") else None
        if scope == "local":
            if dry_run:
                return JSONResponse(
                    {"ok": True, "nodes": {me: {"ok": True, "message": "checked", "live": live}}}
                )
            outcome = await self._write_cluster(result["xml"], reload=reload)
            self.api._audit(request, who, what, outcome)
            return JSONResponse({"ok": outcome["ok"], "nodes": {me: outcome}})
        peers = list(self.ctx.peers)
        # Phase 1: every node checks the file against its own modules before any file is replaced.
        local = {**body, "nodes": "local"}
        checks = await asyncio.gather(
            *(self._peer(n, "PUT", "/api/v1/cluster/config", {**local, "dry_run": True}) for n in peers)
        )
        refused = {n: c for n, c in zip(peers, checks, strict=True) if not c.get("ok")}
        if refused:
            message = "; ".join(f"{n}: {c.get('error')}" for n, c in refused.items())
            self.api._audit(request, who, what, {"ok": False, "error": message})
            raise HttpError(409, f"not applied anywhere: {message}")
        lives: dict[str, Any] = {me: live}
        for node, check in zip(peers, checks, strict=True):
            lives[node] = (check.get("nodes", {}).get(node) or {}).get("live")
        if dry_run:
            checked = {n: {"ok": True, "message": "checked", "live": lives[n]} for n in [me, *peers]}
            return JSONResponse({"ok": True, "nodes": checked})
        # Phase 2: written on every node; reloaded live on every node only if every node accepts.
        refusing = {n: v for n, v in lives.items() if reload and not (v or {}).get("ok")}
        reload_now = reload and not refusing
        results: dict[str, Any] = {me: await self._write_cluster(result["xml"], reload=reload_now)}
        for node in peers:
            answer = await self._peer(
                node,
                "PUT",
                "/api/v1/cluster/config",
                {**local, "reload": reload_now},
            )
            results[node] = answer.get("nodes", {}).get(node) or answer
        if refusing:
            why = "; ".join(
                (v or {}).get("error") or f"{n}: {(v or {}).get('message') or 'did not answer'}"
                for n, v in refusing.items()
            )
            for outcome in results.values():
                if outcome.get("ok"):
                    outcome["reload"] = {"ok": False, "applied": False, "error": why}
                    outcome["message"] += f"; not applied live on any node ({why})"
        ok = all(r.get("ok") for r in results.values())
        self.api._audit(request, who, what, {"ok": ok}, nodes=results)
        return JSONResponse({"ok": ok, "nodes": results}, status_code=200 if ok else 409)

    async def _live_check(self, xml: str) -> dict[str, Any]:
        answer = await self.ctx.node.handle({"cmd": "cluster_reload", "dry_run": True, "xml": xml})
        keep = ("ok", "changes", "refusals", "error", "message")
        return {k: answer[k] for k in keep if k in answer}

    async def reload_cluster(self, request: Request, who: Principal) -> Response:
        """`POST /api/v1/cluster/reload`: each node takes its cluster.xml live where it can (as
        `safekit cluster reload` on it); `dry_run` only says what would happen."""
        body = await _json_body(request)
        _only(body, {"nodes", "dry_run"})
        scope, dry_run = _scope(body)
        what = f"cluster reload ({scope}){' dry run' if dry_run else ''}"
        results: dict[str, Any] = {
            self.api.node_name: await self.ctx.node.handle({"cmd": "cluster_reload", "dry_run": dry_run})
        }
        if scope == "all":
            peers = list(self.ctx.peers)
            local = {"nodes": "local", "dry_run": dry_run}
            answers = await asyncio.gather(
                *(self._peer(n, "POST", "/api/v1/cluster/reload", local) for n in peers)
            )
            for node, answer in zip(peers, answers, strict=True):
                results[node] = answer.get("nodes", {}).get(node) or answer
        ok = all(r.get("ok") for r in results.values())
        refused = "; ".join(str(r.get("error")) for r in results.values() if not r.get("ok"))
        self.api._audit(request, who, what, {"ok": ok, "error": refused}, nodes=results)
        return JSONResponse({"ok": ok, "nodes": results})

    def _cluster_problems(self, new: ClusterConfig) -> list[str]:
        """Why this node cannot take the new cluster.xml: it is not in it, or a module installed
        here refers to a LAN or node it no longer has."""
        problems = []
        if self.api.node_name not in new.node_names:
            problems.append(f"this node ({self.api.node_name}) is not in the new cluster.xml")
        modules = self.ctx.paths.modules
        for directory in sorted(modules.iterdir()) if modules.is_dir() else []:
            conf = directory / "conf" / "userconfig.xml"
            if directory.name.startswith(".") or not conf.is_file():
                continue
            try:
                module = load_module(conf).config
            except ConfigError:
                continue  # a broken module is not made worse by the cluster
            for error in validate_module_against_cluster(module, new):
                problems.append(f"module {directory.name}: {error.message}")
        return problems

    async def _write_cluster(self, xml: str, *, reload: bool = False) -> dict[str, Any]:
        path = self.ctx.paths.cluster_xml
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        await asyncio.to_thread(persist.write_bytes, path, xml.encode(), mode)
        live = await self.ctx.node.handle({"cmd": "cluster_reload"}) if reload else None
        info = await self.ctx.node.handle({"cmd": "cluster_confinfo"})
        digest = sha256_file(path)
        loaded = info.get("cluster_sha256") if info.get("ok") else None
        restart = loaded != digest
        message = f"{path} written"
        if live is not None:
            message += f"; {_live_words(live)}"
        if restart:
            message += "; safekitd runs the previous one until it restarts"
        outcome: dict[str, Any] = {
            "ok": True,
            "sha256": digest,
            "loaded_sha256": loaded,
            "restart_needed": restart,
            "message": message,
        }
        if live is not None:
            outcome["reload"] = live
        return outcome

    async def _peer(self, node: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, data = await self.api._forward(node, method, path, body)
        if status == 200:
            return data
        return {"ok": False, "error": f"HTTP {status}: {data.get('error') or data}"}

    # ------------------------------------------------------------------ modules
    async def list_templates(self, request: Request, who: Principal) -> Response:
        return JSONResponse(await self._ask("templates"))

    async def render_module(self, request: Request, who: Principal) -> Response:
        body = await _json_body(request)
        cluster_xml = await asyncio.to_thread(self._cluster_text)
        return JSONResponse(await self._ask("render_module", body, cluster_xml=cluster_xml))

    async def install(self, request: Request, who: Principal) -> Response:
        module = request.path_params["module"]
        if not MODULE_NAME.match(module):
            raise HttpError(404, f"no module name {module!r}")
        body = await _json_body(request)
        _only(body, INSTALL_FIELDS)
        scope, dry_run = _scope(body)
        what = f"module install ({scope}){' dry run' if dry_run else ''}"
        wanted = {k: v for k, v in body.items() if k in ("template", "values", "form")}
        cluster_xml = await asyncio.to_thread(self._cluster_text)
        result = await self._ask(
            "render_module", {"name": module, **wanted}, cluster_xml=cluster_xml, package=True
        )
        if not result.get("valid"):
            self.api._audit(request, who, what, {"ok": False, "error": "invalid"}, module=module)
            return _invalid(result)
        targets = [self.api.node_name, *(self.ctx.peers if scope == "all" else [])]
        states = await asyncio.gather(*(self.api._module_state(n, module) for n in targets))
        blocked = {n: s for n, s in zip(targets, states, strict=True) if s not in ("STOP", "absent")}
        if blocked:
            held = ", ".join(f"{n}: {s}" for n, s in blocked.items())
            message = f"{module} must be stopped (or absent) on every node to be installed ({held})"
            self.api._audit(request, who, what, {"ok": False, "error": message}, module=module)
            raise HttpError(409, message)
        peers = targets[1:]
        path = f"/api/v1/modules/{module}/install"
        local = {**body, "nodes": "local"}
        checks = await asyncio.gather(
            *(self._peer(n, "POST", path, {**local, "dry_run": True}) for n in peers)
        )
        refused = {n: c for n, c in zip(peers, checks, strict=True) if not c.get("ok")}
        if refused:
            message = "; ".join(f"{n}: {c.get('error')}" for n, c in refused.items())
            self.api._audit(request, who, what, {"ok": False, "error": message}, module=module)
            raise HttpError(409, f"not installed anywhere: {message}")
        xml = result["xml"]
        if dry_run:
            return JSONResponse(
                {"ok": True, "xml": xml, "nodes": {n: {"ok": True, "message": "checked"} for n in targets}}
            )
        results: dict[str, Any] = {self.api.node_name: await self._install_here(module, result["package"])}
        for node in peers:
            answer = await self._peer(node, "POST", path, local)
            results[node] = answer.get("nodes", {}).get(node) or answer
        ok = all(r.get("ok") for r in results.values())
        self.api._audit(request, who, what, {"ok": ok}, module=module, nodes=results)
        return JSONResponse({"ok": ok, "xml": xml, "nodes": results}, status_code=200 if ok else 409)

    async def _install_here(self, module: str, package: list[dict[str, Any]]) -> dict[str, Any]:
        """What `safekit module install` does with a .safe, from the rendered package: staged in a
        dot directory beside the modules, checked, renamed into place (the module stopped), then
        loaded by safekitd (its `config` command)."""
        try:
            await asyncio.to_thread(self._put_in_place, module, package)
        except (OSError, ConfigError, ValueError) as exc:
            return {"ok": False, "error": f"{module} not installed: {exc}"}
        state = await self.api._module_state(self.api.node_name, module)
        if state not in ("STOP", "absent"):
            return {"ok": False, "error": f"{module} is {state}"}
        answer = await self.ctx.node.handle({"cmd": "config", "module": module})
        if not answer.get("ok"):
            return {
                "ok": False,
                "error": f"{module} installed, but safekitd did not load it: {answer.get('error')}",
            }
        return {
            "ok": True,
            "message": f"{module} installed in {self.ctx.paths.module_dir(module)} and loaded (stopped)",
        }

    def _put_in_place(self, module: str, package: list[dict[str, Any]]) -> None:
        modules = self.ctx.paths.modules
        modules.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{module}.install-", dir=modules))
        try:
            root = staging / module
            _write_package(package, root)
            check_file(str(root / "conf" / "userconfig.xml"))
            root.chmod(0o755)
            target = self.ctx.paths.module_dir(module)
            old = modules / f".{module}.old-{staging.name}"
            if target.exists():
                target.rename(old)
            try:
                root.rename(target)
            except OSError:
                if old.exists():
                    old.rename(target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _live_words(answer: dict[str, Any]) -> str:
    """A node's cluster_reload answer in a few words: what was applied live, or why not."""
    if answer.get("applied") or (answer.get("ok") and not answer.get("changes")):
        changes = answer.get("changes") or []
        return "applied live: " + "; ".join(changes) if changes else "nothing to apply live"
    why = answer.get("refusals") or [answer.get("error") or "refused"]
    return "not applied live: " + "; ".join(str(w) for w in why)


def _write_package(package: list[dict[str, Any]], root: Path) -> None:
    """The module's files from the renderer's answer (relative paths only)."""
    for item in package:
        relative = PurePosixPath(str(item["path"]))
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"{relative}: not a path inside a module")
        target = root.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(item["content"]))
        target.chmod(int(item["mode"]) & 0o755)


def routes(api: Api, guarded: Any) -> list[Route]:
    forms = FormsApi(api)
    m, a = Role.MONITOR, Role.ADMIN
    v1 = "/api/v1"
    return [
        Route(f"{v1}/cluster/config", guarded(api, m, forms.get_cluster), methods=["GET"]),
        Route(f"{v1}/cluster/config", guarded(api, a, forms.put_cluster), methods=["PUT"]),
        Route(f"{v1}/cluster/reload", guarded(api, a, forms.reload_cluster), methods=["POST"]),
        Route(f"{v1}/forms/cluster", guarded(api, m, forms.render_cluster), methods=["POST"]),
        Route(f"{v1}/forms/module", guarded(api, m, forms.render_module), methods=["POST"]),
        Route(f"{v1}/templates", guarded(api, m, forms.list_templates), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/install", guarded(api, a, forms.install), methods=["POST"]),
    ]
