"""What a node must remember across a crash is written whole, privately, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safekit.host.persist import read_json, write_json

RECORD = {"state": "PRIM", "last_primary": "node1", "generation": 12, "uptodate": True}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "AM" / "state.json"
    write_json(path, RECORD)
    assert read_json(path) == RECORD


@settings(max_examples=50, deadline=None)
@given(data=json_values)
def test_any_json_value_round_trips(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    path = tmp_path_factory.mktemp("persist") / "state.json"
    write_json(path, data)
    assert read_json(path) == data


def test_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json(path, RECORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rewrite_replaces_and_stays_private(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}", encoding="utf-8")
    path.chmod(0o644)
    write_json(path, RECORD)
    write_json(path, {**RECORD, "generation": 13})
    assert read_json(path) == {**RECORD, "generation": 13}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json(path, RECORD)
    write_json(path, RECORD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_missing_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "var" / "modules" / "AM" / "state.json"
    write_json(path, RECORD)
    assert read_json(path) == RECORD


def test_file_is_readable_json_text(tmp_path: Path) -> None:
    """An operator can read (and diff) the saved state."""
    path = tmp_path / "state.json"
    write_json(path, {"b": 1, "a": "é"})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": "é", "b": 1}


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "never-saved.json") is None


@pytest.mark.parametrize("content", [b"", b"{", b'{"state": "PRIM",', b"\xff\xfe\x00", b"not json"])
def test_corrupt_file_raises_value_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        read_json(path)


def test_unserialisable_data_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json(path, RECORD)
    with pytest.raises(TypeError):
        write_json(path, {"peers": {"node2"}})
    assert read_json(path) == RECORD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_short_write_never_replaces_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    write_json(path, RECORD)
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:
        return real_write(fd, data[: max(1, len(data) // 2)])

    monkeypatch.setattr(os, "write", short_write)
    with contextlib.suppress(OSError):
        write_json(path, {**RECORD, "generation": 13})
    monkeypatch.undo()
    assert read_json(path) in (RECORD, {**RECORD, "generation": 13})
