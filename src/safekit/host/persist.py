"""Crash-safe persistence: what must survive a crash is written to a temporary file, fsynced, renamed
over the old one, and the directory fsynced, so a reader sees the old or the new content, never a mix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")


def write_bytes(path: Path, payload: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `payload` atomically (temporary file, fsync, rename, directory fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # a leftover temporary file keeps its old mode through O_CREAT
        view = memoryview(payload)
        while view:  # a short write (a full disk) must never be renamed over the good file
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(path: Path) -> Any | None:
    """The saved content, or None when nothing was ever saved. A corrupt file raises ValueError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)
