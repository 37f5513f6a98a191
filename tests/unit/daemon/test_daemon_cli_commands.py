"""`safekit` engine commands against a fake safekitd on a temporary control socket.

What is checked is what a user or a script sees: exit codes (SafeKit's for `state -lq`), what is
printed on stdout and stderr, and the request the daemon receives.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from safekit import cli
from safekit.daemon import control
from safekit.membership import clusterkey

Answer = dict[str, Any]


def module(state: str, readiness: str = "Ready", reason: str = "running", **extra: Any) -> Answer:
    return {"name": "AM", "state": state, "readiness": readiness, "reason": reason, **extra}


class FakeDaemon:
    """A control socket served from a background event loop; `reply` decides each answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[Answer] = []
        self.reply: Callable[[Answer], Answer] = lambda request: {"ok": True, "modules": []}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def answer_state(self, *states: Answer) -> None:
        """Answer `state` requests with these modules in turn, then keep the last one."""
        queue = list(states)

        def reply(request: Answer) -> Answer:
            current = queue.pop(0) if len(queue) > 1 else queue[0]
            return {"ok": True, "modules": [current]}

        self.reply = reply

    async def _handle(self, request: Answer) -> Answer:
        self.requests.append(request)
        return self.reply(request)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await control.serve(self.path, self._handle)
        self._ready.set()
        async with server:
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(5), "fake safekitd did not start"

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    path = tmp_path / "run" / "safekitd.sock"
    monkeypatch.setenv("SAFEKIT_SOCKET", str(path))
    fake = FakeDaemon(path)
    fake.start()
    yield fake
    fake.stop()


# ---------------------------------------------------------------- state


@pytest.mark.parametrize(
    ("state", "code"), [("STOP", 0), ("WAIT", 1), ("ALONE", 2), ("PRIM", 3), ("SECOND", 4), ("UP", 2)]
)
def test_state_quiet_exit_code_is_safekits(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], state: str, code: int
) -> None:
    daemon.answer_state(module(state))
    assert cli.main(["state", "-m", "AM", "-lq"]) == code
    assert capsys.readouterr() == ("", "")
    assert daemon.requests == [{"cmd": "state", "module": "AM"}]


def test_state_prints_the_module_line(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer_state(module("PRIM", reason="primary since 10:02"))
    assert cli.main(["state", "-m", "AM"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["AM               PRIM    (Ready)  primary since 10:02"]
    assert err == ""


def test_state_without_quiet_exits_0_whatever_the_state(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.answer_state(module("SECOND"))
    assert cli.main(["state", "-m", "AM", "-l"]) == 0
    assert "SECOND" in capsys.readouterr().out


def test_state_verbose_lists_resources(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer_state(module("PRIM", resources={"rfs.uptodate": "up", "heartbeat.default": "down"}))
    assert cli.main(["state", "-m", "AM", "-v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["heartbeat.default", "down"]
    assert lines[2].split() == ["rfs.uptodate", "up"]
    assert daemon.requests == [{"cmd": "state", "module": "AM", "verbose": True}]


def test_state_verbose_shows_each_farm_groups_share(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = {"web": {"buckets": 85, "pending_buckets": 0}, "api": {"buckets": 0, "pending_buckets": 171}}
    daemon.answer_state(module("UP", resources={}, groups=groups))
    assert cli.main(["state", "-m", "AM", "-v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "    group api: 0 buckets served here, 171 more after the handover delay",
        "    group web: 85 buckets served here",
    ]


def test_state_verbose_shows_the_replication_engine(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    replication = {"role": "primary", "engine": "native", "last_event": "in_sync (journal)"}
    daemon.answer_state(module("PRIM", resources={"rfs.uptodate": "up"}, replication=replication))
    assert cli.main(["state", "-m", "AM", "-v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["    rfs.uptodate                     up", "    replication primary (native engine)"]


def test_state_verbose_shows_lag_ack_latency_and_the_witness_from_this_node(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon's JSON (ModuleReplication.view, WitnessView.view) printed as text."""
    replication = {
        "role": "primary",
        "engine": "native",
        "last_event": None,
        "link": "in_sync",
        "in_sync": True,
        "lag_seconds": 0.003,
        "ack_latency": {
            "window": 20.0,
            "count": 512,
            "p50": 0.0012,
            "p99": 0.0048,
            "mean": 0.0015,
            "total": 9000,
        },
        "resync": None,
    }
    witness = {
        "mode": "arbitrator",
        "reachable": False,
        "rtt": None,
        "targets": [
            {
                "address": "198.18.0.9",
                "reachable": False,
                "rtt": 0.0009,
                "last_error": "lease request failed: timed out",
                "checked_age": 0.4,
                "answered_age": 64.0,
                "failed_age": 0.4,
                "failures": 57,
            }
        ],
    }
    daemon.answer_state(module("PRIM", resources={}, replication=replication, witness=witness))
    assert cli.main(["state", "-m", "AM", "-v"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "    replication primary (native engine)",
        "    replication lag 3 ms, ack latency p50 1.2 ms p99 4.8 ms (last 20 s, 512 writes)",
        "    witness (arbitrator) unreachable",
        "      198.18.0.9: unreachable, last error: lease request failed: timed out 0.4 s ago,"
        " last answer 1 min 4 s ago, 57 probes failed",
    ]


def test_state_of_every_module(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = lambda request: {
        "ok": True,
        "modules": [module("PRIM"), {"name": "db", "state": "STOP", "readiness": "NotReady"}],
    }
    assert cli.main(["state"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines()] == [["AM", "PRIM"], ["db", "STOP"]]
    assert daemon.requests == [{"cmd": "state"}]


def test_refused_state_exits_1_with_the_error(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = lambda request: {"ok": False, "error": "no module 'AM' on this node (modules: none)"}
    assert cli.main(["state", "-m", "AM"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "safekit state: no module 'AM' on this node (modules: none)\n"


def test_state_json_prints_the_daemon_answer(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    answer = {"ok": True, "node": "node1", "modules": [module("ALONE", resources={"rfs.uptodate": "up"})]}
    daemon.reply = lambda request: answer
    assert cli.main(["state", "-m", "AM", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == answer


# ---------------------------------------------------------------- module commands


def test_accepted_command_prints_the_message(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = lambda request: {"ok": True, "message": "AM: stopping"}
    assert cli.main(["stop", "-m", "AM"]) == 0
    assert capsys.readouterr() == ("AM: stopping\n", "")
    assert daemon.requests == [{"cmd": "stop", "module": "AM"}]


def test_refused_command_exits_1_with_the_error_on_stderr(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.reply = lambda request: {"ok": False, "error": "AM: refused: the replica is stale (use primforce)"}
    assert cli.main(["prim", "-m", "AM"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "safekit prim: AM: refused: the replica is stale (use primforce)\n"


def test_refusal_without_a_reason_still_says_refused(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.reply = lambda request: {"ok": False}
    assert cli.main(["swap", "-m", "AM"]) == 1
    assert capsys.readouterr().err == "safekit swap: refused\n"


def test_command_mode_is_sent(daemon: FakeDaemon) -> None:
    daemon.reply = lambda request: {"ok": True}
    assert cli.main(["swap", "-m", "AM", "nosync"]) == 0
    assert cli.main(["prim", "-m", "AM", "fullsync"]) == 0
    assert daemon.requests == [
        {"cmd": "swap", "module": "AM", "mode": "nosync"},
        {"cmd": "prim", "module": "AM", "mode": "fullsync"},
    ]


def test_command_json_prints_the_answer_only(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    answer = {"ok": True, "message": "AM: starting"}
    daemon.reply = lambda request: answer
    assert cli.main(["start", "-m", "AM", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == answer


def test_get_prints_the_value(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = lambda request: {"ok": True, "value": "up"}
    assert cli.main(["get", "-m", "AM", "-r", "rfs.uptodate"]) == 0
    assert capsys.readouterr().out == "up\n"
    assert daemon.requests == [{"cmd": "get", "module": "AM", "resource": "rfs.uptodate"}]


def test_set_sends_the_checker_identity(daemon: FakeDaemon) -> None:
    daemon.reply = lambda request: {"ok": True, "message": "AM: custom.db = down"}
    assert cli.main(["set", "-m", "AM", "-r", "custom.db", "-v", "down", "-i", "dbcheck"]) == 0
    assert daemon.requests == [
        {"cmd": "set", "module": "AM", "resource": "custom.db", "value": "down", "ident": "dbcheck"}
    ]


def test_log_prints_the_lines(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = lambda request: {"ok": True, "lines": ["10:00 start", "10:01 PRIM"]}
    assert cli.main(["log", "-m", "AM", "-A"]) == 0
    assert capsys.readouterr().out == "10:00 start\n10:01 PRIM\n"
    assert daemon.requests == [{"cmd": "log", "module": "AM", "all": True}]


def test_cluster_state_lists_modules(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer_state(module("SECOND"))
    assert cli.main(["cluster", "state"]) == 0
    assert capsys.readouterr().out.split() == ["AM", "SECOND", "(Ready)"]


def test_no_daemon_says_it_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAFEKIT_SOCKET", str(tmp_path / "absent.sock"))
    assert cli.main(["stop", "-m", "AM"]) == 1
    assert capsys.readouterr().err.startswith("safekit stop: safekitd is not running")


def test_module_is_required_for_module_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["stop"])
    assert exited.value.code == 2
    assert "-m" in capsys.readouterr().err


# ---------------------------------------------------------------- waitstate


def test_waitstate_returns_when_the_state_is_reached(daemon: FakeDaemon) -> None:
    daemon.answer_state(module("PRIM"))
    assert cli.main(["waitstate", "-m", "AM", "PRIM", "--timeout", "1"]) == 0
    assert daemon.requests == [{"cmd": "state", "module": "AM"}]


def test_waitstate_polls_until_the_state_changes(daemon: FakeDaemon) -> None:
    daemon.answer_state(module("WAIT", "Transient"), module("ALONE", "Transient"), module("PRIM"))
    assert cli.main(["waitstate", "-m", "AM", "PRIM", "--timeout", "5"]) == 0
    assert len(daemon.requests) == 3


def test_waitstate_ready_waits_for_the_ready_substate(daemon: FakeDaemon) -> None:
    daemon.answer_state(module("PRIM", "Transient"), module("PRIM", "Ready"))
    assert cli.main(["waitstate", "-m", "AM", "PRIM", "--ready", "--timeout", "5"]) == 0
    assert len(daemon.requests) == 2


def test_waitstate_json_prints_the_module(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer_state(module("SECOND"))
    assert cli.main(["waitstate", "-m", "AM", "SECOND", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == module("SECOND")


def test_waitstate_times_out_with_a_clear_message(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.answer_state(module("SECOND", reason="peer node2 is primary"))
    assert cli.main(["waitstate", "-m", "AM", "PRIM", "--timeout", "0.5"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "safekit waitstate: AM: still SECOND (Ready) after 0.5 s, not PRIM: peer node2 is primary\n"
    assert len(daemon.requests) >= 2


def test_waitstate_stops_at_a_refusal(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = lambda request: {"ok": False, "error": "no module 'AM' on this node (modules: none)"}
    assert cli.main(["waitstate", "-m", "AM", "PRIM", "--timeout", "5"]) == 1
    assert capsys.readouterr().err == "safekit waitstate: no module 'AM' on this node (modules: none)\n"
    assert len(daemon.requests) == 1


def test_waitstate_refuses_an_unknown_state(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["waitstate", "-m", "AM", "PRIMARY"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ---------------------------------------------------------------- cluster genkey


def test_genkey_writes_a_private_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "etc" / "cluster.key"
    assert cli.main(["cluster", "genkey", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = clusterkey.load_key(path)
    out = capsys.readouterr().out
    assert f"cluster key written to {path}" in out
    assert clusterkey.fingerprint(key) in out
    assert "copy it to every node" in out


def test_genkey_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cluster.key"
    assert cli.main(["cluster", "genkey", str(path)]) == 0
    before = path.read_bytes()
    capsys.readouterr()
    assert cli.main(["cluster", "genkey", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"safekit cluster: {path} exists")
    assert "--force" in err
    assert path.read_bytes() == before


def test_genkey_force_replaces_the_key(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    assert cli.main(["cluster", "genkey", str(path)]) == 0
    old = clusterkey.load_key(path)
    path.chmod(0o644)  # the new file must not inherit the old one's mode
    assert cli.main(["cluster", "genkey", str(path), "--force"]) == 0
    assert clusterkey.load_key(path) != old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_genkey_needs_no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEKIT_SOCKET", str(tmp_path / "absent.sock"))
    assert cli.main(["cluster", "genkey", str(tmp_path / "k")]) == 0


# ---------------------------------------------------------------- config check

GOOD = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart>
    <heartbeat name="default"/>
  </heart>
</service>
</safe>
"""

# Line 5 has a bad duration, line 7 an element that is refused (SafeKit's <vhost>).
BROKEN = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart>
    <heartbeat name="default" pulse="7x"/>
  </heart>
  <vhost/>
</service>
</safe>
"""


def write_module(root: Path, text: str) -> Path:
    path = root / "conf" / "userconfig.xml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_config_check_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_module(tmp_path / "AM", GOOD)
    assert cli.main(["config", "check", str(path)]) == 0
    assert capsys.readouterr() == (f"{path}: ok\n", "")


def test_config_check_accepts_a_module_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_module(tmp_path / "AM", GOOD)
    assert cli.main(["config", "check", str(tmp_path / "AM")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'AM'}: ok\n"


def test_config_check_reports_every_problem_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_module(tmp_path / "AM", BROKEN)
    assert cli.main(["config", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert all(re.match(rf"error: {re.escape(str(path))}:\d+: <\w+>: ", line) for line in lines), lines
    assert any(line.startswith(f"error: {path}:5: <heartbeat>: attribute 'pulse'") for line in lines)
    assert any(
        line.startswith(f"error: {path}:7: <vhost>: SafeKit's virtual hostname is not") for line in lines
    )


def test_config_check_goes_on_after_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write_module(tmp_path / "bad", BROKEN)
    good = write_module(tmp_path / "good", GOOD)
    assert cli.main(["config", "check", str(broken), str(good)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{good}: ok\n"
    assert str(broken) in err


def test_config_check_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.xml"
    assert cli.main(["config", "check", str(path)]) == 1
    assert str(path) in capsys.readouterr().err
