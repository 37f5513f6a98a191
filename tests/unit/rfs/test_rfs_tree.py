"""Walking a replicated directory through its fd (the split-brain save's walk): exclusions, walk order."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.rfs import tree
from safekit.rfs.tree import Exclusions


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def dir_fd(root: Path) -> Iterator[int]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def make(root: Path, spec: dict[str, bytes | None]) -> None:
    """name -> content (a file), None (a directory)."""
    for name, content in spec.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(content)


# --------------------------------------------------------------------------- exclusions
def test_exclusions_build_strips_slashes_and_drops_empty_paths() -> None:
    ex = Exclusions.build(["/tmp/", "cache", "", "/", "a/b/"], ["x.*"])
    assert ex.paths == (b"tmp", b"cache", b"a/b")
    assert [r.pattern for r in ex.regexes] == [b"x.*"]


@pytest.mark.parametrize(
    ("rel", "excluded"),
    [
        (b"", False),  # the replicated directory itself never is
        (b"tmp", True),
        (b"tmp/x", True),
        (b"tmp/x/y", True),
        (b"tmpx", False),
        (b"tm", False),
        (b"x/tmp", False),
        (b"a/b", True),
        (b"a/b/c", True),
        (b"a", False),
        (b"a/bc", False),
    ],
)
def test_excluded_paths_cover_their_subtree_only(rel: bytes, excluded: bool) -> None:
    ex = Exclusions.build(["tmp", "a/b"], [])
    assert ex.excluded(rel) is excluded


@pytest.mark.parametrize(
    ("regex", "rel", "excluded"),
    [
        (r".*\.log", b"app.log", True),
        (r".*\.log", b"a/b/app.log", True),
        (r".*\.log$", b"app.log.1", False),
        (r"run/.*\.pid", b"run/x.pid", True),
        (r"run/.*\.pid", b"var/run/x.pid", False),
        (r"cache", b"cache", True),
        (r"cache", b"x/cache", False),
    ],
)
def test_excluded_regexes_match_the_relative_path_from_its_start(
    regex: str, rel: bytes, excluded: bool
) -> None:
    assert Exclusions.build([], [regex]).excluded(rel) is excluded


def test_no_exclusions_exclude_nothing() -> None:
    assert not Exclusions().excluded(b"anything/at/all")


# --------------------------------------------------------------------------- walk
def test_walk_yields_everything_parents_first(root: Path, dir_fd: int) -> None:
    make(root, {"b/c/d/f": b"1", "a/f": b"2", "a/e": None, "z": b"3", "b/c/g": b""})
    os.symlink("b", root / "link")
    seen = [rel for rel, _st in tree.walk(dir_fd, Exclusions())]
    assert sorted(seen) == sorted(
        [b"a", b"a/e", b"a/f", b"b", b"b/c", b"b/c/d", b"b/c/d/f", b"b/c/g", b"link", b"z"]
    )
    for i, rel in enumerate(seen):
        parent = rel.rpartition(b"/")[0]
        if parent:
            assert parent in seen[:i], rel


def test_walk_does_not_follow_symlinks(root: Path, dir_fd: int) -> None:
    make(root, {"d/f": b"x"})
    os.symlink(root / "d", root / "l")
    walked = dict(tree.walk(dir_fd, Exclusions()))
    assert b"l/f" not in walked
    assert stat.S_ISLNK(walked[b"l"].st_mode)


def test_walk_skips_excluded_subtrees(root: Path, dir_fd: int) -> None:
    make(root, {"keep/f": b"", "tmp/x/y": b"", "logs/a.log": b"", "logs/a.txt": b"", "tmpfile": b""})
    ex = Exclusions.build(["tmp"], [r".*\.log"])
    assert sorted(rel for rel, _ in tree.walk(dir_fd, ex)) == [
        b"keep",
        b"keep/f",
        b"logs",
        b"logs/a.txt",
        b"tmpfile",
    ]


def test_walk_from_a_top(root: Path, dir_fd: int) -> None:
    make(root, {"a/b/c": b"", "x": b""})
    assert [rel for rel, _ in tree.walk(dir_fd, Exclusions(), b"a")] == [b"a/b", b"a/b/c"]
    assert list(tree.walk(dir_fd, Exclusions(), b"missing")) == []
    assert list(tree.walk(dir_fd, Exclusions(), b"x")) == []  # a file has nothing under it


def test_walk_of_an_empty_directory(dir_fd: int) -> None:
    assert list(tree.walk(dir_fd, Exclusions())) == []


def test_walk_handles_non_utf8_names(root: Path, dir_fd: int) -> None:
    os.mkdir(os.fsencode(root) + b"/\xff\xfe")
    open(os.fsencode(root) + b"/\xff\xfe/\x80", "wb").close()
    assert [rel for rel, _ in tree.walk(dir_fd, Exclusions())] == [b"\xff\xfe", b"\xff\xfe/\x80"]


def test_proc_path(dir_fd: int) -> None:
    assert tree.proc_path(dir_fd, b"") == f"/proc/self/fd/{dir_fd}".encode()
    assert tree.proc_path(dir_fd, b"a/b") == f"/proc/self/fd/{dir_fd}/a/b".encode()
    assert os.path.samefile(tree.proc_path(dir_fd, b""), f"/proc/self/fd/{dir_fd}")
