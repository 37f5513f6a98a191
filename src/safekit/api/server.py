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

from safekit.aio import within
from safekit.api import config_forms
from safekit.api.app import Api, ApiContext, NodeControl, create_app
from safekit.api.audit import AuditLog
from safekit.api.auth import ClusterTokens, CredentialStore
from safekit.api.client import ApiClient, NodeAddress, client_context, cluster_token_source
from safekit.api.files import DEFAULT_PORT, ApiFiles
from safekit.api.follow import ApiView, FollowPlan, derive, plan_follow
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
        self._view: ApiView | None = None
        self._peers: dict[str, ApiClient] = {}
        self._context: ssl.SSLContext | None = None
        self._token: Callable[[], str] = str

    async def start(self) -> None:
        name = self.node.node_name or ""
        try:
            key = clusterkey.load_key(self.paths.cluster_key)
            view = self._view = derive(load_cluster(self.paths.cluster_xml), name)
        except Exception as exc:
            raise ApiServerError(f"API not started: {exc}") from exc
        if self.settings.tls and not self._operator_certificate():
            await self._issue_certificate(name, view.addresses)
        peers = self._peers
        token = self._token = cluster_token_source(key, name)
        if self.files.trust.is_file():
            context = self._context = client_context(self.files.trust)
            for n, addresses in view.peers.items():
                peers[n] = ApiClient(NodeAddress(n, addresses), context, token, self.settings.port)
        listeners = getattr(self.node, "cluster_listeners", None)  # safekitd's Node: live reloads
        if isinstance(listeners, list):
            listeners.append(self.follow)
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
            networks=[n.to_json() for n in view.networks],
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

    async def follow(self, cluster: ClusterConfig) -> None:
        """safekitd took a new cluster.xml live (daemon/cluster_reload.py, ADR 0043): the API
        follows it (ADR 0050). Peers are called at their new addresses, a node added becomes a peer
        and one removed is dropped, the live view watches the new set of nodes and shows the new
        networks; when this node's own addresses changed its certificate is issued again and the
        running server serves it to every new connection (connections open keep the old one)."""
        if self._view is None:
            return
        name = self._view.node
        new = derive(cluster, name)
        plan = plan_follow(self._view, new)
        self._view = new
        if not plan.changes:
            return
        follow_peers(self._peers, plan, context=self._context, token=self._token, port=self.settings.port)
        if self._api is not None:
            self._api.follow(list(self._peers), [n.to_json() for n in new.networks])
        log.info("API after the cluster.xml reload: %s", plan.summary())
        if plan.certificate and self.settings.tls:
            await self._renew_certificate(name, new.addresses)

    def _operator_certificate(self) -> bool:
        return self.files.user_cert.is_file() and self.files.user_key.is_file()

    async def _renew_certificate(self, name: str, addresses: tuple[str, ...]) -> None:
        if self._operator_certificate():
            log.warning(
                "API certificate: %s is the operator's, kept as it is: it must name this node's "
                "addresses (%s) for peers and clients that verify them",
                self.files.user_cert,
                ", ".join(addresses),
            )
            return
        try:
            written = await self._issue_certificate(name, addresses)
        except ApiServerError as exc:
            log.error("%s; the server keeps serving the certificate it has", exc)
            return
        context = self._server.config.ssl if self._server is not None else None
        if not written or context is None:
            return
        cert, key = self.files.server_pair()
        try:
            # the live SSL context: every handshake from now on presents the new pair
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            log.error("API certificate %s not loaded: %s (served from the next start)", cert, exc)
            return
        log.info("API certificate for %s issued again for %s and served", name, ", ".join(addresses))

    async def _issue_certificate(self, name: str, addresses: tuple[str, ...]) -> bool:
        """ca.crt, node.crt and node.key, made by a child process (cryptography stays out of
        safekitd) when missing or not naming exactly `addresses`; True when written."""
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
        if out.strip() != b"written":
            return False
        log.info("API certificate for %s written in %s (cluster CA)", name, self.files.directory)
        return True

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        if self._api is not None:
            await self._api.watcher.stop()
        if self.history is not None:
            await self.history.stop()
        try:
            await within(self._task, 5)
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


def follow_peers(
    peers: dict[str, ApiClient],
    plan: FollowPlan,
    *,
    context: ssl.SSLContext | None,
    token: Callable[[], str],
    port: int,
) -> None:
    """Apply a reload's plan (api/follow.py) to the API's peers: a readdressed peer is called at the
    addresses it kept first, then at its new ones (a peer that has not reloaded yet still listens
    there); a node added becomes a peer (forwarding, apply, the live view); one gone is dropped."""
    for name, addresses in plan.readdressed.items():
        if name in peers:
            peers[name].node = NodeAddress(name, addresses)
    for name in plan.dropped:
        peers.pop(name, None)
    if context is None:  # no CA to verify peers with: no peers at all (as at start)
        return
    for name, addresses in plan.added.items():
        peers[name] = ApiClient(NodeAddress(name, addresses), context, token, port)


def _nothing(module: str) -> dict[str, Any] | None:
    return None
