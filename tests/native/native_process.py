"""What the native processes' tests share: a process whose control-channel events (JSON lines on
its stdout) are read as they come, and waited for by name."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


class EventProcess:
    """A native replication process: its events, decoded in order, and its log (stderr)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.lines: list[bytes] = []
        self.log_path = log
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb")
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events()]

    def wait(self, name: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """The `count`th `name` event, waited for; an exited process is read to its end first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.proc.poll() is not None
            if exited:
                self._reader.join(timeout=2)
            found = [e for e in self.events() if e["event"] == name]
            if len(found) >= count:
                return found[count - 1]
            if exited:
                break
            time.sleep(0.01)
        raise AssertionError(f"no {name!r} event #{count}: {self.names()}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
