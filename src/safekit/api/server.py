"""The API server inside safekitd: uvicorn (h11, no websockets, no lifespan) on the daemon's own
event loop, HTTPS on 9453 by default.

safekitd owns the signals (SIGTERM stops the modules first), so uvicorn's signal capture is turned
off; its housekeeping tick runs once a second instead of ten times, to keep an idle daemon idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import uvicorn

from safekit.api import config_forms
from safekit.api.app import Api, ApiContext, NodeControl, create_app
from safekit.api.audit import AuditLog
from safekit.api.auth import ClusterTokens, CredentialStore
from safekit.api.client import (
    ApiClient,
    NodeAddress,
    client_context,
    cluster_token_source,
    node_addresses,
)
from safekit.api.files import DEFAULT_PORT, ApiFiles
from safekit.api.history import History
from safekit.config import ClusterConfig, load_cluster
from safekit.host.paths import Paths
from safekit.membership import clusterkey

log = logging.getLogger("safekit.api")


class ApiServerError(Exception):
    """The API cannot be served (certificates, port); safekitd goes on without it."""


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # safekitd handles SIGTERM/SIGINT itself

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # counter 0: refresh the Date header every tick
            await asyncio.sleep(1.0)


@dataclass
class ApiSettings:
    address: str = "0.0.0.0"  # noqa: S104 - the console is reached from operators' machines
    port: int = DEFAULT_PORT
    tls: bool = True


class ApiServer:
    def __init__(self, node: NodeControl, paths: Paths, settings: ApiSettings) -> None:
        self.node = node
        self.paths = paths
        self.settings = settings
        self.files = ApiFiles.from_paths(paths)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._api: Api | None = None
        self.history: History | None = None

    async def start(self) -> None:
        name = self.node.node_name or ""
        try:
            key = clusterkey.load_key(self.paths.cluster_key)
            nodes = node_addresses(load_cluster(self.paths.cluster_xml))
        except Exception as exc:
            raise ApiServerError(f"API not started: {exc}") from exc
        own = nodes[name].addresses if name in nodes else ()
        if self.settings.tls:
            await self._ensure_certificates(name, own)
        peers: dict[str, ApiClient] = {}
        context: ssl.SSLContext | None = None
        token = cluster_token_source(key, name)
        if self.files.trust.is_file():
            context = client_context(self.files.trust)
            peers = {
                n: ApiClient(addr, context, token, self.settings.port)
                for n, addr in nodes.items()
                if n != name
            }
        listeners = getattr(self.node, "cluster_listeners", None)  # safekitd's Node: live reloads
        if isinstance(listeners, list):
            port = self.settings.port
            listeners.append(
                lambda cluster: follow_cluster(
                    peers, cluster, own=name, context=context, token=token, port=port
                )
            )
        metrics = getattr(self.node, "metrics", None)  # safekitd's Node (tests may give a bare control)
        monitor = metrics.monitoring if metrics is not None else None
        self.history = History(self.paths.module_var, self._local_modules, monitor or _nothing)
        ctx = ApiContext(
            monitor=monitor,
            history=self.history,
            node=self.node,
            paths=self.paths,
            store=CredentialStore(self.files.users, self.files.tokens),
            audit=AuditLog(self.files.audit_log),
            cluster_tokens=ClusterTokens(key),
            peers=peers,
            cookie_secure=self.settings.tls,
        )
        app, self._api = create_app(ctx, config_forms.routes)
        sock = self._bind()
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            http="h11",
            ws="none",
            interface="asgi3",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
            limit_concurrency=100,
            ssl_certfile=str(self.files.server_pair()[0]) if self.settings.tls else None,
            ssl_keyfile=str(self.files.server_pair()[1]) if self.settings.tls else None,
            ssl_version=ssl.PROTOCOL_TLS_SERVER,
            ssl_ciphers="ECDHE+AESGCM:ECDHE+CHACHA20",
        )
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ApiServerError(f"API not started: TLS certificate: {exc}") from exc
        if config.ssl is not None:
            config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server = _EmbeddedServer(config)
        self.history.start()
        self._task = asyncio.create_task(self._serve(sock))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.02)
        scheme = "https" if self.settings.tls else "http"
        log.info("API and console on %s://%s:%d/", scheme, self.settings.address, self.settings.port)

    async def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit:  # uvicorn exits on a startup failure: never take safekitd down with it
            log.error("API server stopped at startup")
        except Exception:
            log.exception("API server failed")

    async def _local_modules(self) -> list[dict[str, Any]]:
        answer = await self.node.handle({"cmd": "state", "verbose": True})
        modules: list[dict[str, Any]] = answer.get("modules", [])
        return modules

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.settings.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.settings.address, self.settings.port))
        except OSError as exc:
            sock.close()
            raise ApiServerError(
                f"API not started: cannot listen on {self.settings.address}:{self.settings.port}: "
                f"{exc.strerror}"
            ) from exc
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def _ensure_certificates(self, name: str, addresses: tuple[str, ...]) -> None:
        """ca.crt, node.crt and node.key, made by a child process (cryptography stays out of safekitd)."""
        if self.files.user_cert.is_file() and self.files.user_key.is_file():
            return
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "safekit.api.certs",
            "--node",
            name,
            *addresses,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ApiServerError(f"API not started: certificates: {err.decode(errors='replace').strip()}")
        if out.strip() == b"written":
            log.info("API certificate for %s written in %s (cluster CA)", name, self.files.directory)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        if self._api is not None:
            await self._api.watcher.stop()
        if self.history is not None:
            await self.history.stop()
        try:
            await asyncio.wait_for(self._task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()


async def start_api(node: NodeControl, paths: Paths, address: str, port: int) -> ApiServer | None:
    """Start the API for safekitd; on failure say why in the log and go on without it (port 0: off)."""
    if port == 0:
        log.info("API and console off (--api-port 0)")
        return None
    server = ApiServer(node, paths, ApiSettings(address=address, port=port))
    try:
        await server.start()
    except ApiServerError as exc:
        log.error("%s", exc)
        return None
    return server


def follow_cluster(
    peers: dict[str, ApiClient],
    cluster: ClusterConfig,
    *,
    own: str,
    context: ssl.SSLContext | None,
    token: Callable[[], str],
    port: int,
) -> None:
    """After a live cluster.xml reload (daemon/cluster_reload.py): each peer is called at its
    addresses of the new file, those it had before first (the peers' certificates name the
    addresses they started with: a new one is in them from their next start), and a node added to
    the file becomes a peer (forwarding and apply reach it; the live view watches it from the next
    start). A node gone from the file stays a peer until then (shown unreachable)."""
    nodes = node_addresses(cluster)
    for name, client in peers.items():
        if name in nodes:
            before = client.node.addresses
            fresh = nodes[name].addresses
            ordered = tuple(a for a in before if a in fresh) + tuple(a for a in fresh if a not in before)
            client.node = NodeAddress(name, ordered)
    if context is None:
        return
    for name, address in nodes.items():
        if name not in peers and name != own:
            peers[name] = ApiClient(address, context, token, port)


def _nothing(module: str) -> dict[str, Any] | None:
    return None
