"""The secondary's side of an operation: apply it to the copy, in order, through the directory fds.

`lenient` is for resynchronisation: the copy is then known to differ from the primary and the
resynchronisation pass repairs whatever an operation could not find (a write to a file the copy
does not have yet creates it; removing something already gone succeeds). In sync, an operation
that cannot be applied exactly means the copy diverged: it raises, and the secondary leaves sync.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections import OrderedDict

from safekit.rfs import ops
from safekit.rfs.syscalls import WRITEBACK_EVERY, fallocate, renameat2, start_writeback, syncfs
from safekit.rfs.tree import (
    chmod_at,
    chown_at,
    list_xattrs,
    lstat,
    remove_xattr,
    set_xattr,
    utime_at,
)
from safekit.rfs.wire import ATTR_ATIME, ATTR_GID, ATTR_MODE, ATTR_MTIME, ATTR_SIZE, ATTR_UID

_OPEN_CACHE = 64


class Replica:
    """Applies operations to the copies of a module's replicated directories (`dir_fds[i]`)."""

    def __init__(self, dir_fds: list[int]) -> None:
        self.dir_fds = dir_fds
        self.lenient = False
        self._open: OrderedDict[tuple[int, bytes], int] = OrderedDict()
        self.bytes_written = 0
        self._unflushed: dict[int, int] = {}

    def close(self) -> None:
        self.forget_all()

    def forget_all(self) -> None:
        for fd in self._open.values():
            self._close(fd)
        self._open.clear()

    def _fd(self, dir_index: int, path: bytes, *, create: bool = False) -> int:
        key = (dir_index, path)
        fd = self._open.get(key)
        if fd is not None:
            self._open.move_to_end(key)
            return fd
        dir_fd = self.dir_fds[dir_index]
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, dir_fd=dir_fd)
        except FileNotFoundError:
            if not (create or self.lenient):
                raise
            self._parents(dir_index, path)
            fd = os.open(path, flags | os.O_CREAT, 0o600, dir_fd=dir_fd)
        except IsADirectoryError:
            if not self.lenient:
                raise
            self._remove_tree(dir_index, path)  # a stale directory where the primary has a file
            fd = os.open(path, flags | os.O_CREAT, 0o600, dir_fd=dir_fd)
        self._remember(key, fd)
        return fd

    def _remember(self, key: tuple[int, bytes], fd: int) -> None:
        old = self._open.pop(key, None)
        if old is not None and old != fd:
            self._close(old)
        self._open[key] = fd
        while len(self._open) > _OPEN_CACHE:
            _, evicted = self._open.popitem(last=False)
            self._close(evicted)

    def _close(self, fd: int) -> None:
        self._unflushed.pop(fd, None)
        os.close(fd)

    def _drop(self, dir_index: int, path: bytes) -> None:
        """Forget cached fds at or under `path` (it is being removed or renamed)."""
        prefix = path + b"/"
        for key in [k for k in self._open if k[0] == dir_index and (k[1] == path or k[1].startswith(prefix))]:
            self._close(self._open.pop(key))

    def _parents(self, dir_index: int, path: bytes) -> None:
        """Lenient mode: create missing parents (0755, root; the resync sends their real attributes)."""
        dir_fd = self.dir_fds[dir_index]
        parts = path.split(b"/")[:-1]
        for i in range(len(parts)):
            sub = b"/".join(parts[: i + 1])
            try:
                os.mkdir(sub, 0o755, dir_fd=dir_fd)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(sub, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    self._remove_tree(dir_index, sub)
                    os.mkdir(sub, 0o755, dir_fd=dir_fd)

    def apply(self, dir_index: int, op: ops.Operation) -> None:
        if dir_index >= len(self.dir_fds):
            raise OSError(errno.EINVAL, f"no replicated directory #{dir_index}")
        try:
            self._apply(dir_index, op)
        except OSError as exc:
            if not self.lenient or not self._repair(dir_index, op, exc):
                raise

    def _repair(self, dir_index: int, op: ops.Operation, exc: OSError) -> bool:
        """Lenient mode (a resynchronisation runs): make a live operation fit a copy that differs
        from the primary, or skip it when the resynchronisation sends that object anyway.
        True when the operation is handled."""
        code = exc.errno
        match op:
            case ops.SetAttr() | ops.SetXattr() | ops.RemoveXattr() | ops.ClearXattrs() | ops.Fsync():
                return code == errno.ENOENT  # not on the copy yet: the resync sends it whole
            case ops.Unlink(path=path) | ops.Rmdir(path=path) if code in (
                errno.EISDIR,
                errno.ENOTDIR,
                errno.EPERM,
            ):
                self._remove_tree(dir_index, path)
                return True
            case ops.Rename(old=old, new=new, flags=flags) if code == errno.EEXIST:
                self._remove_tree(dir_index, new)
                renameat2(self.dir_fds[dir_index], old, self.dir_fds[dir_index], new, flags)
                return True
            case ops.Write(path=path) | ops.Truncate(path=path) if code == errno.ENOTDIR:
                self._parents(dir_index, path)  # a stale file where the primary has a directory
                self._apply(dir_index, op)
                return True
        return False

    def _apply(self, dir_index: int, op: ops.Operation) -> None:  # noqa: PLR0912, PLR0915
        dir_fd = self.dir_fds[dir_index]
        match op:
            case ops.Write(path=path, offset=offset, data=data):
                fd = self._fd(dir_index, path)
                view = memoryview(data)
                while view:
                    n = os.pwrite(fd, view, offset)
                    view = view[n:]
                    offset += n
                self.bytes_written += len(data)
                pending = self._unflushed.get(fd, 0) + len(data)
                if pending >= WRITEBACK_EVERY:
                    start_writeback(fd)
                    pending = 0
                self._unflushed[fd] = pending
            case ops.Create(path=path, mode=mode, uid=uid, gid=gid):
                self._drop(dir_index, path)
                if self.lenient:
                    self._parents(dir_index, path)
                    self._remove_if_not(dir_index, path, stat.S_ISREG)
                fd = os.open(
                    path,
                    os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dir_fd,
                )
                try:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, stat.S_IMODE(mode))
                except BaseException:
                    os.close(fd)
                    raise
                self._remember((dir_index, path), fd)
            case ops.Truncate(path=path, size=size):
                os.ftruncate(self._fd(dir_index, path), size)
            case ops.Fallocate(path=path, mode=mode, offset=offset, length=length):
                fallocate(self._fd(dir_index, path), mode, offset, length)
            case ops.SetAttr():
                self._setattr(dir_index, op)
            case ops.SetXattr(path=path, name=name, value=value):
                set_xattr(dir_fd, path, name, value)
            case ops.RemoveXattr(path=path, name=name):
                try:
                    remove_xattr(dir_fd, path, name)
                except OSError as exc:
                    if not (self.lenient and exc.errno == errno.ENODATA):
                        raise
            case ops.ClearXattrs(path=path):
                for xname in list_xattrs(dir_fd, path):
                    with contextlib.suppress(OSError):  # e.g. security.* kept by the kernel
                        remove_xattr(dir_fd, path, xname)
            case ops.Mkdir(path=path, mode=mode, uid=uid, gid=gid):
                if self.lenient:
                    self._parents(dir_index, path)
                    self._remove_if_not(dir_index, path, stat.S_ISDIR)
                try:
                    os.mkdir(path, 0o700, dir_fd=dir_fd)
                except FileExistsError:
                    if not self.lenient:
                        raise
                os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
                os.chmod(path, stat.S_IMODE(mode), dir_fd=dir_fd)
            case ops.Rmdir(path=path):
                self._drop(dir_index, path)
                try:
                    os.rmdir(path, dir_fd=dir_fd)
                except FileNotFoundError:
                    if not self.lenient:
                        raise
                except OSError as exc:
                    if not (self.lenient and exc.errno == errno.ENOTEMPTY):
                        raise
                    self._remove_tree(dir_index, path)
            case ops.Unlink(path=path):
                self._drop(dir_index, path)
                try:
                    os.unlink(path, dir_fd=dir_fd)
                except FileNotFoundError:
                    if not self.lenient:
                        raise
            case ops.Rename(old=old, new=new, flags=flags):
                self._drop(dir_index, old)
                self._drop(dir_index, new)
                try:
                    renameat2(dir_fd, old, dir_fd, new, flags)
                except FileNotFoundError:
                    if not self.lenient:
                        raise
                except OSError as exc:
                    if not (self.lenient and exc.errno in (errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR)):
                        raise
                    self._remove_tree(dir_index, new)
                    renameat2(dir_fd, old, dir_fd, new, flags)
            case ops.Symlink(path=path, target=target, uid=uid, gid=gid):
                if self.lenient:
                    self._parents(dir_index, path)
                    self._remove_tree(dir_index, path)
                os.symlink(target, path, dir_fd=dir_fd)
                os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            case ops.Mknod(path=path, mode=mode, rdev=rdev, uid=uid, gid=gid):
                if self.lenient:
                    self._parents(dir_index, path)
                    self._remove_tree(dir_index, path)
                os.mknod(path, mode, rdev, dir_fd=dir_fd)
                os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            case ops.Fsync(path=path, datasync=datasync):
                self.fsync(dir_index, path, datasync)
            case ops.RemoveTree(path=path):
                self._drop(dir_index, path)
                self._remove_tree(dir_index, path)

    def fsync(self, dir_index: int, path: bytes, datasync: bool) -> None:
        """Make `path` (a file or a directory) durable. Never creates, replaces or removes anything,
        even when lenient: a barrier only syncs what is there (a directory fsync'd during a
        resynchronisation once went through `_fd`'s repairs and was replaced by an empty file)."""
        if not path:
            syncfs(self.dir_fds[dir_index])
            return
        sync = os.fdatasync if datasync else os.fsync
        cached = self._open.get((dir_index, path))
        if cached is not None:
            sync(cached)
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fds[dir_index])
        except FileNotFoundError:
            if self.lenient:
                return  # resynchronising: the object is sent later, or is gone on the primary too
            raise
        try:
            sync(fd)
        finally:
            os.close(fd)

    def sync_all(self) -> None:
        for fd in self.dir_fds:
            syncfs(fd)

    def _setattr(self, dir_index: int, op: ops.SetAttr) -> None:
        dir_fd = self.dir_fds[dir_index]
        path = op.path
        if op.mask & ATTR_SIZE:
            os.ftruncate(self._fd(dir_index, path), op.size)
        st = lstat(dir_fd, path)
        if op.mask & (ATTR_UID | ATTR_GID):
            uid = op.uid if op.mask & ATTR_UID else -1
            gid = op.gid if op.mask & ATTR_GID else -1
            chown_at(dir_fd, path, uid, gid)
        if op.mask & ATTR_MODE and not stat.S_ISLNK(st.st_mode):
            chmod_at(dir_fd, path, op.mode)
        if op.mask & (ATTR_ATIME | ATTR_MTIME):
            atime = op.atime_ns if op.mask & ATTR_ATIME else st.st_atime_ns
            mtime = op.mtime_ns if op.mask & ATTR_MTIME else st.st_mtime_ns
            utime_at(dir_fd, path, atime, mtime)

    def _remove_if_not(self, dir_index: int, path: bytes, wanted: object) -> None:
        try:
            st = os.stat(path, dir_fd=self.dir_fds[dir_index], follow_symlinks=False)
        except FileNotFoundError:
            return
        check = wanted  # S_ISREG / S_ISDIR
        if not callable(check) or not check(st.st_mode):
            self._remove_tree(dir_index, path)

    def _remove_tree(self, dir_index: int, path: bytes) -> None:
        if not path:
            raise OSError(errno.EPERM, "refused to remove the replicated directory itself")
        dir_fd = self.dir_fds[dir_index]
        self._drop(dir_index, path)
        try:
            st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path, dir_fd=dir_fd)
        else:
            os.unlink(path, dir_fd=dir_fd)
