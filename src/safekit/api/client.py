"""The API's client side: how one node calls another (cluster state, configuration to all nodes)
and how `safekit -H NODE|"*" CMD` runs a command elsewhere. Standard library only (http.client,
ssl); TLS is verified against the cluster CA (or the operator's trust.pem), host names included.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safekit.api.auth import make_cluster_token
from safekit.api.files import DEFAULT_PORT, ApiFiles
from safekit.config import ClusterConfig
from safekit.host.paths import Paths
from safekit.membership import clusterkey

MAX_ANSWER = 16 * 1024 * 1024


class ApiClientError(Exception):
    """The node could not be reached, refused the TLS handshake, or sent no JSON; one line."""


def client_context(trust: Path) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(trust))
    except (OSError, ssl.SSLError) as exc:
        raise ApiClientError(f"{trust}: cannot load the CA to verify nodes with ({exc})") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass
class NodeAddress:
    name: str
    addresses: tuple[str, ...]


def node_addresses(cluster: ClusterConfig) -> dict[str, NodeAddress]:
    found: dict[str, list[str]] = {}
    for lan in cluster.lans:
        for node in lan.nodes:
            found.setdefault(node.name, [])
            if node.addr not in found[node.name]:
                found[node.name].append(node.addr)
    return {name: NodeAddress(name, tuple(addrs)) for name, addrs in found.items()}


class ApiClient:
    """Calls one node's API, trying its addresses in cluster.xml order."""

    def __init__(
        self,
        node: NodeAddress,
        context: ssl.SSLContext,
        token: Callable[[], str],
        port: int = DEFAULT_PORT,
    ) -> None:
        self.node = node
        self.context = context
        self.token = token
        self.port = port

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> tuple[int, dict[str, Any]]:
        errors = []
        for address in self.node.addresses:
            try:
                return self._request(address, method, path, body, timeout)
            except ssl.SSLError as exc:  # a certificate we do not trust: do not try elsewhere
                raise ApiClientError(f"{self.node.name} ({address}): TLS refused: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
        raise ApiClientError(f"{self.node.name}: not reachable ({'; '.join(errors) or 'no address'})")

    def _request(
        self, address: str, method: str, path: str, body: dict[str, Any] | None, timeout: float
    ) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPSConnection(address, self.port, context=self.context, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER + 1)
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ApiClientError(f"{self.node.name}: answer is not JSON (HTTP {response.status})") from exc
        if not isinstance(data, dict):
            raise ApiClientError(f"{self.node.name}: answer is not a JSON object")
        return response.status, data


def cluster_token_source(key: bytes, who: str) -> Callable[[], str]:
    return lambda: make_cluster_token(key, who)


def cli_token_source(paths: Paths, who: str) -> Callable[[], str]:
    """`SAFEKIT_API_TOKEN` when set (any machine), else a cluster token (root on a node)."""
    explicit = os.environ.get("SAFEKIT_API_TOKEN")
    if explicit:
        return lambda: explicit
    try:
        key = clusterkey.load_key(paths.cluster_key)
    except clusterkey.ClusterKeyError as exc:
        raise ApiClientError(f"{exc}; or give a token in SAFEKIT_API_TOKEN") from exc
    return cluster_token_source(key, who)


def resolve_hosts(spec: str, nodes: dict[str, NodeAddress]) -> list[NodeAddress]:
    """`*` is every node of cluster.xml; else names (or addresses) separated by commas."""
    if spec == "*":
        return list(nodes.values())
    chosen = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item in nodes:
            chosen.append(nodes[item])
            continue
        by_address = [n for n in nodes.values() if item in n.addresses]
        if not by_address:
            known = ", ".join(nodes) or "none"
            raise ApiClientError(f"-H {item}: not a node of cluster.xml (nodes: {known})")
        chosen.append(NodeAddress(by_address[0].name, (item,)))
    return chosen


def who_am_i() -> str:
    try:
        user = os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def remote_transport(client: ApiClient) -> Callable[[dict[str, Any], float], dict[str, Any]]:
    """A replacement for the control socket: the same request, sent to /api/v1/control."""

    def send(payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        status, answer = client.request("POST", "/api/v1/control", payload, timeout=timeout)
        if status in (401, 403, 429) or "ok" not in answer:
            return {"ok": False, "error": f"{client.node.name}: HTTP {status}: {answer.get('error')}"}
        return answer

    return send


def targets_from(
    paths: Paths, spec: str, cluster_loader: Callable[[Path], ClusterConfig]
) -> Sequence[NodeAddress]:
    return resolve_hosts(spec, node_addresses(cluster_loader(paths.cluster_xml)))


__all__ = [
    "ApiClient",
    "ApiClientError",
    "ApiFiles",
    "NodeAddress",
    "cli_token_source",
    "client_context",
    "cluster_token_source",
    "node_addresses",
    "remote_transport",
    "resolve_hosts",
    "who_am_i",
]
