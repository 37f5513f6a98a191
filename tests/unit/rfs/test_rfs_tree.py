"""Walking a replicated directory through its fd: exclusions, walk order, manifests, block sums."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit.rfs import tree
from safekit.rfs.journal import ZONE
from safekit.rfs.tree import EntryInfo, Exclusions


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


# --------------------------------------------------------------------------- manifest, entry_info
def test_manifest_without_sums(root: Path, dir_fd: int) -> None:
    make(root, {"d/f": b"hello", "e": None})
    os.chmod(root / "d/f", 0o640)
    os.chown(root / "d/f", 1234, 5678)
    os.utime(root / "d/f", ns=(1, 2_000_000_123))
    os.symlink("d/f", root / "l")
    os.mkfifo(root / "p", 0o600)
    got = {e.path: e for e in tree.manifest(dir_fd, Exclusions(), sums=False)}
    assert set(got) == {b"d", b"d/f", b"e", b"l", b"p"}
    f = got[b"d/f"]
    assert (f.kind, f.mode, f.uid, f.gid, f.size, f.mtime_ns) == (
        "f",
        stat.S_IFREG | 0o640,
        1234,
        5678,
        5,
        2_000_000_123,
    )
    assert f.sums is None
    assert got[b"d"].kind == "d"
    assert got[b"d"].size == 0
    assert stat.S_ISDIR(got[b"d"].mode)
    assert (got[b"l"].kind, got[b"l"].target, got[b"l"].size) == ("l", b"d/f", 0)
    assert got[b"p"].kind == "o"
    assert stat.S_ISFIFO(got[b"p"].mode)
    assert got[b"p"].rdev == 0


def test_manifest_with_sums(root: Path, dir_fd: int) -> None:
    data = os.urandom(2 * ZONE + 10)
    make(root, {"big": data, "empty": b"", "d": None})
    os.symlink("big", root / "l")
    got = {e.path: e for e in tree.manifest(dir_fd, Exclusions(), sums=True)}
    assert got[b"big"].sums == (
        tree.block_sum(data[:ZONE]),
        tree.block_sum(data[ZONE : 2 * ZONE]),
        tree.block_sum(data[2 * ZONE :]),
    )
    assert got[b"empty"].sums == ()
    assert got[b"d"].sums is None
    assert got[b"l"].sums is None


def test_manifest_honours_exclusions(root: Path, dir_fd: int) -> None:
    make(root, {"tmp/x": b"", "f": b""})
    assert [e.path for e in tree.manifest(dir_fd, Exclusions.build(["tmp"], []), sums=True)] == [b"f"]


def test_entry_info_of_the_directory_itself(root: Path, dir_fd: int) -> None:
    os.chmod(root, 0o751)
    info = tree.entry_info(dir_fd, b"")
    assert info.path == b""
    assert info.kind == "d"
    assert info.mode == stat.S_IFDIR | 0o751


def test_entry_info_json_round_trip(root: Path, dir_fd: int) -> None:
    make(root, {"\udcff/f": bytes(ZONE + 1)})
    os.symlink(b"\xfftarget", os.fsencode(root) + b"/l")
    for info in tree.manifest(dir_fd, Exclusions(), sums=True):
        back = EntryInfo.from_json(info.to_json())
        assert back == info
        assert back.sums == info.sums


def test_entry_info_json_keeps_rdev_and_omits_defaults() -> None:
    info = EntryInfo(b"dev", "o", stat.S_IFCHR | 0o600, 0, 0, 0, 5, rdev=os.makedev(1, 3))
    obj = info.to_json()
    assert "l" not in obj
    assert "h" not in obj
    assert EntryInfo.from_json(obj) == info
    assert EntryInfo.from_json(obj).sums is None


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        (stat.S_IFREG, "f"),
        (stat.S_IFDIR, "d"),
        (stat.S_IFLNK, "l"),
        (stat.S_IFIFO, "o"),
        (stat.S_IFSOCK, "o"),
        (stat.S_IFCHR, "o"),
        (stat.S_IFBLK, "o"),
    ],
)
def test_kind_of(mode: int, kind: str) -> None:
    assert tree.kind_of(mode | 0o644) == kind


def test_proc_path(dir_fd: int) -> None:
    assert tree.proc_path(dir_fd, b"") == f"/proc/self/fd/{dir_fd}".encode()
    assert tree.proc_path(dir_fd, b"a/b") == f"/proc/self/fd/{dir_fd}/a/b".encode()
    assert os.path.samefile(tree.proc_path(dir_fd, b""), f"/proc/self/fd/{dir_fd}")


# --------------------------------------------------------------------------- block sums
@pytest.mark.parametrize("size", [0, 1, ZONE - 1, ZONE, ZONE + 1, 2 * ZONE, 3 * ZONE - 1])
def test_block_sums_boundaries(root: Path, size: int) -> None:
    data = os.urandom(size)
    (root / "f").write_bytes(data)
    fd = os.open(root / "f", os.O_RDONLY)
    try:
        sums = tree.block_sums(fd, size)
    finally:
        os.close(fd)
    assert len(sums) == (size + ZONE - 1) // ZONE
    assert sums == tuple(tree.block_sum(data[i : i + ZONE]) for i in range(0, size, ZONE))
    assert all(len(s) == tree.SUM_SIZE for s in sums)


def test_block_sums_stop_at_the_end_of_a_file_that_shrank(root: Path) -> None:
    (root / "f").write_bytes(b"x" * 10)
    fd = os.open(root / "f", os.O_RDONLY)
    try:
        assert tree.block_sums(fd, 3 * ZONE) == (tree.block_sum(b"x" * 10),)
    finally:
        os.close(fd)


def test_block_sum_differs_for_different_data() -> None:
    assert tree.block_sum(b"a") != tree.block_sum(b"b")
    assert tree.block_sum(b"") == tree.block_sum(b"")


# --------------------------------------------------------------------------- entries_with_sums
def test_entries_with_sums_skips_missing_and_non_regular_files(root: Path, dir_fd: int) -> None:
    make(root, {"f": b"abc", "d": None, "d/g": bytes(ZONE)})
    os.symlink("f", root / "l")
    got = list(tree.entries_with_sums(dir_fd, [b"missing", b"f", b"d", b"l", b"d/g", b"d/missing"]))
    assert [e.path for e in got] == [b"f", b"d/g"]
    assert got[0].sums == (tree.block_sum(b"abc"),)
    assert got[0].size == 3
    assert got[1].sums == (tree.block_sum(bytes(ZONE)),)


def test_entries_with_sums_skips_a_fifo_without_blocking(root: Path, dir_fd: int) -> None:
    os.mkfifo(root / "p")
    result: list[list[EntryInfo]] = []
    worker = threading.Thread(target=lambda: result.append(list(tree.entries_with_sums(dir_fd, [b"p"]))))
    worker.start()
    worker.join(0.5)
    blocked = worker.is_alive()
    if blocked:  # release it: a writer opening the FIFO completes the reader's open
        os.close(os.open(root / "p", os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5.0)
    assert not blocked
    assert result == [[]]


# --------------------------------------------------------------------------- chown_at, chmod_at, utime_at
def test_attribute_helpers_on_the_directory_itself(root: Path, dir_fd: int) -> None:
    tree.chown_at(dir_fd, b"", 4321, 8765)
    tree.chmod_at(dir_fd, b"", stat.S_IFDIR | 0o711)
    tree.utime_at(dir_fd, b"", 10**9, 2 * 10**9)
    st = os.stat(root)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 8765, 0o711)
    assert (st.st_atime_ns, st.st_mtime_ns) == (10**9, 2 * 10**9)
    assert tree.lstat(dir_fd, b"").st_ino == st.st_ino


def test_attribute_helpers_on_a_file(root: Path, dir_fd: int) -> None:
    make(root, {"d/f": b""})
    tree.chown_at(dir_fd, b"d/f", 1, 2)
    tree.chmod_at(dir_fd, b"d/f", 0o4755)
    tree.utime_at(dir_fd, b"d/f", 5, 6)
    st = os.stat(root / "d/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_atime_ns, st.st_mtime_ns) == (
        1,
        2,
        0o4755,
        5,
        6,
    )


def test_chown_and_utime_at_do_not_follow_a_symlink(root: Path, dir_fd: int) -> None:
    make(root, {"f": b""})
    os.symlink("f", root / "l")
    before = os.stat(root / "f")
    tree.chown_at(dir_fd, b"l", 77, 88)
    tree.utime_at(dir_fd, b"l", 3, 4)
    link, target = os.lstat(root / "l"), os.stat(root / "f")
    assert (link.st_uid, link.st_gid, link.st_mtime_ns) == (77, 88, 4)
    assert (target.st_uid, target.st_gid, target.st_mtime_ns) == (
        before.st_uid,
        before.st_gid,
        before.st_mtime_ns,
    )


def test_chown_at_minus_one_keeps_a_field(root: Path, dir_fd: int) -> None:
    make(root, {"f": b""})
    os.chown(root / "f", 10, 20)
    tree.chown_at(dir_fd, b"f", -1, 30)
    tree.chown_at(dir_fd, b"", 40, -1)
    assert (os.stat(root / "f").st_uid, os.stat(root / "f").st_gid) == (10, 30)
    assert os.stat(root).st_uid == 40
