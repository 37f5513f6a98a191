"""Azure Resource Manager, Microsoft.Network, the REST calls of the azure_route and azure_nic_ip
providers (azure-mgmt-network), as strict as ARM where it matters:

- a bearer token is required (401 otherwise), and exactly `api_version` (400
  InvalidApiVersionParameter otherwise);
- routes: GET, PUT (addressPrefix a CIDR, nextHopType from the enum, nextHopIpAddress iff
  VirtualAppliance); route tables: GET;
- network interfaces: list, GET, PUT (location, IP configurations with a subnet id, exactly one
  primary; a private IP that another NIC has is 400 PrivateIPAddressIsAllocated);
- writes are long-running: 201 + Azure-AsyncOperation, whose status is InProgress for `lro_polls`
  reads, then Succeeded (the resource shows provisioningState Updating meanwhile).
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import secrets
from collections.abc import Callable
from typing import Any

from fakes.http import HttpFake, Reply, Request

NEXT_HOP_TYPES = ("VirtualNetworkGateway", "VnetLocal", "Internet", "VirtualAppliance", "None")


class AzureFake(HttpFake):
    def __init__(
        self, subscription: str, resource_group: str, api_version: str, location: str = "westeurope"
    ) -> None:
        super().__init__()
        self.subscription, self.resource_group, self.api_version, self.location = (
            subscription,
            resource_group,
            api_version,
            location,
        )
        self.route_tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.nics: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, list[Any]] = {}
        """id -> [polls left, resource to mark Succeeded at the end]."""
        self.lro_polls = 0
        self.valid_token: Callable[[str], bool] = lambda token: token.startswith("azure-token-")
        self._counter = itertools.count(1)

    @property
    def rg_path(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    # -- setup helpers
    def add_route_table(self, name: str) -> None:
        self.route_tables[name] = {}

    def add_nic(self, name: str, mac: str, ip: str, subnet: str = "default") -> None:
        nic_id = f"{self.rg_path}/providers/Microsoft.Network/networkInterfaces/{name}"
        subnet_id = f"{self.rg_path}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/{subnet}"
        self.nics[name] = {
            "id": nic_id,
            "name": name,
            "type": "Microsoft.Network/networkInterfaces",
            "location": self.location,
            "etag": f'W/"{secrets.token_hex(4)}"',
            "properties": {
                "provisioningState": "Succeeded",
                "macAddress": mac,
                "enableIPForwarding": True,
                "ipConfigurations": [
                    {
                        "id": f"{nic_id}/ipConfigurations/ipconfig1",
                        "name": "ipconfig1",
                        "properties": {
                            "privateIPAddress": ip,
                            "privateIPAllocationMethod": "Dynamic",
                            "subnet": {"id": subnet_id},
                            "primary": True,
                            "provisioningState": "Succeeded",
                        },
                    }
                ],
            },
        }

    def error_body(self, status: int, message: str) -> Any:
        code = {400: "BadRequest", 401: "AuthenticationFailed", 404: "NotFound", 429: "TooManyRequests"}.get(
            status, "InternalServerError"
        )
        return {"error": {"code": code, "message": message}}

    def _err(self, status: int, code: str, message: str) -> Reply:
        return Reply(status, {"error": {"code": code, "message": message}})

    # -- long-running operations
    def _lro(self, resource: dict[str, Any], status: int) -> Reply:
        op_id = f"{next(self._counter)}-{secrets.token_hex(4)}"
        resource["properties"]["provisioningState"] = "Updating" if self.lro_polls else "Succeeded"
        self.operations[op_id] = [self.lro_polls, resource]
        url = (
            f"{self.url}/subscriptions/{self.subscription}/providers/Microsoft.Network/locations/"
            f"{self.location}/operations/{op_id}?api-version={self.api_version}"
        )
        return Reply(status, resource, {"Azure-AsyncOperation": url, "Retry-After": "0"})

    # -- dispatch
    def handle(self, request: Request) -> Reply:  # noqa: PLR0911 - one answer per case, as the API has them
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not self.valid_token(auth.removeprefix("Bearer ")):
            return self._err(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        versions = request.query.get("api-version", [])
        if versions != [self.api_version]:
            return self._err(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{versions}' is invalid. Use {self.api_version}.",
            )
        path = request.path
        provider = f"/subscriptions/{self.subscription}/providers/Microsoft.Network"
        ops_prefix = f"{provider}/locations/{self.location}/operations/"
        if path.startswith(ops_prefix) and request.method == "GET":
            entry = self.operations.get(path.removeprefix(ops_prefix))
            if entry is None:
                return self._err(404, "NotFound", "operation not found")
            if entry[0] > 0:
                entry[0] -= 1
                return Reply(200, {"status": "InProgress"}, {"Retry-After": "0"})
            entry[1]["properties"]["provisioningState"] = "Succeeded"
            return Reply(200, {"status": "Succeeded"})
        prefix = f"{self.rg_path}/providers/Microsoft.Network/"
        if not path.startswith(prefix):
            return self._err(404, "ResourceGroupNotFound", f"no such resource group or path {path}")
        parts = path.removeprefix(prefix).split("/")
        match request.method, parts:
            case "GET", ["routeTables", table]:
                if table not in self.route_tables:
                    return self._err(404, "NotFound", f"route table {table} not found")
                return Reply(
                    200, {"name": table, "properties": {"routes": list(self.route_tables[table].values())}}
                )
            case "GET", ["routeTables", table, "routes", name]:
                route = self.route_tables.get(table, {}).get(name)
                return (
                    Reply(200, route)
                    if route
                    else self._err(404, "NotFound", f"route {table}/{name} not found")
                )
            case "PUT", ["routeTables", table, "routes", name]:
                return self._put_route(table, name, request.body)
            case "GET", ["networkInterfaces"]:
                return Reply(200, {"value": list(self.nics.values())})
            case "GET", ["networkInterfaces", name]:
                nic = self.nics.get(name)
                return Reply(200, nic) if nic else self._err(404, "NotFound", f"NIC {name} not found")
            case "PUT", ["networkInterfaces", name]:
                return self._put_nic(name, request.body)
        return self._err(404, "NotFound", f"no such endpoint {request.method} {path}")

    def _put_route(self, table: str, name: str, body: Any) -> Reply:
        if table not in self.route_tables:
            return self._err(404, "NotFound", f"route table {table} not found")
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            return self._err(400, "InvalidRequestFormat", "properties missing")
        try:
            ipaddress.IPv4Network(props.get("addressPrefix", ""))
        except ValueError:
            return self._err(
                400, "InvalidRouteAddressPrefix", f"bad addressPrefix {props.get('addressPrefix')!r}"
            )
        hop_type, hop_ip = props.get("nextHopType"), props.get("nextHopIpAddress")
        if hop_type not in NEXT_HOP_TYPES:
            return self._err(400, "InvalidRequestFormat", f"bad nextHopType {hop_type!r}")
        if (hop_type == "VirtualAppliance") != bool(hop_ip):
            return self._err(
                400, "InvalidNextHopIpAddress", "nextHopIpAddress goes with VirtualAppliance only"
            )
        existed = name in self.route_tables[table]
        route = {
            "id": f"{self.rg_path}/providers/Microsoft.Network/routeTables/{table}/routes/{name}",
            "name": name,
            "type": "Microsoft.Network/routeTables/routes",
            "etag": f'W/"{secrets.token_hex(4)}"',
            "properties": {
                k: v for k, v in props.items() if k in ("addressPrefix", "nextHopType", "nextHopIpAddress")
            },
        }
        self.route_tables[table][name] = route
        return self._lro(route, 200 if existed else 201)

    def _put_nic(self, name: str, body: Any) -> Reply:  # noqa: PLR0911 - one answer per case, as the API has them
        if name not in self.nics:
            return self._err(404, "NotFound", f"NIC {name} not found (this fake does not create NICs)")
        if not isinstance(body, dict) or body.get("location") != self.location:
            return self._err(400, "LocationRequired", "the NIC's location is required")
        configs = (body.get("properties") or {}).get("ipConfigurations") or []
        if not configs:
            return self._err(400, "NicMustHaveIpConfiguration", "a NIC needs an IP configuration")
        primaries = [c for c in configs if (c.get("properties") or {}).get("primary")]
        if len(primaries) != 1:
            return self._err(
                400, "NicMustHaveOnePrimaryIpConfiguration", f"{len(primaries)} primary IP configurations"
            )
        for config in configs:
            props = config.get("properties") or {}
            if not config.get("name") or not (props.get("subnet") or {}).get("id"):
                return self._err(
                    400, "InvalidRequestFormat", "an IP configuration needs a name and subnet.id"
                )
            address = props.get("privateIPAddress")
            for other_name, other in self.nics.items():
                if other_name == name:
                    continue
                for other_config in other["properties"]["ipConfigurations"]:
                    if address and other_config["properties"].get("privateIPAddress") == address:
                        return self._err(
                            400,
                            "PrivateIPAddressIsAllocated",
                            f"IP configuration {config['name']} is using the private IP address {address} "
                            f"which is already allocated to resource {other['id']}",
                        )
        nic = self.nics[name]
        new_configs = []
        for config in configs:
            item = copy.deepcopy(config)
            item["id"] = f"{nic['id']}/ipConfigurations/{config['name']}"
            item["properties"]["provisioningState"] = "Succeeded"
            new_configs.append(item)
        nic["properties"]["ipConfigurations"] = new_configs
        nic["etag"] = f'W/"{secrets.token_hex(4)}"'
        return self._lro(nic, 200)
