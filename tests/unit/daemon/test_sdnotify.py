"""sd_notify against a real AF_UNIX datagram socket, as systemd listens on NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.daemon.sdnotify import Notifier, socket_address, watchdog_interval


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"safekit-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    yield sock, "@" + name
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_and_stopping_reach_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    env = {"NOTIFY_SOCKET": path}
    notifier = Notifier.from_env(env)
    assert notifier.enabled
    assert notifier.ready("2 modules")
    assert received(sock) == ["READY=1", "STATUS=2 modules"]
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


def test_abstract_namespace_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": name})
    assert notifier.ping()
    assert received(sock) == ["WATCHDOG=1"]


def test_the_variables_are_not_passed_on_to_scripts(path_socket: tuple[socket.socket, str]) -> None:
    _, path = path_socket
    env = {
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "4000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/bin",
    }
    notifier = Notifier.from_env(env)
    assert notifier.watchdog == 2.0
    assert env == {"PATH": "/bin"}


def test_nothing_happens_without_notify_socket(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog is None
    assert not notifier.ready()
    assert not notifier.ping()
    assert notifier.start_watchdog() is None


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.ready() is False
    assert "cannot notify systemd" in caplog.text


def test_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@foo") == b"\0foo"
    assert socket_address("") is None
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None


def test_watchdog_interval_is_half_and_for_this_pid_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}, 42) is None
    assert watchdog_interval({}, 42) is None


def test_watchdog_pings_from_the_event_loop_and_stop_when_it_hangs(
    abstract_socket: tuple[socket.socket, str],
) -> None:
    sock, name = abstract_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog == pytest.approx(0.1)
    sock.setblocking(False)

    def drain() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(sock.recv(4096))
            except BlockingIOError:
                return out

    async def scenario() -> tuple[int, int, int]:
        task = notifier.start_watchdog()
        await asyncio.sleep(0.55)
        running = len(drain())
        time.sleep(0.5)  # the loop hangs: no ping may leave meanwhile
        hung = len(drain())
        await Notifier.stop_watchdog(task)
        await asyncio.sleep(0.3)
        after_stop = len(drain())
        return running, hung, after_stop

    running, hung, after_stop = asyncio.run(scenario())
    assert 4 <= running <= 7
    assert hung == 0
    assert after_stop == 0
