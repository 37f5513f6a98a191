"""safekit.ha.wheelhouse: the wheelhouse moves to a node as one archive, byte-identical for the same
wheels (so a second deploy copies nothing), and the node's directory holds exactly its wheels."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from safekit_collection import run_module


def wheels(directory: Path, contents: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (directory / name).write_bytes(data)
    return directory


def pack(tmp: Path, src: Path, archive: Path, *, check: bool = False) -> dict[str, object]:
    return run_module(
        "wheelhouse", {"state": "packed", "path": str(src), "archive": str(archive)}, tmp, {}, check=check
    )


def unpack(tmp: Path, dest: Path, archive: Path, *, check: bool = False) -> dict[str, object]:
    args = {"state": "unpacked", "path": str(dest), "archive": str(archive)}
    return run_module("wheelhouse", args, tmp, {}, check=check)


def test_the_same_wheels_give_the_same_archive_whatever_their_file_times(tmp_path: Path) -> None:
    src = wheels(
        tmp_path / "wh",
        {"safekit-0.1.0-py3-none-any.whl": b"engine", "pydantic-2.0-py3-none-any.whl": b"dep"},
    )
    (src / "notes.txt").write_text("not a wheel")
    archive = tmp_path / "wh.tar"
    first = pack(tmp_path, src, archive)
    assert first["changed"] is True and first["wheels"] == [
        "pydantic-2.0-py3-none-any.whl",
        "safekit-0.1.0-py3-none-any.whl",
    ]
    data = archive.read_bytes()
    for path in src.iterdir():  # pip rewrites the wheels on every build: new times, same bytes
        path.touch()
    assert pack(tmp_path, src, archive)["changed"] is False
    assert archive.read_bytes() == data
    with tarfile.open(archive) as tar:
        assert [(m.name, m.mtime, m.uid, m.mode) for m in tar.getmembers()] == [
            ("pydantic-2.0-py3-none-any.whl", 0, 0, 0o644),
            ("safekit-0.1.0-py3-none-any.whl", 0, 0, 0o644),
        ]
    (src / "safekit-0.1.0-py3-none-any.whl").write_bytes(b"engine, changed")
    assert pack(tmp_path, src, archive, check=True)["changed"] is True
    assert archive.read_bytes() == data, "check mode writes nothing"
    assert pack(tmp_path, src, archive)["changed"] is True and archive.read_bytes() != data


def test_the_node_holds_exactly_the_archive_s_wheels_and_an_unchanged_archive_changes_nothing(
    tmp_path: Path,
) -> None:
    src = wheels(tmp_path / "controller", {"a-1-py3-none-any.whl": b"a1", "b-1-py3-none-any.whl": b"b1"})
    archive = tmp_path / "node" / "wheelhouse.tar"
    archive.parent.mkdir()
    pack(tmp_path, src, archive)
    dest = wheels(tmp_path / "node" / "wheelhouse", {"stale-0-py3-none-any.whl": b"old"})
    assert unpack(tmp_path, dest, archive, check=True)["changed"] is True
    assert sorted(p.name for p in dest.iterdir()) == ["stale-0-py3-none-any.whl"], (
        "check mode changes nothing"
    )
    result = unpack(tmp_path, dest, archive)
    assert result["changed"] is True
    assert {p.name: p.read_bytes() for p in dest.glob("*.whl")} == {
        "a-1-py3-none-any.whl": b"a1",
        "b-1-py3-none-any.whl": b"b1",
    }
    assert unpack(tmp_path, dest, archive)["changed"] is False
    (dest / "a-1-py3-none-any.whl").unlink()  # someone cleaned the directory by hand
    assert unpack(tmp_path, dest, archive)["changed"] is True
    assert (dest / "a-1-py3-none-any.whl").read_bytes() == b"a1"
    assert not list((tmp_path / "node").glob(".wheelhouse-*")), "no staging directory left behind"


def test_an_archive_with_anything_but_plain_wheels_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../etc/evil.whl")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    archive.write_bytes(buffer.getvalue())
    dest = tmp_path / "wheelhouse"
    result = unpack(tmp_path, dest, archive)
    assert result.get("failed") is True and "not a plain wheel file" in str(result["msg"])
    assert not dest.exists()


def test_a_missing_archive_fails_with_its_path_except_in_check_mode(tmp_path: Path) -> None:
    missing = tmp_path / "none.tar"
    result = unpack(tmp_path, tmp_path / "wh", missing)
    assert result.get("failed") is True and str(missing) in str(result["msg"])
    assert unpack(tmp_path, tmp_path / "wh", missing, check=True)["changed"] is True
