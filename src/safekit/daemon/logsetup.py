"""safekitd's own log: where it goes and in what format.

- The file (`/var/log/safekit/safekitd.log`) is always written, rotated by size with a bounded
  number of old files: the API's log view, `safekit` diagnostics and the roles read it.
- Under systemd (JOURNAL_STREAM names safekitd's stderr) the lines also go to stderr for
  journald: no timestamp (journald stamps them) and a `<N>` syslog priority prefix, so that
  `journalctl -p warning -u safekitd` filters by level.
- Run from a terminal (no --daemon), lines go to stderr with a timestamp, as before.
- `--log-format json`: one JSON object per line (time, level, logger, message, module when the
  line is about an application module, exception when there is one), in the file and on stderr.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from safekit.host import logfiles

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
MODULE_LOGGER_PREFIX = "safekit.module."

DEFAULT_MAX_BYTES = logfiles.MAX_BYTES
DEFAULT_BACKUPS = logfiles.BACKUPS

# syslog(3) priorities, as sd-daemon(3) prefixes read by journald.
SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,  # LOG_CRIT
    logging.ERROR: 3,  # LOG_ERR
    logging.WARNING: 4,  # LOG_WARNING
    logging.INFO: 6,  # LOG_INFO
    logging.DEBUG: 7,  # LOG_DEBUG
}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (a level in between takes that of the standard level
    below it)."""
    for level in sorted(SYSLOG_PRIORITY, reverse=True):
        if levelno >= level:
            return SYSLOG_PRIORITY[level]
    return SYSLOG_PRIORITY[logging.DEBUG]


def stderr_is_journal(environ: Mapping[str, str], stderr_stat: os.stat_result | None) -> bool:
    """JOURNAL_STREAM=DEVICE:INODE is set by systemd when stdout/stderr are connected to journald;
    it holds for safekitd only when its own stderr is that stream (a script started by a service
    inherits the variable with another stderr)."""
    value = environ.get("JOURNAL_STREAM", "")
    if not value or stderr_stat is None:
        return False
    device, _, inode = value.partition(":")
    try:
        return int(device) == stderr_stat.st_dev and int(inode) == stderr_stat.st_ino
    except ValueError:
        return False


def module_of(record: logging.LogRecord) -> str | None:
    """The application module a record is about: from the module loggers' names
    (`safekit.module.NAME`) or an explicit `extra={"safekit_module": NAME}`."""
    explicit = getattr(record, "safekit_module", None)
    if explicit:
        return str(explicit)
    if record.name.startswith(MODULE_LOGGER_PREFIX):
        return record.name[len(MODULE_LOGGER_PREFIX) :]
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        module = module_of(record)
        if module is not None:
            entry["module"] = module
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    """Prefixes each line of a record with `<N>` (its syslog priority), as journald reads stderr;
    a multi-line record (a traceback) keeps its priority on every line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"
    max_bytes: int = DEFAULT_MAX_BYTES
    """Size at which the file is rotated (0: never)."""
    backups: int = DEFAULT_BACKUPS
    """Rotated files kept (safekitd.log.1 ... .N)."""


def stderr_mode(*, detached: bool, environ: Mapping[str, str], stderr_stat: os.stat_result | None) -> str:
    """Where stderr lines go: "none" (detached daemon), "journal" (systemd), "terminal"."""
    if detached:
        return "none"
    return "journal" if stderr_is_journal(environ, stderr_stat) else "terminal"


def _formatter(settings: LogSettings, *, timestamps: bool) -> logging.Formatter:
    if settings.format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT if timestamps else JOURNAL_FORMAT)


def setup(
    log_file: Path,
    settings: LogSettings,
    *,
    detached: bool,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    logger_name: str = "safekit",
) -> str:
    """Install safekitd's handlers on the `safekit` logger; returns the stderr mode chosen."""
    if settings.format not in FORMATS:
        raise ValueError(f"log format {settings.format!r}: one of {', '.join(FORMATS)}")
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    try:
        out_stat: os.stat_result | None = os.fstat(out.fileno())
    except (OSError, ValueError, AttributeError):
        out_stat = None
    mode = stderr_mode(detached=detached, environ=env, stderr_stat=out_stat)

    log_file.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger(logger_name)
    root.setLevel(settings.level)
    file_handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=max(settings.max_bytes, 0), backupCount=max(settings.backups, 0), encoding="utf-8"
    )
    file_handler.setFormatter(_formatter(settings, timestamps=True))
    root.addHandler(file_handler)
    if mode != "none":
        handler = logging.StreamHandler(out)
        if mode == "journal":
            handler.setFormatter(JournalFormatter(_formatter(settings, timestamps=False)))
        else:
            handler.setFormatter(_formatter(settings, timestamps=True))
        root.addHandler(handler)
    return mode
