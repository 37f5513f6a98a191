"""Module logs and scripts' user logs are bounded: rotated by size, a fixed number kept."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from safekit.daemon.module_executor import module_logger
from safekit.host import logfiles
from safekit.host.paths import Paths
from safekit.lifecycle import Script
from safekit.scripts import ScriptEnvironment, ScriptRunner


def test_a_file_rotates_once_it_reaches_the_limit_and_the_oldest_goes(tmp_path: Path) -> None:
    log = tmp_path / "web.userlog"
    assert logfiles.rotate_if_larger(log, max_bytes=10, backups=2) is False  # nothing yet
    for generation in ("first", "second", "third"):
        log.write_text(generation * 4)
        assert logfiles.rotate_if_larger(log, max_bytes=10, backups=2) is True
    assert not log.exists()
    assert (tmp_path / "web.userlog.1").read_text() == "third" * 4
    assert (tmp_path / "web.userlog.2").read_text() == "second" * 4
    assert not (tmp_path / "web.userlog.3").exists()  # "first" dropped: 2 kept
    log.write_text("small")
    assert logfiles.rotate_if_larger(log, max_bytes=10, backups=2) is False
    assert log.read_text() == "small"


def test_the_user_log_is_rotated_before_a_script_writes_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logfiles, "MAX_BYTES", 200)
    userbin = tmp_path / "mod" / "bin"
    userbin.mkdir(parents=True)
    env = ScriptEnvironment(
        safe=tmp_path / "safe",
        module="web",
        safevar=tmp_path / "var",
        userbin=userbin,
        userconf=tmp_path / "mod" / "conf",
        uservar=tmp_path / "var" / "modules" / "web",
        user_vars={},
    )
    userlog = tmp_path / "log" / "web.userlog"
    runner = ScriptRunner(env, userlog)
    script = runner.path(Script.START_PRIM)
    script.write_text("#!/bin/sh\necho 'start_prim: a line of about fifty bytes, or a bit more'\n")
    script.chmod(0o755)
    for _ in range(12):
        assert asyncio.run(runner.run(Script.START_PRIM, "WAIT", "PRIM", "start")).ok
    rotated = sorted(p.name for p in userlog.parent.iterdir())
    assert "web.userlog.1" in rotated and userlog.exists()
    assert all(p.stat().st_size < 200 + 200 for p in userlog.parent.iterdir())  # none grows unbounded
    assert "start_prim: a line" in userlog.read_text()  # the newest output is in the current file


def test_the_module_log_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfiles, "MAX_BYTES", 500)
    monkeypatch.setenv("SAFEKIT_LOG", str(tmp_path / "log"))
    paths = Paths.from_env()
    logger = module_logger("rotating", paths)
    logger.propagate = False
    logger.setLevel(logging.INFO)  # as safekitd sets it on "safekit"
    try:
        for i in range(40):
            logger.info("decision %d: PRIM (Ready) -> PRIM (Ready), nothing to do", i)
    finally:
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
    path = paths.module_log("rotating")
    backups = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))
    assert backups and path.stat().st_size <= 500
    assert "decision 39" in path.read_text()
    assert logging.getLogger("safekit.module.rotating").handlers == []
