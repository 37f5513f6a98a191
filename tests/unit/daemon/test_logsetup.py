"""safekitd's log: journald lines under systemd, rotated file, JSON format."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.daemon import logsetup
from safekit.daemon.logsetup import LogSettings, module_of, stderr_is_journal, syslog_priority

NAME = "safekit.test-logsetup"


@pytest.fixture
def logger_name() -> Iterator[str]:
    yield NAME
    logger = logging.getLogger(NAME)
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def journal_env_for(path: Path) -> dict[str, str]:
    st = os.stat(path)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_under_systemd_stderr_has_priorities_and_no_timestamps(tmp_path: Path, logger_name: str) -> None:
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("w") as stderr:
        mode = logsetup.setup(
            tmp_path / "log" / "safekitd.log",
            LogSettings(level="DEBUG"),
            detached=False,
            environ=journal_env_for(stderr_path),
            stream=stderr,
            logger_name=logger_name,
        )
        log = logging.getLogger(logger_name + ".daemon")
        log.info("safekitd running")
        log.warning("heartbeat late")
        log.debug("detail")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    assert mode == "journal"
    lines = stderr_path.read_text().splitlines()
    assert lines[0] == f"<6>INFO {logger_name}.daemon: safekitd running"
    assert lines[1] == f"<4>WARNING {logger_name}.daemon: heartbeat late"
    assert lines[2] == f"<7>DEBUG {logger_name}.daemon: detail"
    assert lines[3] == f"<3>ERROR {logger_name}.daemon: failed"
    assert len(lines) > 4 and all(line.startswith("<3>") for line in lines[4:])
    assert "RuntimeError: boom" in lines[-1]
    # The file keeps its timestamps.
    first = (tmp_path / "log" / "safekitd.log").read_text().splitlines()[0]
    assert first.endswith(f"INFO {logger_name}.daemon: safekitd running")
    assert first[:4].isdigit()


def test_journal_stream_of_another_file_is_not_ours(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    other = tmp_path / "other"
    mine.write_text("")
    other.write_text("")
    assert stderr_is_journal(journal_env_for(mine), os.stat(mine))
    assert not stderr_is_journal(journal_env_for(other), os.stat(mine))
    assert not stderr_is_journal({}, os.stat(mine))
    assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, os.stat(mine))


def test_terminal_keeps_timestamps_and_detached_writes_only_the_file(
    tmp_path: Path, logger_name: str
) -> None:
    stream = io.StringIO()
    assert (
        logsetup.setup(
            tmp_path / "a.log",
            LogSettings(),
            detached=False,
            environ={},
            stream=stream,
            logger_name=logger_name,
        )
        == "terminal"
    )
    logging.getLogger(logger_name).info("hello")
    assert stream.getvalue()[:4].isdigit() and stream.getvalue().rstrip().endswith(
        "INFO " + logger_name + ": hello"
    )

    for handler in list(logging.getLogger(logger_name).handlers):
        handler.close()
        logging.getLogger(logger_name).removeHandler(handler)
    quiet = io.StringIO()
    assert (
        logsetup.setup(
            tmp_path / "b.log",
            LogSettings(),
            detached=True,
            environ={},
            stream=quiet,
            logger_name=logger_name,
        )
        == "none"
    )
    logging.getLogger(logger_name).info("detached")
    assert quiet.getvalue() == ""
    assert "detached" in (tmp_path / "b.log").read_text()


def test_the_file_is_rotated_by_size_with_a_bounded_count(tmp_path: Path, logger_name: str) -> None:
    path = tmp_path / "safekitd.log"
    logsetup.setup(
        path, LogSettings(max_bytes=2000, backups=3), detached=True, environ={}, logger_name=logger_name
    )
    log = logging.getLogger(logger_name)
    for i in range(400):
        log.info("line %04d %s", i, "x" * 40)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["safekitd.log", "safekitd.log.1", "safekitd.log.2", "safekitd.log.3"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    # The newest line is in the live file, and nothing is lost between it and the oldest kept one.
    assert "line 0399" in path.read_text()
    kept = "".join((tmp_path / n).read_text() for n in reversed(names[1:])) + path.read_text()
    numbers = [int(line.split("line ")[1][:4]) for line in kept.splitlines()]
    assert numbers == list(range(numbers[0], 400))


def test_json_lines(tmp_path: Path, logger_name: str) -> None:
    stream = io.StringIO()
    logsetup.setup(
        tmp_path / "j.log",
        LogSettings(format="json"),
        detached=False,
        environ={},
        stream=stream,
        logger_name=logger_name,
    )
    logging.getLogger(logger_name + ".daemon").info("safekitd %s running", "1.0")
    module_log = logging.getLogger(logger_name + ".module.mirror")
    module_log.warning('state PRIM "quoted"\nsecond line')
    file_lines = (tmp_path / "j.log").read_text().splitlines()
    assert len(file_lines) == 2
    first, second = (json.loads(line) for line in file_lines)
    assert first["level"] == "INFO" and first["logger"] == logger_name + ".daemon"
    assert first["message"] == "safekitd 1.0 running"
    assert "module" not in first
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert second["message"] == 'state PRIM "quoted"\nsecond line'
    assert stream.getvalue().splitlines() == file_lines


def test_module_of_a_record() -> None:
    def record(name: str, **extra: object) -> logging.LogRecord:
        rec = logging.LogRecord(name, logging.INFO, __file__, 1, "m", None, None)
        rec.__dict__.update(extra)
        return rec

    assert module_of(record("safekit.module.mirror")) == "mirror"
    assert module_of(record("safekit.daemon", safekit_module="farm")) == "farm"
    assert module_of(record("safekit.daemon")) is None


def test_priorities() -> None:
    assert [syslog_priority(level) for level in (50, 40, 30, 20, 10, 25, 5)] == [2, 3, 4, 6, 7, 6, 7]


def test_unknown_format_is_refused(tmp_path: Path, logger_name: str) -> None:
    with pytest.raises(ValueError, match="json"):
        logsetup.setup(
            tmp_path / "x.log", LogSettings(format="xml"), detached=True, environ={}, logger_name=logger_name
        )
