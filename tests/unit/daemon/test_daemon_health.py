"""The load-balancer health check and the Prometheus endpoint, over real loopback TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge

from safekit.daemon import health

READINESS: dict[str, bool] = {"web": True, "db": False}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class ReadyProbe:
    """The daemon's readiness lookup, recording what it was asked."""

    answers: dict[str, bool] = field(default_factory=lambda: dict(READINESS))
    asked: list[str] = field(default_factory=list)

    def __call__(self, module: str) -> bool | None:
        self.asked.append(module)
        return self.answers.get(module)


def parse(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(status_line.split()[1]), headers, body)


def bound_port(server: asyncio.AbstractServer) -> int:
    assert isinstance(server, asyncio.Server)
    (sock,) = server.sockets  # one listening socket: loopback IPv4 only
    host, port = sock.getsockname()
    assert host == "127.0.0.1"
    return int(port)


async def _exchange(raw: bytes, ready: Callable[[str], bool | None], registry: CollectorRegistry) -> bytes:
    server = await health.serve("127.0.0.1", 0, ready, registry)
    try:
        port = bound_port(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def exchange(
    raw: bytes,
    ready: Callable[[str], bool | None] | None = None,
    registry: CollectorRegistry | None = None,
) -> bytes:
    return asyncio.run(_exchange(raw, ready or ReadyProbe(), registry or CollectorRegistry()))


def get(target: str, method: str = "GET", ready: Callable[[str], bool | None] | None = None) -> Response:
    raw = exchange(f"{method} {target} HTTP/1.1\r\nHost: lb\r\nUser-Agent: probe\r\n\r\n".encode(), ready)
    return parse(raw)


def test_ready_module_answers_200() -> None:
    response = get("/var/modules/web/ready.txt")
    assert response.status == 200
    assert response.body == b"ready\n"
    assert response.headers["content-length"] == "6"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["connection"] == "close"


def test_module_not_ready_answers_404() -> None:
    response = get("/var/modules/db/ready.txt")
    assert (response.status, response.body) == (404, b"not ready\n")


def test_unknown_module_answers_404() -> None:
    probe = ReadyProbe()
    response = get("/var/modules/nosuch/ready.txt", ready=probe)
    assert (response.status, response.body) == (404, b"no such module\n")
    assert probe.asked == ["nosuch"]


def test_readiness_is_asked_on_every_probe() -> None:
    """A failover must show at the load balancer on the next probe: nothing is cached."""
    probe = ReadyProbe()
    assert get("/var/modules/web/ready.txt", ready=probe).status == 200
    probe.answers["web"] = False
    assert get("/var/modules/web/ready.txt", ready=probe).status == 404


def test_query_string_is_ignored() -> None:
    assert get("/var/modules/web/ready.txt?probe=1").status == 200


def test_metrics_are_the_prometheus_exposition() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("safekit_test_module_state", "State code of a module", ["module"], registry=registry)
    gauge.labels(module="web").set(3)
    response = parse(exchange(b"GET /metrics HTTP/1.1\r\n\r\n", registry=registry))
    assert response.status == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert b'safekit_test_module_state{module="web"} 3.0' in response.body
    assert b"# TYPE safekit_test_module_state gauge" in response.body
    assert int(response.headers["content-length"]) == len(response.body)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_refused(method: str) -> None:
    probe = ReadyProbe()
    response = get("/var/modules/web/ready.txt", method=method, ready=probe)
    assert response.status == 405
    assert probe.asked == []


@pytest.mark.parametrize(
    "request_line",
    [b"garbage", b"GET /var/modules/web/ready.txt", b"GET / FTP/1.0", b"GET / HTTP/1.1 extra", b""],
)
def test_garbage_request_line_answers_400(request_line: bytes) -> None:
    response = parse(exchange(request_line + b"\r\n\r\n"))
    assert response.status == 400


@pytest.mark.parametrize(
    "target",
    [
        "/var/modules/web/../web/ready.txt",
        "/var/modules/../../etc/ready.txt",
        "/var/modules/" + "m" * 65 + "/ready.txt",
        "/var/modules//ready.txt",
        "/var/modules/web/ready.txt/",
        "/var/modules/we%20b/ready.txt",
        "/etc/passwd",
        "/",
    ],
)
def test_other_paths_answer_404_without_asking_the_daemon(target: str) -> None:
    probe = ReadyProbe()
    response = get(target, ready=probe)
    assert (response.status, response.body) == (404, b"not found\n")
    assert probe.asked == []


def test_longest_module_name_is_accepted() -> None:
    name = "m" * 64
    response = get(f"/var/modules/{name}/ready.txt", ready=ReadyProbe({name: True}))
    assert response.status == 200


def test_dot_dot_as_the_module_name_is_no_module() -> None:
    response = get("/var/modules/../ready.txt")
    assert response.status == 404


def test_head_gives_the_status_and_length() -> None:
    assert get("/var/modules/web/ready.txt", method="HEAD").status == 200
    response = get("/var/modules/db/ready.txt", method="HEAD")
    assert response.status == 404
    assert response.headers["content-length"] == str(len(b"not ready\n"))


def test_head_response_has_no_body() -> None:
    assert get("/var/modules/web/ready.txt", method="HEAD").body == b""


def test_oversized_request_line_is_answered() -> None:
    raw = exchange(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 4")


def test_client_that_sends_nothing_does_not_stop_the_server() -> None:
    async def scenario() -> bytes:
        server = await health.serve("127.0.0.1", 0, ReadyProbe(), CollectorRegistry())
        try:
            port = bound_port(server)
            _, idle = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /var/modules/web/ready.txt HTTP/1.0\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            idle.close()
            writer.close()
            return answer
        finally:
            server.close()
            await server.wait_closed()

    assert parse(asyncio.run(scenario())).status == 200
