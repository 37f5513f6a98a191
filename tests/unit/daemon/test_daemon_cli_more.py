"""The administration commands: errd|checker|failover on|off, boot, module, waitstart|waitstop,
shutdown, confinfo, cluster confinfo|config.

The CLI side runs against a fake safekitd (what the user sees, and the request the daemon gets);
the daemon side against a real Node on loopback, in a thread, with a module that stays stopped;
the file work (.safe extraction, boot, hashes) on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_cli_commands import FakeDaemon, module

from safekit import cli
from safekit.daemon.node import Node
from safekit.host import control_client
from safekit.host.module_packages import AdminError, boot_status, extract_safe, file_info, sha256_file
from safekit.host.paths import Paths
from safekit.membership import clusterkey

Answer = dict[str, Any]

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror"{boot}>
  <heart port="{port}">
    <heartbeat name="default"/>
  </heart>
</service>
</safe>
"""

CLUSTER = """<cluster>
  <lans>
    <lan name="default">
      <node name="n1" addr="127.0.0.1"/>
      <node name="n2" addr="127.0.0.2"/>
    </lan>
  </lans>
</cluster>
"""


def userconfig(port: int = 4810, boot: str | None = None) -> str:
    return USERCONFIG.format(port=port, boot=f' boot="{boot}"' if boot else "")


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """SafeKit's directories under tmp_path, as every command and the daemon find them."""
    env = {
        "SAFE": "safe",
        "SAFEKIT_CONF": "etc",
        "SAFEVAR": "var",
        "SAFEKIT_LOG": "log",
        "SAFEKIT_RUN": "run",
    }
    for name, sub in env.items():
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.delenv("SAFEKIT_SOCKET", raising=False)
    return Paths.from_env()


@pytest.fixture
def daemon(paths: Paths) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(paths.socket)
    fake.start()
    yield fake
    fake.stop()


def install_module(paths: Paths, name: str = "AM", text: str | None = None) -> Path:
    conf = paths.module_dir(name) / "conf" / "userconfig.xml"
    conf.parent.mkdir(parents=True)
    conf.write_text(text or userconfig(), encoding="utf-8")
    return conf


def make_safe(path: Path, members: dict[str, str], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            info = zipfile.ZipInfo(name)
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, text)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- errd | checker | failover


@pytest.mark.parametrize("switch", ["errd", "checker", "failover"])
def test_switch_sends_the_value_and_prints_the_message(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], switch: str
) -> None:
    daemon.reply = lambda request: {"ok": True, "message": f"AM: {switch} off (...)"}
    assert run_cli(capsys, switch, "off", "-m", "AM") == (0, f"AM: {switch} off (...)\n", "")
    assert daemon.requests == [{"cmd": switch, "module": "AM", "value": "off"}]


def test_switch_json_and_refusal(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    answer = {"ok": True, "message": "AM: failover on", "controls": {"failover": "on"}}
    daemon.reply = lambda request: answer
    code, out, _ = run_cli(capsys, "failover", "on", "-m", "AM", "--json")
    assert code == 0 and json.loads(out) == answer
    daemon.reply = lambda request: {"ok": False, "error": "no module 'AM' on this node (modules: none)"}
    assert run_cli(capsys, "errd", "on", "-m", "AM") == (
        1,
        "",
        "safekit errd: no module 'AM' on this node (modules: none)\n",
    )


def test_switch_takes_only_on_or_off(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["checker", "maybe", "-m", "AM"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("switch", ["errd", "checker", "failover"])
def test_switch_help_says_it_is_not_kept(capsys: pytest.CaptureFixture[str], switch: str) -> None:
    with pytest.raises(SystemExit):
        cli.main([switch, "--help"])
    assert "restart of safekitd" in " ".join(capsys.readouterr().out.split())


def test_help_describes_dash_h(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "with -H on other nodes through their API" in " ".join(capsys.readouterr().out.split())


def test_state_verbose_shows_the_switches(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    controls = {"errd": "off", "checker": "on", "failover": "off"}
    daemon.answer_state(module("SECOND", resources={"rfs.uptodate": "up"}, controls=controls))
    code, out, _ = run_cli(capsys, "state", "-m", "AM", "-v")
    assert code == 0
    assert out.splitlines()[-1].split() == ["checker", "on,", "errd", "off,", "failover", "off"]


# ---------------------------------------------------------------- waitstart | waitstop


def replies(start: Answer, *states: Answer) -> Any:
    queue = list(states)

    def reply(request: Answer) -> Answer:
        if request["cmd"] != "state":
            return start
        current = queue.pop(0) if len(queue) > 1 else queue[0]
        return {"ok": True, "modules": [current]}

    return reply


def test_waitstart_starts_then_waits_for_a_ready_role(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.reply = replies(
        {"ok": True, "message": "AM: starting"},
        module("WAIT", "Transient", reason="looking for n2"),
        module("SECOND", "Transient"),
        module("SECOND", "Ready", reason="following n2"),
    )
    code, out, err = run_cli(capsys, "waitstart", "-m", "AM", "--timeout", "5")
    assert (code, err) == (0, "")
    assert out.split() == ["AM", "SECOND", "(Ready)", "following", "n2"]
    assert daemon.requests[0] == {"cmd": "start", "module": "AM"}
    assert daemon.requests[1:] == [{"cmd": "state", "module": "AM"}] * 3


def test_waitstart_ends_at_a_settled_wait(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = replies(
        {"ok": True}, module("WAIT", "NotReady", reason="stale replica: waiting for the peer")
    )
    code, out, _ = run_cli(capsys, "waitstart", "-m", "AM", "--json")
    assert code == 0
    assert json.loads(out)["reason"] == "stale replica: waiting for the peer"


def test_waitstart_of_a_started_module_just_waits(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.reply = replies({"ok": False, "error": "AM: refused: already started (PRIM)"}, module("PRIM"))
    assert run_cli(capsys, "waitstart", "-m", "AM")[0] == 0


def test_waitstart_refused_exits_1(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = replies({"ok": False, "error": "AM: refused: maxloop reached"}, module("STOP"))
    assert run_cli(capsys, "waitstart", "-m", "AM") == (
        1,
        "",
        "safekit waitstart: AM: refused: maxloop reached\n",
    )
    assert len(daemon.requests) == 1


def test_waitstart_that_stops_again_fails(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = replies(
        {"ok": True},
        module("WAIT", "Transient"),
        module("STOP", "NotReady", reason="prestart failed (exit 1)"),
    )
    code, out, err = run_cli(capsys, "waitstart", "-m", "AM", "--timeout", "5")
    assert (code, out) == (1, "")
    assert err == "safekit waitstart: AM: start failed: STOP: prestart failed (exit 1)\n"


def test_waitstart_times_out(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = replies({"ok": True}, module("WAIT", "Transient", reason="looking for n2"))
    code, _, err = run_cli(capsys, "waitstart", "-m", "AM", "--timeout", "0.3")
    assert code == 1
    assert err == "safekit waitstart: AM: still WAIT (Transient) after 0.3 s: looking for n2\n"


def test_waitstop_stops_then_waits_for_stop_notready(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.reply = replies(
        {"ok": True},
        module("STOP", "Transient", reason="poststop"),
        module("STOP", "NotReady", reason="stopped"),
    )
    code, out, _ = run_cli(capsys, "waitstop", "-m", "AM", "--timeout", "5")
    assert code == 0 and out.split()[:3] == ["AM", "STOP", "(NotReady)"]
    assert daemon.requests[0] == {"cmd": "stop", "module": "AM"}


def test_waitstop_of_a_stopped_module(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = replies({"ok": False, "error": "AM: refused: already stopped"}, module("STOP", "NotReady"))
    assert run_cli(capsys, "waitstop", "-m", "AM")[0] == 0


# ---------------------------------------------------------------- shutdown


def test_shutdown_waits_until_the_daemon_is_gone(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    def reply(request: Answer) -> Answer:
        threading.Timer(0.3, daemon.path.unlink).start()  # safekitd removes its socket last
        return {"ok": True, "message": "safekitd on n1: stopping every module (AM), then exiting"}

    daemon.reply = reply
    code, out, _ = run_cli(capsys, "shutdown", "--timeout", "5")
    assert code == 0
    assert out.splitlines() == [
        "safekitd on n1: stopping every module (AM), then exiting",
        "safekitd stopped",
    ]
    assert daemon.requests == [{"cmd": "shutdown"}]


def test_shutdown_that_does_not_finish(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.reply = lambda request: {"ok": True, "message": "stopping"}
    code, _, err = run_cli(capsys, "shutdown", "--timeout", "0.3")
    assert code == 1
    assert err == "safekit shutdown: safekitd still runs 0.3 s after shutdown (see its log)\n"


def test_shutdown_without_daemon(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "shutdown")
    assert code == 1 and err.startswith("safekit shutdown: safekitd is not running")


# ---------------------------------------------------------------- module getports | list


def test_getports_prints_both_ports(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    answer = {
        "ok": True,
        "module": "AM",
        "heartbeat_port": 4800,
        "health_port": 9010,
        "lans": {"default": "10.0.0.1 <-> 10.0.0.2"},
    }
    daemon.reply = lambda request: answer
    code, out, _ = run_cli(capsys, "module", "getports", "-m", "AM")
    assert code == 0
    assert out.splitlines() == [
        "AM: heartbeat UDP port 4800 (default 10.0.0.1 <-> 10.0.0.2)",
        "AM: health and metrics TCP port 9010",
    ]
    assert daemon.requests == [{"cmd": "getports", "module": "AM"}]
    code, out, _ = run_cli(capsys, "module", "getports", "-m", "AM", "--json")
    assert json.loads(out) == answer


def test_module_list_merges_the_daemon_and_the_disk(
    paths: Paths, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    install_module(paths, "AM")
    install_module(paths, "new")
    (paths.modules / ".AM.install-x" / "conf").mkdir(parents=True)  # an install at work: not a module
    daemon.reply = lambda request: {
        "ok": True,
        "modules": [
            {"name": "AM", "loaded": "yes", "state": "PRIM", "error": ""},
            {"name": "bad", "loaded": "no", "state": "", "error": "userconfig.xml:3: <heart>: ..."},
        ],
    }
    code, out, _ = run_cli(capsys, "module", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["AM", "PRIM"]
    assert lines[1].startswith("bad") and "(its directory is gone)" in lines[1]
    assert lines[2].split()[:4] == ["new", "-", "not", "loaded:"]
    assert daemon.requests == [{"cmd": "module_list"}]


def test_module_list_without_daemon(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    install_module(paths, "AM")
    code, out, _ = run_cli(capsys, "module", "list", "--json")
    data = json.loads(out)
    assert code == 0 and data["daemon"] is False
    assert [m["name"] for m in data["modules"]] == ["AM"]


# ---------------------------------------------------------------- module install | uninstall (CLI side)


def good_package(tmp_path: Path, port: int = 4810, prefix: str = "") -> Path:
    return make_safe(
        tmp_path / "AM.safe",
        {
            f"{prefix}conf/userconfig.xml": userconfig(port),
            f"{prefix}bin/start_prim": "#!/bin/sh\nexit 0\n",
        },
    )


def test_install_without_daemon(paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "module", "install", "-m", "AM", str(good_package(tmp_path)))
    assert (code, err) == (0, "")
    assert "safekitd is not running: it loads the module when it starts" in out
    target = paths.module_dir("AM")
    assert (target / "conf" / "userconfig.xml").read_text() == userconfig()
    assert os.access(target / "bin" / "start_prim", os.X_OK)  # a script, even without modes in the zip
    assert [p.name for p in paths.modules.iterdir()] == ["AM"]  # no staging directory left


def test_install_replaces_a_stopped_module_and_loads_it(
    paths: Paths, tmp_path: Path, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    install_module(paths, "AM", userconfig(4900))
    (paths.module_dir("AM") / "bin").mkdir()
    (paths.module_dir("AM") / "bin" / "old").write_text("")

    def reply(request: Answer) -> Answer:
        if request["cmd"] == "state":
            return {"ok": True, "modules": [module("STOP", "NotReady")]}
        return {"ok": True, "message": "AM: configuration applied"}

    daemon.reply = reply
    code, out, _ = run_cli(capsys, "module", "install", "-m", "AM", str(good_package(tmp_path, prefix="AM/")))
    assert code == 0, out
    assert "safekitd loaded it" in out
    assert (paths.module_dir("AM") / "conf" / "userconfig.xml").read_text() == userconfig()
    assert not (paths.module_dir("AM") / "bin" / "old").exists()
    assert daemon.requests[-1] == {"cmd": "config", "module": "AM"}
    assert sorted(p.name for p in paths.modules.iterdir()) == ["AM"]


def test_install_over_a_running_module_is_refused(
    paths: Paths, tmp_path: Path, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    before = install_module(paths, "AM", userconfig(4900)).read_text()
    daemon.answer_state(module("PRIM"))
    code, out, err = run_cli(capsys, "module", "install", "-m", "AM", str(good_package(tmp_path)))
    assert (code, out) == (1, "")
    assert err == (
        "safekit module: AM is PRIM (Ready): only a stopped module is installed over "
        "(safekit stop -m AM first)\n"
    )
    assert (paths.module_dir("AM") / "conf" / "userconfig.xml").read_text() == before


def test_install_of_an_invalid_configuration_changes_nothing(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = make_safe(
        tmp_path / "bad.safe", {"conf/userconfig.xml": "<safe><service mode='mirror'><vhost/>"}
    )
    code, out, err = run_cli(capsys, "module", "install", "-m", "AM", str(package))
    assert (code, out) == (1, "")
    assert err.startswith(f"safekit module: not installed: {package}:conf/userconfig.xml")
    assert len(err.splitlines()) == 1
    assert not paths.module_dir("AM").exists()
    assert list(paths.modules.iterdir()) == []


def test_install_of_an_unsafe_package_changes_nothing(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = make_safe(tmp_path / "evil.safe", {"conf/userconfig.xml": userconfig(), "../../evil": "x"})
    code, _, err = run_cli(capsys, "module", "install", "-m", "AM", str(package))
    assert code == 1 and "'..'" in err
    assert not (tmp_path / "evil").exists() and not (paths.safe / "evil").exists()
    assert list(paths.modules.iterdir()) == []


@pytest.mark.parametrize("name", ["../AM", ".hidden", "a/b", ""])
def test_install_refuses_a_bad_module_name(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, _, err = run_cli(capsys, "module", "install", "-m", name, str(good_package(tmp_path)))
    assert code == 1 and "is not a module name" in err


def test_uninstall_refused_by_the_daemon_keeps_the_module(
    paths: Paths, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    install_module(paths)
    daemon.reply = lambda request: {"ok": False, "error": "AM is PRIM (Ready): only a stopped module ..."}
    code, _, err = run_cli(capsys, "module", "uninstall", "-m", "AM")
    assert code == 1 and err.startswith("safekit module: AM is PRIM")
    assert paths.module_dir("AM").is_dir()
    assert daemon.requests == [{"cmd": "module_unload", "module": "AM"}]


def test_uninstall_removes_the_directory_and_keeps_state(
    paths: Paths, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    install_module(paths)
    paths.boot_file("AM").parent.mkdir(parents=True)
    paths.boot_file("AM").write_text('{"start_at_boot": true}')
    daemon.reply = lambda request: {"ok": True, "unloaded": True, "message": "AM: unloaded"}
    code, out, _ = run_cli(capsys, "module", "uninstall", "-m", "AM")
    assert code == 0 and out.startswith("module AM uninstalled")
    assert not paths.module_dir("AM").exists()
    assert paths.boot_file("AM").exists()


def test_uninstall_of_an_unknown_module(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "module", "uninstall", "-m", "AM")
    assert code == 1 and err.startswith("safekit module: no module 'AM'")


# ---------------------------------------------------------------- .safe extraction (pure)


def test_extract_keeps_modes_without_setuid(tmp_path: Path) -> None:
    package = make_safe(
        tmp_path / "p.safe",
        {"conf/userconfig.xml": "x", "bin/start_prim": "#!/bin/sh\n", "bin/lib/data": "d"},
        modes={"bin/start_prim": stat.S_IFREG | 0o4750, "bin/lib/data": stat.S_IFREG | 0o600},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_safe(package, dest) == dest
    assert stat.S_IMODE((dest / "bin" / "start_prim").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "bin" / "lib" / "data").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "conf").stat().st_mode) == 0o755


def test_extract_finds_the_module_in_one_top_directory(tmp_path: Path) -> None:
    package = make_safe(tmp_path / "p.safe", {"web/": "", "web/conf/userconfig.xml": "x"})
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_safe(package, dest) == dest / "web"


@pytest.mark.parametrize(
    ("members", "modes", "why"),
    [
        ({"../escape": "x"}, {}, "'..'"),
        ({"conf/../../escape": "x"}, {}, "'..'"),
        ({"/etc/cron.d/evil": "x"}, {}, "absolute path"),
        ({"C:/evil": "x"}, {}, "absolute path"),
        ({"bin\\..\\evil": "x"}, {}, "backslashes"),
        ({"bin/link": "/etc/shadow"}, {"bin/link": stat.S_IFLNK | 0o777}, "symbolic links"),
        ({"bin/fifo": ""}, {"bin/fifo": stat.S_IFIFO | 0o644}, "only files and directories"),
        ({"bin/start_prim": "x"}, {}, "no conf/userconfig.xml"),
        ({"a/conf/userconfig.xml": "x", "b/x": "y"}, {}, "no conf/userconfig.xml"),
    ],
)
def test_extract_refuses_unsafe_packages(
    tmp_path: Path, members: dict[str, str], modes: dict[str, int], why: str
) -> None:
    package = make_safe(tmp_path / "p.safe", {"conf/userconfig.xml": "x", **members}, modes)
    if why == "no conf/userconfig.xml":
        package = make_safe(tmp_path / "p.safe", members, modes)
    dest = tmp_path / "deep" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(AdminError, match=why):
        extract_safe(package, dest)
    assert list(dest.iterdir()) == []  # refused before anything was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "p.safe"]


def test_extract_refuses_a_duplicate_member(tmp_path: Path) -> None:
    package = tmp_path / "p.safe"
    with zipfile.ZipFile(package, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("conf/userconfig.xml", "x")
        zf.writestr("conf/userconfig.xml", "y")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(AdminError, match="twice"):
        extract_safe(package, dest)


def test_extract_refuses_what_is_not_a_zip(tmp_path: Path) -> None:
    package = tmp_path / "p.safe"
    package.write_text("not a zip")
    with pytest.raises(AdminError, match=r"not a \.safe package"):
        extract_safe(package, tmp_path)


# ---------------------------------------------------------------- boot


@pytest.mark.parametrize(
    ("config_boot", "saved", "effective", "overridden"),
    [
        ("auto", True, True, False),
        ("auto", False, False, False),
        ("on", False, True, True),
        ("off", True, False, True),
        ("ignore", True, False, True),
    ],
)
def test_boot_status(config_boot: str, saved: bool, effective: bool, overridden: bool) -> None:
    status = boot_status(config_boot, saved)
    assert (status.effective, status.overridden) == (effective, overridden)
    assert ("overrides" in status.describe("AM")) == overridden


def test_boot_on_off_write_boot_json(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    install_module(paths)
    assert run_cli(capsys, "boot", "on", "-m", "AM") == (0, "AM: boot on\n", "")
    assert json.loads(paths.boot_file("AM").read_text()) == {"start_at_boot": True}
    assert run_cli(capsys, "boot", "off", "-m", "AM") == (0, "AM: boot off\n", "")
    assert json.loads(paths.boot_file("AM").read_text()) == {"start_at_boot": False}
    assert run_cli(capsys, "boot", "status", "-m", "AM") == (0, "AM: boot off\n", "")


def test_boot_status_says_the_configuration_overrides(
    paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    install_module(paths, text=userconfig(boot="on"))
    code, out, _ = run_cli(capsys, "boot", "off", "-m", "AM")
    assert code == 0
    assert out == (
        "AM: boot on (<service boot=\"on\"> in userconfig.xml overrides 'safekit boot', which says off)\n"
    )
    code, out, _ = run_cli(capsys, "boot", "status", "-m", "AM", "--json")
    assert json.loads(out) == {
        "ok": True,
        "module": "AM",
        "boot": "on",
        "saved": "off",
        "config_boot": "on",
        "overridden": True,
    }


def test_boot_of_an_unknown_module(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "boot", "on", "-m", "AM")
    assert code == 1 and err.startswith("safekit boot: no module 'AM'")
    assert not paths.boot_file("AM").exists()


# ---------------------------------------------------------------- confinfo, cluster confinfo | config


def test_file_info_hashes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "userconfig.xml"
    path.write_bytes(b"<safe/>\n")
    os.utime(path, (0, 86400))
    info = file_info(path)
    assert info == {
        "path": str(path),
        "sha256": hashlib.sha256(b"<safe/>\n").hexdigest(),
        "modified": "1970-01-02T00:00:00+00:00",
        "size": 8,
    }


@pytest.mark.parametrize(("same", "expected"), [(True, "same as the file"), (False, "differs from the file")])
def test_confinfo_compares_with_the_loaded_configuration(
    paths: Paths, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], same: bool, expected: str
) -> None:
    conf = install_module(paths)
    digest = sha256_file(conf) if same else "0" * 64
    daemon.reply = lambda request: {"ok": True, "module": "AM", "loaded_sha256": digest}
    code, out, _ = run_cli(capsys, "confinfo", "-m", "AM")
    assert code == 0
    assert out.splitlines()[0] == f"AM: {conf}"
    assert f"sha256    {sha256_file(conf)}" in out
    assert expected in out
    assert daemon.requests == [{"cmd": "confinfo", "module": "AM"}]
    code, out, _ = run_cli(capsys, "confinfo", "-m", "AM", "--json")
    assert json.loads(out)["differs"] is (not same)


def test_confinfo_without_daemon(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    install_module(paths)
    code, out, _ = run_cli(capsys, "confinfo", "-m", "AM", "--json")
    data = json.loads(out)
    assert code == 0 and data["loaded_sha256"] is None and data["differs"] is None


def write_cluster(paths: Paths) -> bytes:
    paths.conf.mkdir(parents=True, exist_ok=True)
    paths.cluster_xml.write_text(CLUSTER)
    key = clusterkey.generate_key()
    clusterkey.save_key(paths.cluster_key, key)
    return key


def test_cluster_confinfo_shows_the_fingerprint_never_the_key(
    paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    key = write_cluster(paths)
    code, out, _ = run_cli(capsys, "cluster", "confinfo")
    assert code == 0
    assert sha256_file(paths.cluster_xml) in out
    assert clusterkey.fingerprint(key) in out
    assert "safekitd is not running" in out
    key_text = paths.cluster_key.read_text().strip()
    code, out, _ = run_cli(capsys, "cluster", "confinfo", "--json")
    assert json.loads(out)["key_fingerprint"] == clusterkey.fingerprint(key)
    for secret in (key_text, key_text.split()[-1], key.hex()):
        assert secret not in out


def test_cluster_config_installs_a_valid_file_atomically(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new-cluster.xml"
    new.write_text(CLUSTER)
    code, out, _ = run_cli(capsys, "cluster", "config", str(new))
    assert code == 0
    assert "restart safekitd to apply it" in out
    assert paths.cluster_xml.read_text() == CLUSTER
    assert stat.S_IMODE(paths.cluster_xml.stat().st_mode) == 0o644
    assert sorted(p.name for p in paths.conf.iterdir()) == ["cluster.xml"]  # no temporary file left


def test_cluster_config_refuses_an_invalid_file(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cluster(paths)
    bad = tmp_path / "bad.xml"
    bad.write_text("<cluster><lans><lan name='x'><node/></lan></lans></cluster>")
    code, out, err = run_cli(capsys, "cluster", "config", str(bad))
    assert (code, out) == (1, "")
    assert err.startswith(f"safekit cluster: not installed: {bad}:")
    assert len(err.splitlines()) == 1
    assert paths.cluster_xml.read_text() == CLUSTER
    code, _, err = run_cli(capsys, "cluster", "config", str(tmp_path / "absent.xml"))
    assert code == 1 and "No such file" in err


# ---------------------------------------------------------------- the daemon side: a real Node


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeThread:
    """safekitd's Node on its own event loop, in a thread; `request` is what `safekit` sends."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.node = Node(
            paths, node_name="n1", health_address="127.0.0.1", health_port=0, request_stop=self._request_stop
        )
        self.stop_requested = threading.Event()
        self.stopped = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def _request_stop(self) -> None:
        self.stop_requested.set()
        assert self._stop is not None
        self._stop.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.node.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await self.node.stop()
        self.stopped.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the node did not start"
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self.stopped.is_set():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def request(self, **payload: Any) -> Answer:
        return control_client.request(payload, timeout=10)


@pytest.fixture
def node(paths: Paths) -> Iterator[NodeThread]:
    write_cluster(paths)
    install_module(paths, "AM", userconfig(free_udp_port()))
    thread = NodeThread(paths)
    thread.start()
    yield thread
    thread.stop()
    for name in ("AM", "web"):
        logger = logging.getLogger(f"safekit.module.{name}")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def test_node_switches_change_the_module_and_show_in_state(node: NodeThread) -> None:
    mod = node.node.modules["AM"]
    assert node.request(cmd="state", module="AM", verbose=True)["modules"][0]["controls"] == {
        "errd": "on",
        "checker": "on",
        "failover": "on",
    }
    answer = node.request(cmd="failover", module="AM", value="off")
    assert answer["ok"] and answer["message"].startswith(
        "AM: failover off (automatic takeover by the secondary"
    )
    assert mod.settings.failover is False
    assert node.request(cmd="errd", module="AM", value="off")["controls"]["errd"] == "off"
    assert mod.errd_enabled is False
    assert node.request(cmd="checker", module="AM", value="off")["ok"]
    assert mod.checkers_enabled is False
    assert node.request(cmd="checker", module="AM", value="off")["message"] == "AM: checker already off"
    state = node.request(cmd="state", module="AM", verbose=True)["modules"][0]
    assert state["controls"] == {"errd": "off", "checker": "off", "failover": "off"}
    assert node.request(cmd="failover", module="AM", value="on")["ok"]
    assert mod.settings.failover is True
    assert node.request(cmd="errd", module="AM", value="maybe") == {
        "ok": False,
        "error": "errd: value must be on or off",
    }
    assert "failover off" in node.paths.module_log("AM").read_text()


def test_node_getports_and_confinfo(node: NodeThread) -> None:
    mod = node.node.modules["AM"]
    answer = node.request(cmd="getports", module="AM")
    assert answer == {
        "ok": True,
        "module": "AM",
        "heartbeat_port": mod.link.port,
        "health_port": 0,
        "lans": {"default": "127.0.0.1 <-> 127.0.0.2"},
    }
    conf = node.paths.module_dir("AM") / "conf" / "userconfig.xml"
    assert node.request(cmd="confinfo", module="AM")["loaded_sha256"] == sha256_file(conf)
    cluster = node.request(cmd="cluster_confinfo")
    assert cluster["cluster_sha256"] == sha256_file(node.paths.cluster_xml)
    assert cluster["key_fingerprint"] == clusterkey.fingerprint(clusterkey.load_key(node.paths.cluster_key))


def test_confinfo_sees_a_changed_file_until_config_applies_it(
    node: NodeThread, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = node.paths.module_dir("AM") / "conf" / "userconfig.xml"
    conf.write_text(conf.read_text().replace("<heart ", "<heart  "))
    assert "differs from the file" in run_cli(capsys, "confinfo", "-m", "AM")[1]
    assert run_cli(capsys, "config", "-m", "AM")[0] == 0
    assert "same as the file" in run_cli(capsys, "confinfo", "-m", "AM")[1]


def test_node_unloads_only_a_stopped_module(node: NodeThread) -> None:
    assert node.request(cmd="start", module="AM")["ok"]  # looks for its peer: WAIT
    refused = node.request(cmd="module_unload", module="AM")
    assert not refused["ok"] and refused["error"].startswith("AM is WAIT")
    assert node.request(cmd="stop", module="AM")["ok"]
    deadline = 50
    while not node.node.modules["AM"].stopped and deadline:
        threading.Event().wait(0.1)
        deadline -= 1
    assert node.request(cmd="module_unload", module="AM") == {
        "ok": True,
        "unloaded": True,
        "message": "AM: unloaded",
    }
    assert "AM" not in node.node.modules
    assert node.request(cmd="state")["modules"] == []
    assert node.request(cmd="module_unload", module="AM")["unloaded"] is False
    assert not node.request(cmd="module_unload", module="../x")["ok"]


def test_install_and_uninstall_against_the_daemon(
    node: NodeThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = make_safe(tmp_path / "web.safe", {"conf/userconfig.xml": userconfig(free_udp_port())})
    code, out, err = run_cli(capsys, "module", "install", "-m", "web", str(package))
    assert code == 0, err
    assert "safekitd loaded it (stopped: safekit start -m web)" in out
    assert node.request(cmd="state", module="web")["modules"][0]["state"] == "STOP"
    code, out, _ = run_cli(capsys, "module", "list")
    assert [line.split()[:2] for line in out.splitlines()] == [["AM", "STOP"], ["web", "STOP"]]
    code, out, _ = run_cli(capsys, "module", "getports", "-m", "web")
    assert code == 0 and "heartbeat UDP port" in out
    assert run_cli(capsys, "module", "uninstall", "-m", "web")[0] == 0
    assert not node.paths.module_dir("web").exists()
    assert not node.request(cmd="state", module="web")["ok"]


def test_shutdown_stops_the_node(node: NodeThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "shutdown", "--timeout", "20")
    assert code == 0
    assert out.splitlines() == [
        "safekitd on n1: stopping every module (AM), then exiting",
        "safekitd stopped",
    ]
    assert node.stop_requested.is_set()
    assert node.stopped.wait(10)
    assert not node.paths.socket.exists()
