"""GCP Compute Engine, the REST calls of the gcp_route and gcp_alias_ip providers
(google-cloud-compute, REST transport), as strict as the real API where it matters:

- a bearer token is required (401 otherwise);
- routes: get / delete / insert (no update; insert of an existing name is 409 alreadyExists; a
  route needs name, network, destRange and exactly one next hop);
- instances: get, aggregatedList, updateNetworkInterface (the fingerprint must match, else 412
  conditionNotMet; an alias range already on another instance of the network is 400);
- operations: every change is an operation, applied only when it completes - after `lro_polls`
  reads of it (0: done at once), so a client that does not wait sees the old state.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakes.http import HttpFake, Reply, Request

BASE = "https://compute.googleapis.com/compute/v1"
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_PREFIX = "/compute/v1/projects/"


@dataclass
class Operation:
    name: str
    kind: str  # "global" or a zone
    target: str
    apply: Callable[[], None]
    polls_left: int
    status: str = "RUNNING"
    error: dict[str, Any] | None = None


@dataclass
class GcpState:
    project: str
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(zone, name) -> instance resource (camelCase, as the API writes it)."""


class GcpFake(HttpFake):
    def __init__(self, project: str, tokens: Callable[[], set[str]] | None = None) -> None:
        super().__init__()
        self.state = GcpState(project)
        self.operations: dict[str, Operation] = {}
        self.lro_polls = 0
        self._counter = itertools.count(1)
        self.tokens = tokens
        """Valid bearer tokens (default: any 'gcp-token-*')."""

    # -- setup helpers
    def add_instance(self, zone: str, name: str, ip: str, network: str = "default") -> None:
        self.state.instances[(zone, name)] = {
            "kind": "compute#instance",
            "id": str(next(self._counter) + 1000),
            "name": name,
            "zone": f"{BASE}/projects/{self.state.project}/zones/{zone}",
            "status": "RUNNING",
            "canIpForward": True,
            "selfLink": f"{BASE}/projects/{self.state.project}/zones/{zone}/instances/{name}",
            "networkInterfaces": [
                {
                    "kind": "compute#networkInterface",
                    "name": "nic0",
                    "network": f"{BASE}/projects/{self.state.project}/global/networks/{network}",
                    "networkIP": ip,
                    "aliasIpRanges": [],
                    "fingerprint": secrets.token_hex(8),
                }
            ],
        }

    def error_body(self, status: int, message: str) -> Any:
        reason = {
            400: "invalid",
            401: "required",
            404: "notFound",
            409: "alreadyExists",
            412: "conditionNotMet",
            429: "rateLimitExceeded",
        }.get(status, "backendError")
        return {
            "error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}
        }

    def _err(self, status: int, message: str) -> Reply:
        return Reply(status, self.error_body(status, message))

    # -- operations
    def _operation(self, kind: str, op_type: str, target: str, apply: Callable[[], None]) -> Reply:
        name = f"operation-{next(self._counter)}-{secrets.token_hex(4)}"
        op = Operation(name, kind, target, apply, self.lro_polls)
        self.operations[name] = op
        if op.polls_left <= 0:
            self._complete(op)
        return Reply(200, self._op_body(op, op_type))

    def _complete(self, op: Operation) -> None:
        try:
            op.apply()
        except _Failure as failure:
            op.error = {"errors": [{"code": failure.code, "message": failure.message}]}
        op.status = "DONE"

    def _op_body(self, op: Operation, op_type: str = "") -> dict[str, Any]:
        where = "global" if op.kind == "global" else f"zones/{op.kind}"
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(abs(hash(op.name)) % 10**12),
            "name": op.name,
            "operationType": op_type,
            "targetLink": op.target,
            "status": op.status,
            "progress": 100 if op.status == "DONE" else 50,
            "selfLink": f"{BASE}/projects/{self.state.project}/{where}/operations/{op.name}",
        }
        if op.kind != "global":
            body["zone"] = f"{BASE}/projects/{self.state.project}/zones/{op.kind}"
        if op.error:
            body["error"] = op.error
        return body

    # -- dispatch
    def handle(self, request: Request) -> Reply:  # noqa: PLR0911 - one answer per case, as the API has them
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        valid = self.tokens() if self.tokens else None
        if (
            not auth.startswith("Bearer ")
            or (valid is not None and token not in valid)
            or not token.startswith("gcp-token-")
        ):
            return self._err(401, "Request is missing required authentication credential.")
        if not request.path.startswith(_PREFIX):
            return self._err(404, f"no such endpoint {request.path}")
        project, _, rest = request.path.removeprefix(_PREFIX).partition("/")
        if project != self.state.project:
            return self._err(404, f"The resource 'projects/{project}' was not found")
        parts = rest.split("/")
        match request.method, parts:
            case "GET", ["global", "routes", name]:
                route = self.state.routes.get(name)
                return (
                    Reply(200, route)
                    if route
                    else self._err(
                        404, f"The resource 'projects/{project}/global/routes/{name}' was not found"
                    )
                )
            case "DELETE", ["global", "routes", name]:
                return self._delete_route(name)
            case "POST", ["global", "routes"]:
                return self._insert_route(request.body)
            case "GET", ["global", "operations", name]:
                return self._get_operation(name, "global")
            case "GET", ["zones", zone, "operations", name]:
                return self._get_operation(name, zone)
            case "GET", ["zones", zone, "instances", name]:
                instance = self.state.instances.get((zone, name))
                return Reply(200, instance) if instance else self._err(404, f"instance {name} not found")
            case "GET", ["aggregated", "instances"]:
                items: dict[str, Any] = {}
                for (zone, _name), instance in sorted(self.state.instances.items()):
                    items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(instance)
                return Reply(200, {"kind": "compute#instanceAggregatedList", "items": items})
            case "PATCH", ["zones", zone, "instances", name, "updateNetworkInterface"]:
                return self._update_nic(zone, name, request)
        return self._err(404, f"no such endpoint {request.method} {request.path}")

    def _get_operation(self, name: str, kind: str) -> Reply:
        op = self.operations.get(name)
        if op is None or op.kind != kind:
            return self._err(404, f"operation {name} not found")
        if op.status != "DONE":
            op.polls_left -= 1
            if op.polls_left <= 0:
                self._complete(op)
        return Reply(200, self._op_body(op))

    def _delete_route(self, name: str) -> Reply:
        if name not in self.state.routes:
            return self._err(
                404, f"The resource 'projects/{self.state.project}/global/routes/{name}' was not found"
            )
        target = self.state.routes[name]["selfLink"]

        def apply() -> None:
            self.state.routes.pop(name, None)

        return self._operation("global", "delete", target, apply)

    def _insert_route(self, body: Any) -> Reply:  # noqa: PLR0911 - one answer per case, as the API has them
        if not isinstance(body, dict):
            return self._err(400, "Invalid JSON payload")
        name = body.get("name", "")
        if not _NAME.match(name):
            return self._err(400, f"Invalid value for field 'resource.name': '{name}'")
        for required in ("network", "destRange"):
            if not body.get(required):
                return self._err(400, f"Required field 'resource.{required}' not specified")
        hops = [k for k in body if k.startswith("nextHop")]
        if len(hops) != 1:
            return self._err(400, f"a route needs exactly one next hop, got {hops}")
        try:
            ipaddress.IPv4Network(body["destRange"])
        except ValueError:
            return self._err(400, f"Invalid value for field 'resource.destRange': '{body['destRange']}'")
        if name in self.state.routes:
            return self._err(
                409, f"The resource 'projects/{self.state.project}/global/routes/{name}' already exists"
            )
        hop = body.get("nextHopInstance", "")
        m = re.search(r"(?:^|/)projects/[^/]+/zones/([^/]+)/instances/([^/]+)$", hop)
        if hop and (m is None or (m.group(1), m.group(2)) not in self.state.instances):
            return self._err(400, f"Invalid value for field 'resource.nextHopInstance': '{hop}'")
        route = dict(body)
        if hop and m:
            route["nextHopInstance"] = (
                f"{BASE}/projects/{self.state.project}/zones/{m.group(1)}/instances/{m.group(2)}"
            )
        route.update(
            kind="compute#route",
            id=str(next(self._counter) + 5000),
            network=body["network"]
            if body["network"].startswith("https://")
            else f"{BASE}/{body['network']}",
            priority=body.get("priority", 1000),
            selfLink=f"{BASE}/projects/{self.state.project}/global/routes/{name}",
        )

        def apply() -> None:
            if name in self.state.routes:
                raise _Failure("RESOURCE_ALREADY_EXISTS", f"route {name} already exists")
            self.state.routes[name] = route

        return self._operation("global", "insert", route["selfLink"], apply)

    def _update_nic(self, zone: str, name: str, request: Request) -> Reply:
        instance = self.state.instances.get((zone, name))
        if instance is None:
            return self._err(404, f"instance {name} not found")
        nic_name = (request.query.get("networkInterface") or [""])[0]
        nic = next((n for n in instance["networkInterfaces"] if n["name"] == nic_name), None)
        if nic is None:
            return self._err(400, f"Invalid value for field 'networkInterface': '{nic_name}'")
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("fingerprint") != nic["fingerprint"]:
            return self._err(412, "Supplied fingerprint does not match current metadata fingerprint.")
        unknown = set(body) - {"aliasIpRanges", "fingerprint", "name"}
        if unknown:
            return self._err(400, f"only aliasIpRanges can be updated here, not {sorted(unknown)}")
        ranges = []
        for item in body.get("aliasIpRanges", []):
            text = item.get("ipCidrRange", "")
            try:
                ranges.append(
                    dict(item, ipCidrRange=str(ipaddress.IPv4Network(text if "/" in text else f"{text}/32")))
                )
            except ValueError:
                return self._err(400, f"Invalid value for field 'ipCidrRange': '{text}'")
        target = instance["selfLink"]

        def apply() -> None:
            for (other_zone, other_name), other in self.state.instances.items():
                if (other_zone, other_name) == (zone, name):
                    continue
                for other_nic in other["networkInterfaces"]:
                    used = {r["ipCidrRange"] for r in other_nic["aliasIpRanges"]}
                    clash = used & {r["ipCidrRange"] for r in ranges}
                    if other_nic["network"] == nic["network"] and clash:
                        raise _Failure(
                            "IP_IN_USE_BY_ANOTHER_RESOURCE",
                            f"IP range {sorted(clash)} is in use by {other_name}",
                        )
            nic["aliasIpRanges"] = ranges
            nic["fingerprint"] = secrets.token_hex(8)

        return self._operation(zone, "updateNetworkInterface", target, apply)


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
