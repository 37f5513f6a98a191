"""safekitd runs with the C allocator and gives free memory back (daemon/allocator.py): it
re-executes itself once with PYTHONMALLOC=malloc, keeping its command line, unless the operator
chose an allocator; a daemon actually started that way runs with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safekit.daemon import allocator


def test_the_daemon_reexecutes_itself_once_with_the_system_allocator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setattr(os, "execv", lambda path, args: calls.append((path, list(args))))
    script = tmp_path / "safekitd"
    script.write_text("#!/usr/bin/env python3\n")
    allocator.ensure_system_allocator([str(script), "--daemon"])
    assert calls == [(sys.executable, [sys.executable, str(script), "--daemon"])]
    assert os.environ["PYTHONMALLOC"] == "malloc"
    allocator.ensure_system_allocator([str(script), "--daemon"])  # now set: nothing more
    assert len(calls) == 1


def test_run_as_a_module_it_runs_the_module_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setattr(os, "execv", lambda path, args: calls.append(list(args)))
    allocator.ensure_system_allocator(["/somewhere/safekit/daemon/main.py", "--node", "n1"])
    assert calls == [[sys.executable, "-m", "safekit.daemon.main", "--node", "n1"]]


def test_an_allocator_the_operator_chose_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONMALLOC", "pymalloc")
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("must not re-execute"))
    allocator.ensure_system_allocator(["safekitd"])


def test_the_trim_is_available_on_this_machine() -> None:
    libc = allocator.glibc()
    assert libc is not None
    assert libc.malloc_trim(0) in (0, 1)
    # and a Python started with the variable really uses the C allocator
    out = subprocess.run(
        [sys.executable, "-c", "import sys; sys._debugmallocstats()"],
        env={**os.environ, "PYTHONMALLOC": "malloc"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "arenas allocated" not in out.stderr  # pymalloc's statistics: absent with malloc
