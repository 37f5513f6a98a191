"""What the native processes' tests share: where the programs are (and building them), the mark
that needs FUSE, and a process whose control-channel events (JSON lines on its stdout) are read as
they come, waited for by name, and which takes commands on its stdin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from safekit.rfs import channel

REPO = Path(__file__).resolve().parents[2]
SANITIZE = os.environ.get("SAFEKIT_NATIVE_SANITIZE") == "1"
# SAFEKIT_NATIVE_BUILD: programs built elsewhere (another commit's, for a before/after figure)
BUILD = Path(
    os.environ.get("SAFEKIT_NATIVE_BUILD") or REPO / "native" / "build" / ("asan" if SANITIZE else "")
)

# The logs (stderr) of the processes started by the running test: tests/native/conftest.py reads
# them for sanitizer reports printed there.
STARTED_LOGS: list[Path] = []

NEEDS_FUSE = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="needs root, /dev/fuse and fusermount3",
)


def build_programs() -> None:
    """Build the programs the tests run (the sanitizer build with SAFEKIT_NATIVE_SANITIZE=1),
    unless SAFEKIT_NATIVE_BUILD names programs built elsewhere."""
    if os.environ.get("SAFEKIT_NATIVE_BUILD"):
        return
    result = subprocess.run(
        ["make", "-C", str(REPO / "native"), "asan" if SANITIZE else "all"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


class EventProcess:
    """A native replication process: its events, decoded in order, and its log (stderr)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.lines: list[bytes] = []
        self.log_path = log
        STARTED_LOGS.append(log)
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


class CommandedProcess(EventProcess):
    """An event process that takes control-channel commands on its stdin."""

    def command(self, name: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(channel.encode_command(channel.decode_command(json.dumps({"cmd": name}))))
        self.proc.stdin.flush()

    def count(self, name: str) -> int:
        return self.names().count(name)
