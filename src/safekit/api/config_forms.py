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
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from safekit import templates
from safekit.api.app import Api, HttpError, _json_body
from safekit.api.auth import Principal, Role
from safekit.api.forms import (
    ClusterForm,
    ModuleForm,
    ModuleRequest,
    Rendered,
    cluster_form_of,
    render_cluster,
    render_module,
)
from safekit.config import ClusterConfig, ConfigError
from safekit.config.cluster_parser import parse_cluster
from safekit.config.loader import check_file, load_module
from safekit.config.validation import validate_module_against_cluster
from safekit.host import persist
from safekit.host.module_packages import MODULE_NAME, sha256_file


class ClusterApply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    form: ClusterForm
    nodes: str = Field(default="all", pattern="^(all|local)$")
    dry_run: bool = False


class ModuleInstall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str | None = Field(default=None, max_length=64)
    values: dict[str, str] = Field(default_factory=dict)
    form: ModuleForm | None = None
    nodes: str = Field(default="all", pattern="^(all|local)$")
    dry_run: bool = False


def _errors(result: Rendered) -> dict[str, Any]:
    return {"error": "the configuration is not valid", **result.as_dict()}


def _shape(exc: ValidationError) -> dict[str, Any]:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "line": None} for e in exc.errors()
    ]
    return {"error": "the request is not valid", "valid": False, "xml": "", "errors": errors, "warnings": []}


class FormsApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.ctx = api.ctx

    # ------------------------------------------------------------------ cluster.xml
    def _current_cluster(self) -> ClusterConfig | None:
        try:
            return parse_cluster(self.ctx.paths.cluster_xml.read_bytes())
        except (OSError, ConfigError):
            return None

    async def get_cluster(self, request: Request, who: Principal) -> Response:
        path = self.ctx.paths.cluster_xml
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise _http(404, f"{path}: {exc.strerror}") from exc
        info = await self.ctx.node.handle({"cmd": "cluster_confinfo"})
        running = info.get("ok") is True
        digest = sha256_file(path)
        answer: dict[str, Any] = {
            "node": self.api.node_name,
            "path": str(path),
            "xml": data.decode("utf-8", errors="replace"),
            "sha256": digest,
            "loaded_sha256": info.get("cluster_sha256") if running else None,
            "key_fingerprint": info.get("key_fingerprint") if running else None,
            "form": None,
            "errors": [],
        }
        answer["differs"] = None if answer["loaded_sha256"] is None else answer["loaded_sha256"] != digest
        try:
            answer["form"] = cluster_form_of(parse_cluster(data)).model_dump()
        except ConfigError as exc:
            answer["errors"] = [{"field": "", "message": e.message, "line": e.line} for e in exc.errors]
        return JSONResponse(answer)

    async def render_cluster(self, request: Request, who: Principal) -> Response:
        body = await _json_body(request)
        return JSONResponse(render_cluster(body).as_dict())

    async def put_cluster(self, request: Request, who: Principal) -> Response:
        body = await _json_body(request)
        try:
            apply = ClusterApply.model_validate(body)
        except ValidationError as exc:
            return JSONResponse(_shape(exc), status_code=422)
        result = render_cluster(apply.form)
        what = f"cluster config apply ({apply.nodes}){' dry run' if apply.dry_run else ''}"
        if not result.valid:
            self.api._audit(request, who, what, {"ok": False, "error": "invalid"})
            return JSONResponse(_errors(result), status_code=422)
        problems = await asyncio.to_thread(self._cluster_problems, parse_cluster(result.xml))
        if problems:
            message = f"{self.api.node_name}: " + "; ".join(problems)
            self.api._audit(request, who, what, {"ok": False, "error": message})
            raise _http(409, message)
        if apply.nodes == "local":
            if apply.dry_run:
                return JSONResponse(
                    {"ok": True, "nodes": {self.api.node_name: {"ok": True, "message": "checked"}}}
                )
            outcome = await self._write_cluster(result.xml)
            self.api._audit(request, who, what, outcome)
            return JSONResponse({"ok": outcome["ok"], "nodes": {self.api.node_name: outcome}})
        peers = list(self.ctx.peers)
        # Phase 1: every node checks the file against its own modules before any file is replaced.
        checks = await asyncio.gather(
            *(
                self._ask(n, "PUT", "/api/v1/cluster/config", {**body, "nodes": "local", "dry_run": True})
                for n in peers
            )
        )
        refused = {n: c for n, c in zip(peers, checks, strict=True) if not c.get("ok")}
        if refused:
            message = "; ".join(f"{n}: {c.get('error')}" for n, c in refused.items())
            self.api._audit(request, who, what, {"ok": False, "error": message})
            raise _http(409, f"not applied anywhere: {message}")
        if apply.dry_run:
            return JSONResponse(
                {
                    "ok": True,
                    "nodes": {n: {"ok": True, "message": "checked"} for n in [self.api.node_name, *peers]},
                }
            )
        results: dict[str, Any] = {self.api.node_name: await self._write_cluster(result.xml)}
        for node in peers:
            answer = await self._ask(node, "PUT", "/api/v1/cluster/config", {**body, "nodes": "local"})
            results[node] = answer.get("nodes", {}).get(node) or answer
        ok = all(r.get("ok") for r in results.values())
        self.api._audit(request, who, what, {"ok": ok}, nodes=results)
        return JSONResponse({"ok": ok, "nodes": results}, status_code=200 if ok else 409)

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

    async def _write_cluster(self, xml: str) -> dict[str, Any]:
        path = self.ctx.paths.cluster_xml
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        await asyncio.to_thread(persist.write_bytes, path, xml.encode(), mode)
        info = await self.ctx.node.handle({"cmd": "cluster_confinfo"})
        digest = sha256_file(path)
        loaded = info.get("cluster_sha256") if info.get("ok") else None
        restart = loaded != digest
        message = f"{path} written" + (
            "; safekitd runs the previous one until it restarts" if restart else ""
        )
        return {
            "ok": True,
            "sha256": digest,
            "loaded_sha256": loaded,
            "restart_needed": restart,
            "message": message,
        }

    async def _ask(self, node: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, data = await self.api._forward(node, method, path, body)
        if status == 200:
            return data
        return {"ok": False, "error": f"HTTP {status}: {data.get('error') or data}"}

    # ------------------------------------------------------------------ modules
    async def list_templates(self, request: Request, who: Principal) -> Response:
        found = await asyncio.to_thread(templates.library)
        return JSONResponse({"templates": [t.as_dict() for t in found.values()]})

    async def render_module(self, request: Request, who: Principal) -> Response:
        body = await _json_body(request)
        cluster = await asyncio.to_thread(self._current_cluster)
        return JSONResponse((await asyncio.to_thread(render_module, body, cluster)).as_dict())

    async def install(self, request: Request, who: Principal) -> Response:
        module = request.path_params["module"]
        if not MODULE_NAME.match(module):
            raise _http(404, f"no module name {module!r}")
        body = await _json_body(request)
        try:
            install = ModuleInstall.model_validate(body)
            wanted = ModuleRequest(
                name=module, template=install.template, values=install.values, form=install.form
            )
        except ValidationError as exc:
            return JSONResponse(_shape(exc), status_code=422)
        what = f"module install ({install.nodes}){' dry run' if install.dry_run else ''}"
        cluster = await asyncio.to_thread(self._current_cluster)
        result = await asyncio.to_thread(render_module, wanted, cluster)
        if not result.valid:
            self.api._audit(request, who, what, {"ok": False, "error": "invalid"}, module=module)
            return JSONResponse(_errors(result), status_code=422)
        targets = [self.api.node_name, *(self.ctx.peers if install.nodes == "all" else [])]
        states = await asyncio.gather(*(self.api._module_state(n, module) for n in targets))
        blocked = {n: s for n, s in zip(targets, states, strict=True) if s not in ("STOP", "absent")}
        if blocked:
            held = ", ".join(f"{n}: {s}" for n, s in blocked.items())
            message = f"{module} must be stopped (or absent) on every node to be installed ({held})"
            self.api._audit(request, who, what, {"ok": False, "error": message}, module=module)
            raise _http(409, message)
        peers = targets[1:]
        path = f"/api/v1/modules/{module}/install"
        if peers:
            checks = await asyncio.gather(
                *(self._ask(n, "POST", path, {**body, "nodes": "local", "dry_run": True}) for n in peers)
            )
            refused = {n: c for n, c in zip(peers, checks, strict=True) if not c.get("ok")}
            if refused:
                message = "; ".join(f"{n}: {c.get('error')}" for n, c in refused.items())
                self.api._audit(request, who, what, {"ok": False, "error": message}, module=module)
                raise _http(409, f"not installed anywhere: {message}")
        if install.dry_run:
            return JSONResponse(
                {
                    "ok": True,
                    "xml": result.xml,
                    "nodes": {n: {"ok": True, "message": "checked"} for n in targets},
                }
            )
        results: dict[str, Any] = {self.api.node_name: await self._install_here(module, result)}
        for node in peers:
            answer = await self._ask(node, "POST", path, {**body, "nodes": "local"})
            results[node] = answer.get("nodes", {}).get(node) or answer
        ok = all(r.get("ok") for r in results.values())
        self.api._audit(request, who, what, {"ok": ok}, module=module, nodes=results)
        return JSONResponse({"ok": ok, "xml": result.xml, "nodes": results}, status_code=200 if ok else 409)

    async def _install_here(self, module: str, result: Rendered) -> dict[str, Any]:
        """What `safekit module install` does with a .safe, from the rendered package: staged in a
        dot directory beside the modules, checked, renamed into place (the module stopped), then
        loaded by safekitd (its `config` command)."""
        try:
            await asyncio.to_thread(self._put_in_place, module, result)
        except (OSError, ConfigError) as exc:
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

    def _put_in_place(self, module: str, result: Rendered) -> None:
        modules = self.ctx.paths.modules
        modules.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{module}.install-", dir=modules))
        try:
            root = staging / module
            templates.write_directory(result.files, root)
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


def _http(status: int, message: str) -> Exception:
    return HttpError(status, message)


def routes(api: Api, guarded: Any) -> list[Route]:
    forms = FormsApi(api)
    m, a = Role.MONITOR, Role.ADMIN
    v1 = "/api/v1"
    return [
        Route(f"{v1}/cluster/config", guarded(api, m, forms.get_cluster), methods=["GET"]),
        Route(f"{v1}/cluster/config", guarded(api, a, forms.put_cluster), methods=["PUT"]),
        Route(f"{v1}/forms/cluster", guarded(api, m, forms.render_cluster), methods=["POST"]),
        Route(f"{v1}/forms/module", guarded(api, m, forms.render_module), methods=["POST"]),
        Route(f"{v1}/templates", guarded(api, m, forms.list_templates), methods=["GET"]),
        Route(f"{v1}/modules/{{module}}/install", guarded(api, a, forms.install), methods=["POST"]),
    ]
