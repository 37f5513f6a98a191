"""A module's journal: the records `safekit report` builds failover reports from
(safekit/failover_report.py has their shape). One JSON object per line in
/var/log/safekit/modules/AM.journal, bounded by rotation (1 MiB, 2 kept: thousands of episodes).

Writing is synchronous and small (a few records per transition, none in the steady state); an
I/O error is logged once and never stops the module.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from safekit.host import logfiles

MAX_BYTES = 1024 * 1024
BACKUPS = 2


class ModuleJournal:
    def __init__(self, path: Path, log: logging.Logger) -> None:
        self.path = path
        self.log = log
        self._failed = False

    def transition(self, before: str, after: str, reason: str) -> None:
        self._write({"t": time.time(), "kind": "transition", "from": before, "to": after, "reason": reason})

    def step(self, name: str, began: float, *, ok: bool) -> None:
        """An executor step that began at `began` (time.time()) and ends now."""
        self._write({"t": began, "kind": "step", "name": name, "duration": time.time() - began, "ok": ok})

    def script(self, name: str, began: float, outcome: str) -> None:
        self._write(
            {"t": began, "kind": "script", "name": name, "duration": time.time() - began, "outcome": outcome}
        )

    def detection(self, name: str, silent: float) -> None:
        """A failure noticed now after `silent` seconds without a sign of life (a peer's heartbeats):
        the detection step of the failover report that follows, from the last sign to now."""
        now = time.time()
        self._write({"t": now - silent, "kind": "detection", "name": name, "duration": silent})

    def _write(self, record: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            logfiles.rotate_if_larger(self.path, MAX_BYTES, BACKUPS)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:
            if not self._failed:
                self.log.warning("module journal %s: %s (failover reports will miss records)", self.path, exc)
            self._failed = True
        else:
            self._failed = False
