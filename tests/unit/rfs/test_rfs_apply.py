"""The secondary's side: every operation applied to a real copy through its directory fd (as root)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from safekit.rfs import ops
from safekit.rfs.apply import Replica
from safekit.rfs.wire import (
    ATTR_ATIME,
    ATTR_GID,
    ATTR_MODE,
    ATTR_MTIME,
    ATTR_SIZE,
    ATTR_UID,
    FrameType,
    WireError,
    Writer,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="applies owners and device nodes: needs root")

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


@dataclass
class Copy:
    root: Path
    replica: Replica

    def apply(self, *operations: ops.Operation) -> None:
        for op in operations:
            self.replica.apply(0, op)

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def names(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*"))


@pytest.fixture(autouse=True)
def umask_zero() -> Iterator[None]:
    old = os.umask(0)  # as the secondary's process runs
    yield
    os.umask(old)


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[Copy]:
    root = tmp_path / "copy"
    root.mkdir()
    (tmp_path / "outside").write_bytes(b"untouched")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    replica = Replica([fd])
    yield Copy(root, replica)
    replica.close()
    os.close(fd)
    assert (tmp_path / "outside").read_bytes() == b"untouched"


@pytest.fixture
def lenient(copy: Copy) -> Copy:
    copy.replica.lenient = True
    return copy


# ------------------------------------------------------------- create, write, truncate, fallocate
def test_create_sets_mode_and_owner(copy: Copy) -> None:
    copy.apply(ops.Create(b"f", stat.S_IFREG | 0o4751, 1234, 5678))
    st = os.stat(copy.root / "f")
    assert stat.S_ISREG(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size) == (0o4751, 1234, 5678, 0)


def test_create_truncates_an_existing_file(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"old content")
    copy.apply(ops.Create(b"f", 0o644, 0, 0))
    assert copy.read("f") == b""


def test_create_then_write_uses_the_created_file(copy: Copy) -> None:
    copy.apply(ops.Create(b"f", 0o400, 0, 0), ops.Write(b"f", 0, b"data"))  # read-only mode: fd kept
    assert copy.read("f") == b"data"


def test_create_in_a_missing_directory(copy: Copy) -> None:
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Create(b"d/f", 0o644, 0, 0))
    copy.replica.lenient = True
    copy.apply(ops.Create(b"d/e/f", 0o644, 0, 0))
    assert copy.read("d/e/f") == b""


def test_lenient_create_replaces_a_directory(lenient: Copy) -> None:
    (lenient.root / "f" / "sub").mkdir(parents=True)
    lenient.apply(ops.Create(b"f", 0o644, 0, 0), ops.Write(b"f", 0, b"x"))
    assert lenient.read("f") == b"x"


def test_write_at_offsets(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"0123456789")
    copy.apply(ops.Write(b"f", 2, b"ab"), ops.Write(b"f", 12, b"z"), ops.Write(b"f", 0, b""))
    assert copy.read("f") == b"01ab456789\0\0z"
    assert copy.replica.bytes_written == 3


def test_write_of_a_large_buffer(copy: Copy) -> None:
    data = os.urandom(5 << 20)
    copy.apply(ops.Create(b"f", 0o644, 0, 0), ops.Write(b"f", 1 << 32, data))
    with open(copy.root / "f", "rb") as f:
        f.seek(1 << 32)
        assert f.read() == data
    assert os.stat(copy.root / "f").st_size == (1 << 32) + len(data)


def test_write_to_a_missing_file_is_refused_in_sync(copy: Copy) -> None:
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Write(b"f", 0, b"x"))
    assert copy.names() == []


def test_write_to_a_missing_file_creates_it_when_lenient(lenient: Copy) -> None:
    lenient.apply(ops.Write(b"a/b/f", 3, b"x"))
    assert lenient.read("a/b/f") == b"\0\0\0x"
    assert stat.S_IMODE(os.stat(lenient.root / "a/b/f").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(lenient.root / "a/b").st_mode) == 0o755


def test_lenient_parents_are_not_world_writable(lenient: Copy) -> None:
    lenient.apply(ops.Write(b"a/b/c/f", 0, b"x"))
    for d in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE(os.stat(lenient.root / d).st_mode) == 0o755, d


def test_write_does_not_follow_a_symlink(lenient: Copy, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside", lenient.root / "l")
    with pytest.raises(OSError) as exc:
        lenient.apply(ops.Write(b"l", 0, b"evil"))
    assert exc.value.errno == errno.ELOOP


@pytest.mark.parametrize("size", [0, 3, 100])
def test_truncate(copy: Copy, size: int) -> None:
    (copy.root / "f").write_bytes(b"0123456789")
    copy.apply(ops.Truncate(b"f", size))
    assert copy.read("f") == b"0123456789"[:size].ljust(size, b"\0")


def test_truncate_of_a_missing_file(copy: Copy) -> None:
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Truncate(b"f", 5))
    copy.replica.lenient = True
    copy.apply(ops.Truncate(b"f", 5))
    assert copy.read("f") == bytes(5)


def test_fallocate_modes(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"x" * 8192)
    copy.apply(ops.Fallocate(b"f", 0, 8192, 4096))
    assert os.stat(copy.root / "f").st_size == 12288
    copy.apply(ops.Fallocate(b"f", FALLOC_FL_KEEP_SIZE, 12288, 4096))
    assert os.stat(copy.root / "f").st_size == 12288
    copy.apply(ops.Fallocate(b"f", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096))
    assert copy.read("f") == bytes(4096) + b"x" * 4096 + bytes(4096)


def test_fallocate_errors_carry_errno(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"x")
    with pytest.raises(OSError) as exc:
        copy.apply(ops.Fallocate(b"f", FALLOC_FL_PUNCH_HOLE, 0, 1))  # punch hole needs KEEP_SIZE
    assert exc.value.errno == errno.EOPNOTSUPP


# --------------------------------------------------------------------------- setattr
def _attrs(path: Path) -> tuple[int, int, int, int, int, int]:
    st = os.lstat(path)
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns, st.st_size)


FULL = ops.SetAttr(
    b"", 0, mode=0o4711, uid=1111, gid=2222, atime_ns=3 * 10**9, mtime_ns=4 * 10**9 + 5, size=7
)


@pytest.mark.parametrize(
    ("bit", "field"),
    [(ATTR_MODE, 0), (ATTR_UID, 1), (ATTR_GID, 2), (ATTR_ATIME, 3), (ATTR_MTIME, 4), (ATTR_SIZE, 5)],
    ids=["mode", "uid", "gid", "atime", "mtime", "size"],
)
def test_setattr_each_bit_alone_on_a_file(copy: Copy, bit: int, field: int) -> None:
    f = copy.root / "f"
    f.write_bytes(b"0123456789")
    os.chmod(f, 0o644)
    os.utime(f, ns=(10**9, 2 * 10**9))
    before = _attrs(f)
    copy.apply(ops.SetAttr(b"f", bit, FULL.mode, FULL.uid, FULL.gid, FULL.atime_ns, FULL.mtime_ns, FULL.size))
    after = _attrs(f)
    wanted = (0o4711, 1111, 2222, 3 * 10**9, 4 * 10**9 + 5, 7)
    for i in range(6):
        if i == field:
            assert after[i] == wanted[i]
        elif i == 4 and bit == ATTR_SIZE:
            pass  # ftruncate changes the mtime (the primary sends its own afterwards)
        else:
            assert after[i] == before[i], (i, before, after)


def test_setattr_mode_ignores_file_type_bits(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"")
    copy.apply(ops.SetAttr(b"f", ATTR_MODE, mode=stat.S_IFREG | 0o640))
    assert _attrs(copy.root / "f")[0] == 0o640


@pytest.mark.parametrize(
    ("bit", "field"),
    [(ATTR_MODE, 0), (ATTR_UID, 1), (ATTR_GID, 2), (ATTR_ATIME, 3), (ATTR_MTIME, 4)],
    ids=["mode", "uid", "gid", "atime", "mtime"],
)
def test_setattr_on_the_replicated_directory_itself(copy: Copy, bit: int, field: int) -> None:
    os.chmod(copy.root, 0o755)
    os.utime(copy.root, ns=(10**9, 2 * 10**9))
    before = _attrs(copy.root)
    copy.apply(ops.SetAttr(b"", bit, 0o1770, 1111, 2222, 3 * 10**9, 4 * 10**9 + 5))
    after = _attrs(copy.root)
    wanted = (0o1770, 1111, 2222, 3 * 10**9, 4 * 10**9 + 5)
    assert after[field] == wanted[field]
    assert [a for i, a in enumerate(after[:5]) if i != field] == [
        b for i, b in enumerate(before[:5]) if i != field
    ]


def test_setattr_everything_at_once(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"0123456789")
    copy.apply(dataclass_replace_path(FULL, b"f", mask=63))
    assert _attrs(copy.root / "f") == (0o4711, 1111, 2222, 3 * 10**9, 4 * 10**9 + 5, 7)


def dataclass_replace_path(op: ops.SetAttr, path: bytes, mask: int) -> ops.SetAttr:
    return ops.SetAttr(path, mask, op.mode, op.uid, op.gid, op.atime_ns, op.mtime_ns, op.size)


def test_setattr_on_a_symlink_ignores_mode_and_does_not_follow(copy: Copy) -> None:
    target = copy.root / "target"
    target.write_bytes(b"")
    os.chmod(target, 0o600)
    os.symlink("target", copy.root / "l")
    copy.apply(ops.SetAttr(b"l", ATTR_MODE | ATTR_UID | ATTR_GID | ATTR_MTIME, 0o777, 5, 6, 0, 9 * 10**9))
    link = os.lstat(copy.root / "l")
    assert (link.st_uid, link.st_gid, link.st_mtime_ns) == (5, 6, 9 * 10**9)
    t = os.stat(target)
    assert (stat.S_IMODE(t.st_mode), t.st_uid, t.st_gid) == (0o600, 0, 0)
    assert t.st_mtime_ns != 9 * 10**9


def test_setattr_of_a_missing_path(copy: Copy) -> None:
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.SetAttr(b"missing", ATTR_MODE, mode=0o644))


def test_setattr_negative_times(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"")
    copy.apply(ops.SetAttr(b"f", ATTR_MTIME | ATTR_ATIME, atime_ns=-(10**9), mtime_ns=-5 * 10**9))
    assert _attrs(copy.root / "f")[3:5] == (-(10**9), -5 * 10**9)


# --------------------------------------------------------------------------- xattrs
def test_xattrs_set_replace_remove(copy: Copy) -> None:
    f = copy.root / "f"
    f.write_bytes(b"")
    copy.apply(ops.SetXattr(b"f", b"user.a", b"\0one"), ops.SetXattr(b"f", b"user.b", b""))
    assert os.getxattr(f, "user.a") == b"\0one"
    assert os.getxattr(f, "user.b") == b""
    copy.apply(ops.SetXattr(b"f", b"user.a", b"two"), ops.RemoveXattr(b"f", b"user.b"))
    assert os.getxattr(f, "user.a") == b"two"
    assert "user.b" not in os.listxattr(f)


def test_xattrs_on_a_directory(copy: Copy) -> None:
    (copy.root / "d").mkdir()
    copy.apply(ops.SetXattr(b"d", b"user.k", b"v"))
    assert os.getxattr(copy.root / "d", "user.k") == b"v"


def test_xattrs_on_the_replicated_directory_itself(copy: Copy) -> None:
    copy.apply(ops.SetXattr(b"", b"user.root", b"1"))
    assert os.getxattr(copy.root, "user.root") == b"1"
    copy.apply(ops.RemoveXattr(b"", b"user.root"))
    assert "user.root" not in os.listxattr(copy.root)


def test_removing_a_missing_xattr(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"")
    with pytest.raises(OSError) as exc:
        copy.apply(ops.RemoveXattr(b"f", b"user.none"))
    assert exc.value.errno == errno.ENODATA
    copy.replica.lenient = True
    copy.apply(ops.RemoveXattr(b"f", b"user.none"))


def test_xattr_of_a_missing_path_in_sync(copy: Copy) -> None:
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.SetXattr(b"missing", b"user.a", b"1"))


# ------------------------------------------------------------- mkdir, rmdir, unlink, remove tree
def test_mkdir_sets_mode_and_owner(copy: Copy) -> None:
    copy.apply(ops.Mkdir(b"d", stat.S_IFDIR | 0o2750, 10, 20))
    assert _attrs(copy.root / "d")[:3] == (0o2750, 10, 20)


def test_mkdir_of_an_existing_path(copy: Copy) -> None:
    (copy.root / "d").mkdir()
    (copy.root / "d/keep").write_bytes(b"k")
    with pytest.raises(FileExistsError):
        copy.apply(ops.Mkdir(b"d", 0o700, 0, 0))
    copy.replica.lenient = True
    copy.apply(ops.Mkdir(b"d", 0o700, 3, 4))
    assert copy.read("d/keep") == b"k"
    assert _attrs(copy.root / "d")[:3] == (0o700, 3, 4)


def test_lenient_mkdir_replaces_a_file_and_creates_parents(lenient: Copy) -> None:
    (lenient.root / "d").write_bytes(b"file")
    lenient.apply(ops.Mkdir(b"d", 0o755, 0, 0), ops.Mkdir(b"x/y/z", 0o700, 0, 0))
    assert (lenient.root / "d").is_dir()
    assert (lenient.root / "x/y/z").is_dir()


def test_rmdir(copy: Copy) -> None:
    (copy.root / "d").mkdir()
    copy.apply(ops.Rmdir(b"d"))
    assert copy.names() == []
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Rmdir(b"d"))
    copy.replica.lenient = True
    copy.apply(ops.Rmdir(b"d"))


def test_rmdir_of_a_non_empty_directory(copy: Copy) -> None:
    (copy.root / "d/e").mkdir(parents=True)
    (copy.root / "d/e/f").write_bytes(b"")
    with pytest.raises(OSError) as exc:
        copy.apply(ops.Rmdir(b"d"))
    assert exc.value.errno == errno.ENOTEMPTY
    copy.replica.lenient = True
    copy.apply(ops.Rmdir(b"d"))
    assert copy.names() == []


def test_unlink(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"")
    os.symlink("f", copy.root / "l")
    copy.apply(ops.Unlink(b"l"))
    assert copy.names() == ["f"]
    copy.apply(ops.Unlink(b"f"))
    assert copy.names() == []
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Unlink(b"f"))
    copy.replica.lenient = True
    copy.apply(ops.Unlink(b"f"))


def test_remove_tree(copy: Copy) -> None:
    (copy.root / "d/e").mkdir(parents=True)
    (copy.root / "d/e/f").write_bytes(b"")
    (copy.root / "g").write_bytes(b"")
    os.symlink("/", copy.root / "d/root")  # never followed
    copy.apply(ops.RemoveTree(b"d"), ops.RemoveTree(b"g"), ops.RemoveTree(b"missing"))
    assert copy.names() == []


def test_remove_tree_refuses_the_replicated_directory(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"")
    for lenient in (False, True):
        copy.replica.lenient = lenient
        with pytest.raises(OSError) as exc:
            copy.apply(ops.RemoveTree(b""))
        assert exc.value.errno == errno.EPERM
    assert copy.names() == ["f"]


# --------------------------------------------------------------------------- rename
def test_rename_replaces(copy: Copy) -> None:
    (copy.root / "a").write_bytes(b"A")
    (copy.root / "b").write_bytes(b"B")
    copy.apply(ops.Rename(b"a", b"b"))
    assert copy.names() == ["b"]
    assert copy.read("b") == b"A"


def test_rename_across_directories(copy: Copy) -> None:
    (copy.root / "x").mkdir()
    (copy.root / "y").mkdir()
    (copy.root / "x/a").write_bytes(b"A")
    copy.apply(ops.Rename(b"x/a", b"y/b"), ops.Rename(b"x", b"y/x"))
    assert copy.names() == ["y", "y/b", "y/x"]


def test_rename_noreplace(copy: Copy) -> None:
    (copy.root / "a").write_bytes(b"A")
    (copy.root / "b").write_bytes(b"B")
    with pytest.raises(FileExistsError):
        copy.apply(ops.Rename(b"a", b"b", RENAME_NOREPLACE))
    assert (copy.read("a"), copy.read("b")) == (b"A", b"B")
    copy.apply(ops.Rename(b"a", b"c", RENAME_NOREPLACE))
    assert copy.names() == ["b", "c"]


def test_rename_exchange(copy: Copy) -> None:
    (copy.root / "a").write_bytes(b"A")
    (copy.root / "d").mkdir()
    (copy.root / "d/f").write_bytes(b"F")
    copy.apply(ops.Rename(b"a", b"d", RENAME_EXCHANGE))
    assert copy.read("d") == b"A"
    assert copy.read("a/f") == b"F"
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Rename(b"a", b"missing", RENAME_EXCHANGE))


def test_rename_of_a_missing_source(copy: Copy) -> None:
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Rename(b"a", b"b"))
    copy.replica.lenient = True
    copy.apply(ops.Rename(b"a", b"b"))
    assert copy.names() == []


def test_rename_onto_a_non_empty_directory(copy: Copy) -> None:
    (copy.root / "a").mkdir()
    (copy.root / "a/new").write_bytes(b"N")
    (copy.root / "b").mkdir()
    (copy.root / "b/stale").write_bytes(b"S")
    with pytest.raises(OSError) as exc:
        copy.apply(ops.Rename(b"a", b"b"))
    assert exc.value.errno == errno.ENOTEMPTY
    copy.replica.lenient = True
    copy.apply(ops.Rename(b"a", b"b"))
    assert copy.names() == ["b", "b/new"]


@pytest.mark.parametrize(
    ("src_dir", "dst_dir"), [(False, True), (True, False)], ids=["file-onto-dir", "dir-onto-file"]
)
def test_lenient_rename_onto_another_type(lenient: Copy, src_dir: bool, dst_dir: bool) -> None:
    for name, is_dir in (("a", src_dir), ("b", dst_dir)):
        if is_dir:
            (lenient.root / name).mkdir()
            (lenient.root / name / "inner").write_bytes(name.encode())
        else:
            (lenient.root / name).write_bytes(name.encode())
    lenient.apply(ops.Rename(b"a", b"b"))
    assert lenient.read("b/inner" if src_dir else "b") == b"a"
    assert not (lenient.root / "a").exists()


# --------------------------------------------------------------------------- symlink, mknod
def test_symlink(copy: Copy) -> None:
    copy.apply(ops.Symlink(b"l", b"../../etc/passwd", 7, 8))
    assert os.readlink(copy.root / "l") == "../../etc/passwd"
    st = os.lstat(copy.root / "l")
    assert (st.st_uid, st.st_gid) == (7, 8)
    with pytest.raises(FileExistsError):
        copy.apply(ops.Symlink(b"l", b"other", 0, 0))
    copy.replica.lenient = True
    (copy.root / "d").mkdir()
    copy.apply(
        ops.Symlink(b"l", b"other", 0, 0), ops.Symlink(b"d", b"x", 0, 0), ops.Symlink(b"n/l", b"y", 0, 0)
    )
    assert (os.readlink(copy.root / "l"), os.readlink(copy.root / "d"), os.readlink(copy.root / "n/l")) == (
        "other",
        "x",
        "y",
    )


def test_mknod_of_a_fifo(copy: Copy) -> None:
    copy.apply(ops.Mknod(b"p", stat.S_IFIFO | 0o640, 0, 9, 10))
    st = os.lstat(copy.root / "p")
    assert stat.S_ISFIFO(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 9, 10)
    with pytest.raises(FileExistsError):
        copy.apply(ops.Mknod(b"p", stat.S_IFIFO | 0o640, 0, 0, 0))
    copy.replica.lenient = True
    copy.apply(ops.Mknod(b"p", stat.S_IFIFO | 0o600, 0, 0, 0))
    assert stat.S_IMODE(os.lstat(copy.root / "p").st_mode) == 0o600


def test_mknod_of_a_character_device(copy: Copy) -> None:
    copy.apply(ops.Mknod(b"null", stat.S_IFCHR | 0o666, os.makedev(1, 3), 0, 0))
    st = os.lstat(copy.root / "null")
    assert stat.S_ISCHR(st.st_mode)
    assert st.st_rdev == os.makedev(1, 3)


# --------------------------------------------------------------------------- fsync
@pytest.mark.parametrize("datasync", [False, True])
def test_fsync_of_a_file_a_directory_and_the_copy(copy: Copy, datasync: bool) -> None:
    (copy.root / "f").write_bytes(b"x")
    (copy.root / "d").mkdir()
    copy.apply(ops.Fsync(b"f", datasync), ops.Fsync(b"d", datasync), ops.Fsync(b"", datasync))
    copy.replica.fsync(0, b"f", datasync)
    copy.replica.sync_all()


def test_fsync_of_a_missing_file(copy: Copy) -> None:
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Fsync(b"missing"))


@pytest.mark.parametrize("datasync", [False, True])
def test_a_lenient_fsync_of_a_directory_keeps_it_and_its_contents(lenient: Copy, datasync: bool) -> None:
    """A resynchronisation with async="none" syncs the directories the application fsyncs (a
    database fsyncs its WAL directory): the directory and what it holds must stay as they are."""
    (lenient.root / "wal").mkdir()
    (lenient.root / "wal" / "000001").write_bytes(b"record")
    lenient.replica.fsync(0, b"wal", datasync)
    lenient.apply(ops.Fsync(b"wal", datasync))
    assert (lenient.root / "wal").is_dir()
    assert lenient.read("wal/000001") == b"record"


def test_a_lenient_fsync_creates_nothing(lenient: Copy) -> None:
    lenient.replica.fsync(0, b"later/file", False)
    assert lenient.names() == []


def test_fsync_does_not_follow_a_symlink(copy: Copy, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside", copy.root / "link")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        copy.replica.fsync(0, b"link", False)


# --------------------------------------------------------------------------- the fd cache
def test_a_write_after_a_rename_goes_to_the_new_name(copy: Copy) -> None:
    copy.apply(ops.Create(b"a", 0o644, 0, 0), ops.Write(b"a", 0, b"one"))
    copy.apply(ops.Rename(b"a", b"b"), ops.Write(b"b", 3, b"two"))
    assert copy.names() == ["b"]
    assert copy.read("b") == b"onetwo"
    with pytest.raises(FileNotFoundError):  # the old name's fd was forgotten, not reused
        copy.apply(ops.Write(b"a", 0, b"x"))


def test_a_write_after_a_directory_rename(copy: Copy) -> None:
    copy.apply(ops.Mkdir(b"d", 0o755, 0, 0), ops.Create(b"d/f", 0o644, 0, 0), ops.Write(b"d/f", 0, b"1"))
    copy.apply(ops.Rename(b"d", b"e"), ops.Write(b"e/f", 1, b"2"))
    assert copy.read("e/f") == b"12"
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Write(b"d/f", 0, b"x"))


def test_a_rename_over_a_cached_file_drops_its_fd(copy: Copy) -> None:
    copy.apply(ops.Create(b"a", 0o644, 0, 0), ops.Create(b"b", 0o644, 0, 0))
    copy.apply(ops.Write(b"a", 0, b"A"), ops.Write(b"b", 0, b"B"))
    copy.apply(ops.Rename(b"a", b"b"), ops.Write(b"b", 1, b"+"))
    assert copy.read("b") == b"A+"


def test_an_exchange_drops_both_fds(copy: Copy) -> None:
    copy.apply(ops.Create(b"a", 0o644, 0, 0), ops.Create(b"b", 0o644, 0, 0))
    copy.apply(ops.Write(b"a", 0, b"A"), ops.Write(b"b", 0, b"B"))
    copy.apply(ops.Rename(b"a", b"b", RENAME_EXCHANGE), ops.Write(b"a", 1, b"a"), ops.Write(b"b", 1, b"b"))
    assert (copy.read("a"), copy.read("b")) == (b"Ba", b"Ab")


def test_a_write_after_unlink_and_recreate_goes_to_the_new_file(copy: Copy) -> None:
    copy.apply(ops.Create(b"f", 0o644, 0, 0), ops.Write(b"f", 0, b"old"), ops.Unlink(b"f"))
    with pytest.raises(FileNotFoundError):
        copy.apply(ops.Write(b"f", 0, b"x"))
    copy.apply(ops.Create(b"f", 0o644, 0, 0), ops.Write(b"f", 0, b"new"))
    assert copy.read("f") == b"new"


def test_a_write_after_remove_tree_and_rmdir(lenient: Copy) -> None:
    lenient.apply(ops.Mkdir(b"d", 0o755, 0, 0), ops.Write(b"d/f", 0, b"old"))
    lenient.apply(ops.RemoveTree(b"d"), ops.Write(b"d/f", 0, b"new"))
    assert lenient.read("d/f") == b"new"
    lenient.apply(ops.Rmdir(b"d"), ops.Write(b"d/f", 0, b"3rd"))
    assert lenient.read("d/f") == b"3rd"


def test_the_fd_cache_is_bounded(copy: Copy) -> None:
    for n in range(100):
        (copy.root / str(n)).write_bytes(b"")
        copy.apply(ops.Write(str(n).encode(), 0, b"x"))
    assert len(copy.replica._open) <= 64
    copy.apply(ops.Write(b"0", 1, b"y"))  # evicted long ago: opened again
    assert copy.read("0") == b"xy"
    copy.replica.forget_all()
    assert copy.replica._open == {}


def test_the_fd_cache_is_bounded_when_creating_files(copy: Copy) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    for n in range(200):
        copy.apply(ops.Create(str(n).encode(), 0o644, 0, 0), ops.Write(str(n).encode(), 0, b"x"))
    assert len(copy.replica._open) <= 64
    assert len(os.listdir("/proc/self/fd")) - fds_before <= 64


def test_an_unknown_directory_index(copy: Copy) -> None:
    with pytest.raises(OSError) as exc:
        copy.replica.apply(1, ops.Create(b"f", 0o644, 0, 0))
    assert exc.value.errno == errno.EINVAL


def test_several_directories(tmp_path: Path) -> None:
    roots = [tmp_path / "one", tmp_path / "two"]
    fds = []
    for r in roots:
        r.mkdir()
        fds.append(os.open(r, os.O_RDONLY | os.O_DIRECTORY))
    replica = Replica(fds)
    try:
        replica.apply(0, ops.Create(b"f", 0o644, 0, 0))
        replica.apply(1, ops.Create(b"f", 0o644, 0, 0))
        replica.apply(1, ops.Write(b"f", 0, b"two"))
        replica.apply(0, ops.Rename(b"f", b"g"))
        replica.apply(1, ops.Write(b"f", 3, b"!"))
    finally:
        replica.close()
        for fd in fds:
            os.close(fd)
    assert (roots[0] / "g").read_bytes() == b""
    assert (roots[1] / "f").read_bytes() == b"two!"


# --------------------------------------------------------------------------- paths never leave the copy
@pytest.mark.parametrize("bad", [b"../outside", b"a/../../outside", b"/etc/passwd", b"./x"])
@pytest.mark.parametrize(
    "ftype", [FrameType.WRITE, FrameType.UNLINK, FrameType.REMOVE_TREE, FrameType.SYMLINK]
)
def test_a_path_with_dotdot_never_reaches_apply(copy: Copy, ftype: FrameType, bad: bytes) -> None:
    payload = {
        FrameType.WRITE: Writer().path(bad).u64(0).bytes() + b"evil",
        FrameType.UNLINK: Writer().path(bad).bytes(),
        FrameType.REMOVE_TREE: Writer().path(bad).bytes(),
        FrameType.SYMLINK: Writer().path(bad).blob(b"x").u32(0).u32(0).bytes(),
    }[ftype]
    with pytest.raises(WireError):
        copy.apply(ops.decode_op(ftype, payload))


def test_a_rename_target_with_dotdot_never_reaches_apply(copy: Copy) -> None:
    (copy.root / "f").write_bytes(b"")
    payload = Writer().path(b"f").path(b"../escaped").u32(0).bytes()
    with pytest.raises(WireError):
        copy.apply(ops.decode_op(FrameType.RENAME, payload))
    assert copy.names() == ["f"]


# --------------------------------------------------------------------------- lenient mode gaps
# During a resynchronisation the copy is stale: live operations can meet an object of another type
# (or an object the primary no longer has) where the primary had what they name.


def test_lenient_unlink_of_what_is_a_directory_on_the_copy(lenient: Copy) -> None:
    (lenient.root / "d/sub").mkdir(parents=True)
    lenient.apply(ops.Unlink(b"d"))
    assert lenient.names() == []


def test_lenient_rmdir_of_what_is_a_file_on_the_copy(lenient: Copy) -> None:
    (lenient.root / "d").write_bytes(b"stale")
    lenient.apply(ops.Rmdir(b"d"))
    assert lenient.names() == []


def test_lenient_rename_noreplace_onto_a_stale_target(lenient: Copy) -> None:
    (lenient.root / "a").write_bytes(b"new")
    (lenient.root / "b").write_bytes(b"stale")
    lenient.apply(ops.Rename(b"a", b"b", RENAME_NOREPLACE))
    assert lenient.names() == ["b"]
    assert lenient.read("b") == b"new"


def test_lenient_setattr_of_a_path_the_copy_lacks(lenient: Copy) -> None:
    lenient.apply(ops.SetAttr(b"new", ATTR_MODE | ATTR_MTIME, mode=0o644, mtime_ns=10**9))


def test_lenient_setxattr_of_a_path_the_copy_lacks(lenient: Copy) -> None:
    lenient.apply(ops.SetXattr(b"new", b"user.a", b"1"))


def test_lenient_write_where_the_copy_has_a_directory(lenient: Copy) -> None:
    (lenient.root / "d/sub").mkdir(parents=True)
    lenient.apply(ops.Write(b"d", 0, b"x"))
    assert lenient.read("d") == b"x"
