"""The OpenAPI 3.1 document of /api/v1, written out (the API uses no schema framework: it keeps
safekitd small). tests/unit/api checks that every route is in it and runs schemathesis on it."""

from __future__ import annotations

from typing import Any

from safekit.api.form_schemas import SCHEMAS

MODULE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
COMMANDS = ["start", "stop", "restart", "stopstart", "forcestop", "swap", "prim", "second", "primforce"]
SWITCHES = ["errd", "checker", "failover"]
CONTROL = [
    "state",
    "get",
    "log",
    "getports",
    "confinfo",
    "module_list",
    "cluster_confinfo",
    *COMMANDS,
    *SWITCHES,
    "set",
    "config",
    "cluster_reload",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _ref("Error")
_COMMON = {
    "401": _json(_ERR, "no credentials, or wrong ones"),
    "403": _json(_ERR, "the role does not allow it, or a cookie session without its CSRF token"),
}
_BODY = {
    "400": _json(_ERR, "malformed request"),
    "413": _json(_ERR, "body too large"),
    "415": _json(_ERR, "not application/json"),
}
_MODULE_PARAM = {
    "name": "module",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": MODULE_PATTERN},
    "description": "the application module (AM)",
}
_NODE = {
    "name": "node",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "run it on this node of the cluster (default: the node called)",
}
_PEER = {
    "502": {
        "description": "the other node did not answer",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_RENDERER = {"503": _json(_ERR, "the form renderer (a child process) did not answer")}
_LINES = {
    "name": "lines",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
}


def _op(
    summary: str,
    role: str,
    ok: dict[str, Any],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    more: dict[str, Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    if not public:
        responses.update(_COMMON)
    if body:
        responses.update(_BODY)
    if params and any(p["in"] == "query" for p in params):
        responses.setdefault("400", _json(_ERR, "bad query parameter"))
    responses.update(more or {})
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Role: {role}." if not public else "No authentication.",
        "responses": responses,
    }
    if public:
        op["security"] = []
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def _query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """An optional query parameter."""
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def _module_get(summary: str, schema: str, what: str, *query: dict[str, Any]) -> dict[str, Any]:
    """A module-scoped GET of role monitor that a node answers for any node of the cluster
    (`?node=`: forwarded, 502 when that node does not answer; 404 for a module it does not have)."""
    return {
        "get": _op(
            summary,
            "monitor",
            _json(_ref(schema), what),
            params=[_MODULE_PARAM, *query, _NODE],
            more={"404": _json(_ERR, "no such module on this node"), **_PEER},
        )
    }


def _schemas() -> dict[str, Any]:
    obj = "object"
    problem = {
        "type": obj,
        "required": ["line", "message"],
        "properties": {
            "line": {"type": "integer"},
            "element": {"type": ["string", "null"]},
            "message": {"type": "string"},
        },
    }
    module_status = {
        "type": obj,
        "required": ["name", "state", "readiness"],
        "properties": {
            "name": {"type": "string"},
            "state": {"type": "string", "enum": ["STOP", "WAIT", "ALONE", "UP", "PRIM", "SECOND"]},
            "readiness": {"type": "string", "enum": ["NotReady", "Transient", "Ready"]},
            "reason": {"type": "string"},
            "resources": {"type": obj, "additionalProperties": {"type": "string"}},
            "controls": {"type": obj, "additionalProperties": {"type": "string"}},
            "witness": {
                "type": obj,
                "description": "a mirror module's split-brain witness seen from this node (see Monitoring)",
            },
        },
    }
    node_view = {
        "type": obj,
        "required": ["name", "modules"],
        "properties": {
            "name": {"type": "string"},
            "reachable": {"type": ["boolean", "null"]},
            "error": {"type": "string"},
            "modules": {"type": "array", "items": _ref("ModuleStatus")},
        },
    }
    return {
        "Error": {"type": obj, "required": ["error"], "properties": {"error": {"type": "string"}}},
        "ModuleStatus": module_status,
        "NodeModules": {
            "type": obj,
            "required": ["node", "modules"],
            "properties": {
                "node": {"type": "string"},
                "modules": {"type": "array", "items": _ref("ModuleStatus")},
            },
        },
        "ClusterState": {
            "type": obj,
            "required": ["node", "nodes"],
            "properties": {
                "node": {"type": "string"},
                "time": {"type": "number"},
                "nodes": {"type": "array", "items": node_view},
                "networks": {
                    "type": "array",
                    "description": "cluster.xml's heartbeat networks as safekitd runs them",
                    "items": {
                        "type": obj,
                        "required": ["name", "command", "nodes"],
                        "properties": {
                            "name": {"type": "string"},
                            "command": {"type": "boolean"},
                            "nodes": {
                                "type": "array",
                                "items": {
                                    "type": obj,
                                    "required": ["name", "addr"],
                                    "properties": {"name": {"type": "string"}, "addr": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
                "timeline": {"type": "array", "items": {"type": obj}},
            },
        },
        "NodeInfo": {
            "type": obj,
            "required": ["node", "version", "nodes", "user", "role"],
            "properties": {
                "node": {"type": "string"},
                "version": {"type": "string"},
                "nodes": {"type": "array", "items": {"type": "string"}},
                "user": {"type": "string"},
                "role": {"type": "string", "enum": ["admin", "monitor"]},
            },
        },
        "CommandRequest": {
            "type": obj,
            "required": ["command"],
            "additionalProperties": False,
            "properties": {
                "command": {"type": "string", "enum": COMMANDS + SWITCHES},
                "value": {"type": "string", "enum": ["on", "off"], "description": "errd, checker, failover"},
                "mode": {
                    "type": "string",
                    "enum": ["nosync", "fullsync"],
                    "description": "swap nosync, prim/second fullsync",
                },
            },
        },
        "CommandResult": {
            "type": obj,
            "required": ["ok"],
            "properties": {
                "ok": {"type": "boolean"},
                "message": {"type": "string"},
                "error": {"type": "string"},
                "controls": {"type": obj},
            },
        },
        "ControlRequest": {
            "type": obj,
            "required": ["cmd"],
            "additionalProperties": False,
            "properties": {
                "cmd": {"type": "string", "enum": CONTROL},
                "module": {"type": "string", "maxLength": 256},
                "value": {"type": "string", "maxLength": 256},
                "mode": {"type": "string", "maxLength": 256},
                "resource": {"type": "string", "maxLength": 256},
                "ident": {"type": "string", "maxLength": 256},
                "verbose": {"type": "boolean"},
                "all": {"type": "boolean"},
                "dry_run": {"type": "boolean", "description": "cluster_reload: only say what it would do"},
            },
        },
        "ControlAnswer": {"type": obj, "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
        "LogLines": {
            "type": obj,
            "required": ["module", "kind", "lines"],
            "properties": {
                "node": {"type": "string"},
                "module": {"type": "string"},
                "kind": {"type": "string", "enum": ["module", "script", "daemon"]},
                "lines": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Monitoring": {
            "type": obj,
            "required": ["module", "heartbeats", "replication"],
            "properties": {
                "node": {"type": "string"},
                "module": {"type": "string"},
                "time": {"type": "number"},
                "heartbeats": {
                    "type": "array",
                    "items": {
                        "type": obj,
                        "required": ["lan", "peer", "up", "rtt"],
                        "properties": {
                            "lan": {"type": "string"},
                            "peer": {"type": "string"},
                            "up": {"type": ["boolean", "null"]},
                            "received": {"type": "integer"},
                            "rtt": {"type": ["number", "null"], "description": "smoothed round trip, s"},
                            "rtt_last": {"type": ["number", "null"]},
                        },
                    },
                },
                "witness": {
                    "type": ["object", "null"],
                    "description": "this node's view of the split-brain witness; null without one",
                    "required": ["mode", "reachable", "rtt", "targets"],
                    "properties": {
                        "mode": {"type": "string", "enum": ["ping", "arbitrator"]},
                        "reachable": {"type": ["boolean", "null"], "description": "null: not probed yet"},
                        "rtt": {"type": ["number", "null"], "description": "last answer's round trip, s"},
                        "targets": {
                            "type": "array",
                            "items": {
                                "type": obj,
                                "required": ["address", "reachable"],
                                "properties": {
                                    "address": {"type": "string"},
                                    "reachable": {"type": ["boolean", "null"]},
                                    "rtt": {"type": ["number", "null"]},
                                    "last_error": {"type": ["string", "null"]},
                                    "checked_age": {"type": ["number", "null"]},
                                    "answered_age": {"type": ["number", "null"]},
                                    "failed_age": {"type": ["number", "null"]},
                                    "failures": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
                "replication": {
                    "type": ["object", "null"],
                    "description": "role, in_sync, link, resync (percent, done/total objects, bytes, "
                    "rate B/s, elapsed and remaining s), throughput (B/s), lag_seconds, ack_latency "
                    "(p50, p99, mean s and count over the last `window` s, total), in_flight_bytes/ops, "
                    "journal_ops/bytes, counters; null without <rfs>; a figure the replication process "
                    "does not report is null",
                },
            },
        },
        "History": {
            "type": obj,
            "required": ["module", "period", "fields", "samples"],
            "properties": {
                "node": {"type": "string"},
                "module": {"type": "string"},
                "period": {"type": "number"},
                "slots": {"type": "integer"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "states": {"type": "array", "items": {"type": "string"}},
                "samples": {
                    "type": "array",
                    "description": "[time, value of each field (null: not known)], oldest first",
                    "items": {"type": "array", "items": {"type": ["number", "null"]}},
                },
            },
        },
        "Reports": {
            "type": obj,
            "required": ["module", "episodes"],
            "properties": {
                "node": {"type": "string"},
                "module": {"type": "string"},
                "episodes": {
                    "type": "array",
                    "description": "as `safekit report -m AM --json`: began, ended, took, from, to, "
                    "failover, trigger, entries (offset, kind, name, duration, outcome)",
                    "items": {"type": "object"},
                },
            },
        },
        "ModuleConfig": {
            "type": obj,
            "required": ["module", "xml", "sha256"],
            "properties": {
                "node": {"type": "string"},
                "module": {"type": "string"},
                "path": {"type": "string"},
                "xml": {"type": "string"},
                "sha256": {"type": "string"},
                "loaded_sha256": {"type": ["string", "null"]},
                "differs": {"type": ["boolean", "null"]},
            },
        },
        "ValidateRequest": {
            "type": obj,
            "required": ["xml"],
            "additionalProperties": False,
            "properties": {"xml": {"type": "string", "minLength": 1}},
        },
        "Validation": {
            "type": obj,
            "required": ["valid", "errors", "warnings"],
            "properties": {
                "valid": {"type": "boolean"},
                "kind": {"type": ["string", "null"]},
                "errors": {"type": "array", "items": problem},
                "warnings": {"type": "array", "items": problem},
            },
        },
        "ApplyRequest": {
            "type": obj,
            "required": ["xml"],
            "additionalProperties": False,
            "properties": {
                "xml": {"type": "string", "minLength": 1},
                "nodes": {"type": "string", "enum": ["all", "local"], "default": "all"},
            },
        },
        "ApplyResult": {
            "type": obj,
            "required": ["ok", "nodes"],
            "properties": {"ok": {"type": "boolean"}, "nodes": {"type": obj}},
        },
        "LoginRequest": {
            "type": obj,
            "required": ["user", "password"],
            "additionalProperties": False,
            "properties": {
                "user": {"type": "string", "minLength": 1, "maxLength": 64},
                "password": {"type": "string", "maxLength": 1024},
            },
        },
        "Session": {
            "type": obj,
            "required": ["user", "role", "method"],
            "properties": {
                "user": {"type": "string"},
                "role": {"type": "string", "enum": ["admin", "monitor"]},
                "method": {"type": "string", "enum": ["session", "token", "cluster"]},
                "csrf": {"type": "string", "description": "send it as X-CSRF-Token with every change"},
            },
        },
        "Audit": {
            "type": obj,
            "required": ["entries"],
            "properties": {"entries": {"type": "array", "items": {"type": obj}}},
        },
        **_form_schemas(),
    }


def _form_schemas() -> dict[str, Any]:
    """The console's forms: the pydantic models' own JSON schemas, and what rendering answers."""
    schemas: dict[str, Any] = dict(SCHEMAS)
    field_error = {
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "the form field, dotted (lans.0.nodes.1.addr)"},
            "message": {"type": "string"},
            "line": {"type": ["integer", "null"], "description": "its line in the XML"},
        },
    }
    schemas["FormResult"] = {
        "type": "object",
        "required": ["valid", "xml", "errors", "warnings"],
        "properties": {
            "valid": {"type": "boolean"},
            "xml": {
                "type": "string",
                "description": "the XML the form makes (empty: the form's shape is wrong)",
            },
            "errors": {"type": "array", "items": field_error},
            "warnings": {"type": "array", "items": field_error},
            "files": {"type": "array", "items": {"type": "string"}},
            "error": {"type": "string"},
        },
    }
    schemas["ClusterFile"] = {
        "type": "object",
        "required": ["xml", "sha256", "form"],
        "properties": {
            "node": {"type": "string"},
            "path": {"type": "string"},
            "xml": {"type": "string"},
            "sha256": {"type": "string"},
            "loaded_sha256": {"type": ["string", "null"]},
            "differs": {"type": ["boolean", "null"]},
            "key_fingerprint": {
                "type": ["string", "null"],
                "description": "the fingerprint of the key safekitd runs with (never the key)",
            },
            "form": {"anyOf": [_ref("ClusterForm"), {"type": "null"}]},
            "errors": {"type": "array", "items": field_error},
        },
    }
    schemas["Templates"] = {
        "type": "object",
        "required": ["templates"],
        "properties": {"templates": {"type": "array", "items": {"type": "object"}}},
    }
    return schemas


def document(version: str) -> dict[str, Any]:
    m, a = "monitor", "admin"
    conflict = {"409": _json(_ERR, "refused by the node (the command does not apply in this state)")}
    missing = {"404": _json(_ERR, "no such module on this node")}
    module = [_MODULE_PARAM]
    paths: dict[str, Any] = {
        "/api/v1/session": {
            "post": _op(
                "log in (user and password): sets the session cookie, returns the CSRF token",
                "none",
                _json(_ref("Session"), "logged in"),
                body="LoginRequest",
                public=True,
                more={
                    "401": _json(_ERR, "wrong user or password"),
                    "429": _json(_ERR, "too many failed logins (Retry-After)"),
                },
            ),
            "get": _op(
                "who is calling (and the session's CSRF token)", m, _json(_ref("Session"), "the caller")
            ),
            "delete": _op("log out", m, _json(_ref("CommandResult"), "logged out")),
        },
        "/api/v1/node": {
            "get": _op("this node, its version, the cluster's nodes", m, _json(_ref("NodeInfo"), "node"))
        },
        "/api/v1/cluster": {
            "get": _op(
                "every node's modules (peers through their API)", m, _json(_ref("ClusterState"), "states")
            )
        },
        "/api/v1/events": {
            "get": _op(
                "live cluster state as Server-Sent Events (event: state, data: ClusterState)",
                m,
                {
                    "description": "an event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
            )
        },
        "/api/v1/modules": {
            "get": _op(
                "this node's modules: state, readiness, resources", m, _json(_ref("NodeModules"), "modules")
            )
        },
        "/api/v1/modules/{module}": {
            "get": _op(
                "one module on this node",
                m,
                _json(_ref("ModuleStatus"), "the module"),
                params=module,
                more=missing,
            )
        },
        "/api/v1/modules/{module}/commands": {
            "post": _op(
                "run a command on this node's module (start, stop, swap, ...; errd/checker/failover on|off)",
                a,
                _json(_ref("CommandResult"), "done"),
                body="CommandRequest",
                params=[_MODULE_PARAM, _NODE],
                more={**missing, **conflict, **_PEER},
            )
        },
        "/api/v1/modules/{module}/log": _module_get(
            "the module log, the scripts' log, or the daemon log",
            "LogLines",
            "last lines",
            _query("kind", {"type": "string", "enum": ["module", "script", "daemon"]}),
            _LINES,
        ),
        "/api/v1/modules/{module}/monitoring": _module_get(
            "heartbeat networks (up or down per peer, round trip), the witness as this node sees it, "
            "and replication figures (lag, ack latency, resync progress)",
            "Monitoring",
            "figures now",
        ),
        "/api/v1/modules/{module}/history": _module_get(
            "the module's samples of the last 24 hours (one every 10 s), optionally one per step",
            "History",
            "samples",
            _query("since", {"type": "number"}, "only samples after this time (Unix seconds)"),
            _query(
                "step",
                {"type": "number", "minimum": 0, "maximum": 86400},
                "one row per step seconds (averages, worst lag, last state)",
            ),
        ),
        "/api/v1/modules/{module}/report": _module_get(
            "failover reports: the module's last episodes on this node, step by step (safekit report)",
            "Reports",
            "episodes, oldest first",
            _query("last", {"type": "integer", "minimum": 1, "maximum": 100}),
        ),
        "/api/v1/modules/{module}/config": {
            "get": _op(
                "the module's userconfig.xml",
                m,
                _json(_ref("ModuleConfig"), "the file"),
                params=module,
                more=missing,
            ),
            "put": _op(
                "validate a userconfig.xml, install it on this node or every node, apply it (module stopped)",
                a,
                _json(_ref("ApplyResult"), "applied on every node"),
                body="ApplyRequest",
                params=module,
                more={
                    **missing,
                    "409": _json(_ref("Error"), "a node runs the module, or refused the configuration"),
                    "422": _json(_ref("Validation"), "not valid (errors with their lines)"),
                },
            ),
        },
        "/api/v1/config/validate": {
            "post": _op(
                "validate a userconfig.xml or cluster.xml",
                m,
                _json(_ref("Validation"), "result"),
                body="ValidateRequest",
            )
        },
        "/api/v1/control": {
            "post": _op(
                "a control-socket request, as `safekit -H` sends it (admin for commands that change things)",
                m,
                _json(_ref("ControlAnswer"), "the node's answer"),
                body="ControlRequest",
            )
        },
        "/api/v1/cluster/config": {
            "get": _op(
                "cluster.xml of this node as a form (and its text, sha256, the key's fingerprint only)",
                m,
                _json(_ref("ClusterFile"), "the file"),
                more={"404": _json(_ERR, "no cluster.xml"), **_RENDERER},
            ),
            "put": _op(
                "install a cluster.xml made from the form on this node or every node (each checks first)",
                a,
                _json(
                    _ref("ApplyResult"),
                    "written on every node, and taken live by every safekitd (`reload`) when every "
                    "node accepts it, else from their next start (each node's `reload` says why)",
                ),
                body="ClusterApply",
                more={
                    **_RENDERER,
                    "409": _json(_ERR, "a node is not in it, or a module refers to a LAN or node it lacks"),
                    "422": _json(_ref("FormResult"), "not valid (errors by field)"),
                },
            ),
        },
        "/api/v1/cluster/reload": {
            "post": _op(
                "each node's safekitd takes its cluster.xml live where no running module depends on "
                "the change (`safekit cluster reload`); refused ones say why",
                a,
                _json(_ref("ApplyResult"), "each node's answer: applied, changes, refusals"),
                body="ClusterReload",
            )
        },
        "/api/v1/forms/cluster": {
            "post": _op(
                "render a cluster form to cluster.xml and check it (errors by field)",
                m,
                _json(_ref("FormResult"), "the XML and its problems"),
                body="ClusterForm",
                more=_RENDERER,
            )
        },
        "/api/v1/forms/module": {
            "post": _op(
                "render a new module (template and values, or a form) to userconfig.xml and check it",
                m,
                _json(_ref("FormResult"), "the XML and its problems"),
                body="ModuleRequest",
                more=_RENDERER,
            )
        },
        "/api/v1/templates": {
            "get": _op(
                "the module library's templates and their site values",
                m,
                _json(_ref("Templates"), "templates"),
                more=_RENDERER,
            )
        },
        "/api/v1/modules/{module}/install": {
            "post": _op(
                "install a new module made from a template or a form on this node or every node (stopped)",
                a,
                _json(_ref("ApplyResult"), "installed and loaded (stopped) on every node"),
                body="ModuleInstall",
                params=module,
                more={
                    **_RENDERER,
                    "404": _json(_ERR, "not a module name"),
                    "409": _json(_ERR, "a node runs the module, or refused it"),
                    "422": _json(_ref("FormResult"), "not valid (errors by field)"),
                },
            )
        },
        "/api/v1/audit": {
            "get": _op("the last lines of the audit log", a, _json(_ref("Audit"), "entries"), params=[_LINES])
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "safekit node API",
            "version": version,
            "description": "REST API of a safekit node (safekitd), HTTPS on port 9453. See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "safekit api token create"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "safekit_session",
                    "description": "POST /api/v1/session; changes also need the X-CSRF-Token header",
                },
            },
        },
    }
