"""The audit log: one JSON line per command, configuration change, login and refusal - who, from
where, what, and how it ended. /var/log/safekit/audit.log (0600)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("safekit.api")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, *, who: str, source: str, what: str, outcome: str, **details: Any) -> None:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "who": who,
            "from": source,
            "what": what,
            "outcome": outcome,
            **details,
        }
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:  # the command was done: say that its audit line is missing
            log.error("audit log %s not written (%s): %s", self.path, exc, line.strip())

    def tail(self, count: int) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()[-count:]
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries
