"""The restart-script contract, with real processes: arguments, environment, logs, time bounds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from safekit.lifecycle import Script
from safekit.scripts import ScriptEnvironment, ScriptRunner


def make_runner(tmp_path: Path, **kwargs: float) -> ScriptRunner:
    userbin = tmp_path / "mod" / "bin"
    userbin.mkdir(parents=True)
    env = ScriptEnvironment(
        safe=tmp_path / "safe",
        module="mirror",
        safevar=tmp_path / "var",
        userbin=userbin,
        userconf=tmp_path / "mod" / "conf",
        uservar=tmp_path / "var" / "modules" / "mirror",
        user_vars={"APP_PORT": "8080"},
    )
    return ScriptRunner(env, tmp_path / "log" / "userlog", **kwargs)


def write_script(runner: ScriptRunner, script: Script, body: str) -> Path:
    path = runner.path(script)
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a parent that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run(runner: ScriptRunner, script: Script, *args: str) -> object:
    return asyncio.run(runner.run(script, *args))  # type: ignore[arg-type]


def test_arguments_environment_and_output_reach_the_user_log(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    write_script(
        runner,
        Script.START_PRIM,
        'echo "args=$*"; echo "module=$SAFEMODULE userbin=$SAFEUSERBIN port=$APP_PORT"; echo oops >&2\n',
    )
    result = asyncio.run(runner.run(Script.START_PRIM, "SECOND", "ALONE", "start"))
    assert result.ok and result.exit_code == 0 and not result.forced
    log = runner.user_log.read_text()
    assert "args=SECOND ALONE start" in log
    assert f"module=mirror userbin={runner.environment.userbin} port=8080" in log
    assert "oops" in log


def test_a_failing_script_is_reported_with_its_exit_code(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    write_script(runner, Script.START_PRIM, "exit 3\n")
    result = asyncio.run(runner.run(Script.START_PRIM, "WAIT", "ALONE", "start"))
    assert not result.ok and result.exit_code == 3
    assert "exit 3" in result.describe()


def test_a_missing_script_has_nothing_to_do(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    result = asyncio.run(runner.run(Script.PRESTART, "STOP", "WAIT", "start"))
    assert result.ok and result.missing


def test_a_script_that_cannot_execute_fails_with_a_reason(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    path = write_script(runner, Script.START_PRIM, "exit 0\n")
    path.chmod(0o644)
    result = asyncio.run(runner.run(Script.START_PRIM, "WAIT", "ALONE", "start"))
    assert not result.ok and result.exit_code == 126
    assert "is it executable?" in runner.user_log.read_text()


def test_a_hanging_stop_script_is_killed_and_called_again_with_force(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, nicestoptimeout=0.5, forcestoptimeout=5)
    marker = tmp_path / "child.pid"
    write_script(
        runner,
        Script.STOP_PRIM,
        f'if [ "$1" = force ]; then echo "forced: $*"; exit 0; fi\nsleep 600 & echo $! > {marker}\nwait\n',
    )
    started = time.monotonic()
    result = asyncio.run(runner.run(Script.STOP_PRIM, "PRIM", "STOP", "stop"))
    assert time.monotonic() - started < 5
    assert result.ok and result.forced and not result.timed_out
    log = runner.user_log.read_text()
    assert "forced: force PRIM STOP stop" in log
    assert "calling it again with 'force'" in log
    child = int(marker.read_text())
    time.sleep(0.1)
    assert not alive(child), "the hung script's child dies with its process group"


def test_a_stop_script_hanging_even_when_forced_is_reported_timed_out(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, nicestoptimeout=0.2, forcestoptimeout=0.2)
    write_script(runner, Script.STOP_PRIM, "sleep 600\n")
    result = asyncio.run(runner.run(Script.STOP_PRIM, "PRIM", "STOP", "stop"))
    assert not result.ok and result.timed_out and result.forced
    assert result.duration_s < 3


def test_a_start_script_is_bounded_only_when_asked(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, starttimeout=0.3)
    write_script(runner, Script.START_PRIM, "sleep 600\n")
    result = asyncio.run(runner.run(Script.START_PRIM, "WAIT", "ALONE", "start"))
    assert not result.ok and result.timed_out and not result.forced
