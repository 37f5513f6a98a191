"""The control socket between `safekit` and safekitd: one JSON line each way, root only."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from safekit.daemon import control
from safekit.host import control_client
from safekit.host.control_client import ControlError

T = TypeVar("T")


async def echo(request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "echo": request}


def with_server(
    path: Path,
    client: Callable[[], T],
    handler: control.Handler = echo,
    before: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Serve `handler` on `path` in an event loop, and run the blocking `client` in a thread."""

    async def scenario() -> T:
        server = await control.serve(path, handler)
        try:
            if before is not None:
                await before()
            return await asyncio.to_thread(client)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(scenario())


def raw_exchange(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "safekitd.sock"


def test_request_gets_the_handler_answer(sock_path: Path) -> None:
    payload = {"cmd": "state", "module": "AM", "verbose": True}
    answer = with_server(sock_path, lambda: control_client.request(payload, sock_path))
    assert answer == {"ok": True, "echo": payload}


def test_requests_are_independent(sock_path: Path) -> None:
    def two() -> list[dict[str, Any]]:
        return [control_client.request({"cmd": name}, sock_path) for name in ("stop", "start")]

    assert [a["echo"]["cmd"] for a in with_server(sock_path, two)] == ["stop", "start"]


def test_unicode_survives(sock_path: Path) -> None:
    payload = {"cmd": "set", "ident": "vérif-é"}
    assert with_server(sock_path, lambda: control_client.request(payload, sock_path))["echo"] == payload


def test_socket_is_0600_whatever_its_directory(sock_path: Path) -> None:
    # An existing directory is left as it is (it may be /tmp); the socket itself is root only.
    sock_path.parent.mkdir(mode=0o755)
    sock_path.parent.chmod(0o755)

    def modes() -> tuple[int, int, bool]:
        info = sock_path.stat()
        return (
            stat.S_IMODE(info.st_mode),
            stat.S_IMODE(sock_path.parent.stat().st_mode),
            stat.S_ISSOCK(info.st_mode),
        )

    socket_mode, dir_mode, is_socket = with_server(sock_path, modes)
    assert is_socket
    assert socket_mode == 0o600
    assert dir_mode == 0o755


def test_a_directory_it_creates_is_0700(tmp_path: Path) -> None:
    path = tmp_path / "run" / "safekitd.sock"
    mode = with_server(path, lambda: stat.S_IMODE(path.parent.stat().st_mode))
    assert mode == 0o700


def test_missing_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "safekitd.sock"
    assert with_server(path, lambda: control_client.request({"cmd": "x"}, path))["ok"] is True


def test_stale_socket_of_a_crashed_daemon_is_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    assert with_server(sock_path, lambda: control_client.request({"cmd": "x"}, sock_path))["ok"] is True


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        (b"not json\n", "Expecting value"),
        (b"\n", "Expecting value"),
        (b'["cmd", "state"]\n', "not an object"),
        (b'"state"\n', "not an object"),
        (b'{"cmd": \n', "Expecting value"),
        (b"\xff\xfe{}\n", ""),
    ],
)
def test_malformed_request_is_answered_not_handled(sock_path: Path, line: bytes, detail: str) -> None:
    handled: list[dict[str, Any]] = []

    async def handler(request: dict[str, Any]) -> dict[str, Any]:
        handled.append(request)
        return {"ok": True}

    raw = with_server(sock_path, lambda: raw_exchange(sock_path, line), handler)
    answer = json.loads(raw)
    assert answer["ok"] is False
    assert answer["error"].startswith("malformed request")
    assert detail in answer["error"]
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert handled == []


def test_request_without_a_daemon_says_it_is_not_running(sock_path: Path) -> None:
    with pytest.raises(
        ControlError, match=r"safekitd is not running \(no control socket at .*safekitd.sock\)"
    ):
        control_client.request({"cmd": "state"}, sock_path)


def test_request_on_a_dead_socket_says_it_is_not_running(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()
    with pytest.raises(ControlError, match=r"safekitd is not running \(nothing listens on"):
        control_client.request({"cmd": "state"}, sock_path)


def test_request_times_out_on_a_hung_daemon(sock_path: Path) -> None:
    async def hang(request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"ok": True}

    with pytest.raises(ControlError, match=r"did not answer within 0.2 s"):
        with_server(sock_path, lambda: control_client.request({"cmd": "x"}, sock_path, timeout=0.2), hang)


@pytest.mark.parametrize("answer", [b"", b"garbage\n", b"[1, 2]\n"])
def test_malformed_answer_is_a_control_error(sock_path: Path, answer: bytes) -> None:
    async def fake_daemon() -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(on_connect, path=str(sock_path))
        async with server:
            with pytest.raises(ControlError, match="malformed answer"):
                await asyncio.to_thread(control_client.request, {"cmd": "x"}, sock_path)

    sock_path.parent.mkdir()
    asyncio.run(fake_daemon())


def test_socket_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAFEKIT_SOCKET", raising=False)
    assert control_client.socket_path() == Path("/run/safekit/safekitd.sock")
    monkeypatch.setenv("SAFEKIT_SOCKET", str(tmp_path / "s.sock"))
    assert control_client.socket_path() == tmp_path / "s.sock"


def test_request_uses_the_environment_socket(monkeypatch: pytest.MonkeyPatch, sock_path: Path) -> None:
    monkeypatch.setenv("SAFEKIT_SOCKET", str(sock_path))
    assert with_server(sock_path, lambda: control_client.request({"cmd": "x"}))["ok"] is True


def test_oversized_request_is_answered(sock_path: Path) -> None:
    payload = {"cmd": "set", "resource": "r" * (control.MAX_REQUEST + 10)}
    answer = with_server(sock_path, lambda: control_client.request(payload, sock_path))
    assert answer["ok"] is False


def test_handler_failure_is_answered(sock_path: Path) -> None:
    async def broken(request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("disk full")

    answer = with_server(sock_path, lambda: control_client.request({"cmd": "x"}, sock_path), broken)
    assert answer["ok"] is False
