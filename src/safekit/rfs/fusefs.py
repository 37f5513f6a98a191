"""The primary's FUSE front: a passthrough file system over the replicated directories that hands
every mutating operation, in the order it was applied, to the replicator.

One FUSE mount per module (pyfuse3 serves one per process), at a hidden mount point whose root
lists the replicated directories as `0`, `1`, ...; each is bind-mounted over its directory, whose
real content is reached through a directory fd taken before anything was mounted there.

Every handler runs in the single trio thread: a local change and the queuing of its replication
are never separated by an `await`, so the order of the stream is the order of the changes. Errors
become `FUSEError` (anything else would end `pyfuse3.main` and the mount with it).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

import pyfuse3
import trio

from safekit.rfs import ops
from safekit.rfs.syscalls import WRITEBACK_EVERY, renameat2, start_writeback
from safekit.rfs.tree import (
    Exclusions,
    chmod_at,
    chown_at,
    get_xattr,
    list_xattrs,
    proc_path,
    remove_xattr,
    set_xattr,
    utime_at,
)
from safekit.rfs.wire import ATTR_ATIME, ATTR_GID, ATTR_MODE, ATTR_MTIME, ATTR_SIZE, ATTR_UID

log = logging.getLogger("safekit.rfs.fuse")
P = ParamSpec("P")
T = TypeVar("T")
RENAME_EXCHANGE = 2
ATTR_TIMEOUT = 1.0


class Sink(Protocol):
    """What the file system needs from the replicator."""

    def send(self, dir_index: int, op: ops.Operation) -> None: ...
    def send_object(self, dir_index: int, path: bytes) -> None: ...
    def renamed(self, dir_index: int, path: bytes) -> None: ...
    async def throttle(self) -> None: ...
    async def barrier(self, dir_index: int, path: bytes, datasync: bool) -> None: ...


def fuse_errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except ExceptionGroup as group:
            # a handler's nursery (fsync waits on several things): a failure with an errno (a
            # fenced replication's EIO) is an answer, not an internal error
            oserrors, rest = group.split(OSError)
            if rest is None and oserrors is not None:
                first: BaseException = oserrors
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                code = first.errno if isinstance(first, OSError) else None
                raise pyfuse3.FUSEError(code or errno.EIO) from None
            log.exception("internal error in %s: the call fails with EIO, the mount stays", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("internal error in %s: the call fails with EIO, the mount stays", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


@dataclass
class Node:
    ino: int
    dir: int  # -1: the synthetic root listing the replicated directories
    path: bytes
    key: tuple[int, int, int] | None = None
    lookups: int = 0
    opens: int = 0
    detached: bool = False
    """Unlinked while open: its writes are not replicated (no path names it any more)."""


@dataclass
class Handle:
    fd: int
    node: Node
    append: bool
    sync: bool
    datasync: bool
    wrote: bool = False
    """Written since the last time its times were sent (at fsync and at close)."""
    unflushed: int = 0
    """Bytes written since writeback was last started (see syscalls.start_writeback)."""


class ReplicatedFS(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, dir_fds: list[int], exclusions: list[Exclusions], sink: Sink) -> None:
        super().__init__()
        self.dir_fds = dir_fds
        self.exclusions = exclusions
        self.sink = sink
        self.nodes: dict[int, Node] = {pyfuse3.ROOT_INODE: Node(pyfuse3.ROOT_INODE, -1, b"", lookups=1)}
        self.by_key: dict[tuple[int, int, int], int] = {}
        self.next_ino = pyfuse3.ROOT_INODE + 1
        self.handles: dict[int, Handle] = {}
        self.dir_handles: dict[int, tuple[Node, list[bytes]]] = {}
        self.next_fh = 1
        self.dir_roots: list[Node] = []
        for i, fd in enumerate(dir_fds):
            st = os.fstat(fd)
            node = self._new_node(i, b"", st)
            node.lookups = 1
            self.dir_roots.append(node)

    # ------------------------------------------------------------------ nodes
    def _new_node(self, dir_index: int, path: bytes, st: os.stat_result) -> Node:
        ino = self.next_ino
        self.next_ino += 1
        key = (dir_index, st.st_dev, st.st_ino)
        node = Node(ino, dir_index, path, key)
        self.nodes[ino] = node
        self.by_key[key] = ino
        return node

    def _node_for(self, dir_index: int, path: bytes, st: os.stat_result) -> Node:
        ino = self.by_key.get((dir_index, st.st_dev, st.st_ino))
        if ino is not None:
            node = self.nodes.get(ino)
            if node is not None and not node.detached:
                node.path = path
                return node
        return self._new_node(dir_index, path, st)

    def _node(self, ino: int) -> Node:
        node = self.nodes.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _child(self, parent: Node, name: bytes) -> tuple[int, bytes]:
        if parent.dir < 0:
            raise pyfuse3.FUSEError(errno.EPERM)
        if b"/" in name or name in (b".", b".."):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return parent.dir, (parent.path + b"/" + name if parent.path else name)

    def _drop_if_unused(self, node: Node) -> None:
        if node.lookups > 0 or node.opens > 0 or node.ino == pyfuse3.ROOT_INODE:
            return
        if node.dir >= 0 and node.path == b"" and not node.detached:
            return  # the replicated directories' roots stay
        self.nodes.pop(node.ino, None)
        if node.key is not None and self.by_key.get(node.key) == node.ino:
            del self.by_key[node.key]

    def _replicated(self, dir_index: int, path: bytes) -> bool:
        return not self.exclusions[dir_index].excluded(path)

    def _send(self, dir_index: int, path: bytes, op: ops.Operation) -> None:
        if self._replicated(dir_index, path):
            self.sink.send(dir_index, op)

    def _lstat(self, node: Node) -> os.stat_result:
        if node.dir < 0:
            return os.stat("/")  # only its type and times are shown; replaced below
        if node.detached:
            for h in self.handles.values():
                if h.node is node:
                    return os.fstat(h.fd)
            raise pyfuse3.FUSEError(errno.ENOENT)
        if not node.path:
            return os.fstat(self.dir_fds[node.dir])
        return os.stat(node.path, dir_fd=self.dir_fds[node.dir], follow_symlinks=False)

    def _attr(self, node: Node, st: os.stat_result) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = ATTR_TIMEOUT
        a.attr_timeout = ATTR_TIMEOUT
        if node.dir < 0:
            a.st_mode = stat.S_IFDIR | 0o755
            a.st_nlink = 2 + len(self.dir_fds)
            a.st_uid = a.st_gid = 0
            a.st_size = 0
        else:
            a.st_mode = st.st_mode
            a.st_nlink = st.st_nlink
            a.st_uid = st.st_uid
            a.st_gid = st.st_gid
            a.st_rdev = st.st_rdev
            a.st_size = st.st_size
            a.st_blocks = st.st_blocks
        a.st_blksize = 4096
        a.st_atime_ns = st.st_atime_ns
        a.st_mtime_ns = st.st_mtime_ns
        a.st_ctime_ns = st.st_ctime_ns
        return a

    def _owner(self, dir_index: int, parent: Node, ctx: pyfuse3.RequestContext) -> tuple[int, int]:
        gid = ctx.gid
        pst = self._lstat(parent)
        if pst.st_mode & stat.S_ISGID:
            gid = pst.st_gid  # set-group-ID directory: new entries take its group
        return ctx.uid, gid

    # ------------------------------------------------------------------ lookups
    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        if parent.dir < 0:
            try:
                index = int(name)
            except ValueError:
                raise pyfuse3.FUSEError(errno.ENOENT) from None
            if not 0 <= index < len(self.dir_roots) or name != str(index).encode():
                raise pyfuse3.FUSEError(errno.ENOENT)
            node = self.dir_roots[index]
        else:
            dir_index, path = self._child(parent, name)
            st = os.stat(path, dir_fd=self.dir_fds[dir_index], follow_symlinks=False)
            node = self._node_for(dir_index, path, st)
        node.lookups += 1
        return self._attr(node, self._lstat(node))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            node = self.nodes.get(ino)
            if node is None:
                continue
            node.lookups -= count
            self._drop_if_unused(node)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        return self._attr(node, self._lstat(node))

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._node(inode)
        return bytes(os.readlink(node.path, dir_fd=self.dir_fds[node.dir]))

    @fuse_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        return True  # default_permissions: the kernel checks modes and owners

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = os.statvfs(proc_path(self.dir_fds[0], b""))
        out = pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
            setattr(out, f, getattr(s, f))
        out.f_namemax = s.f_namemax
        return out

    # ------------------------------------------------------------------ attributes
    @fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        if node.dir < 0:
            raise pyfuse3.FUSEError(errno.EPERM)
        dir_fd = self.dir_fds[node.dir]
        path = node.path
        mask = 0
        if fields.update_size:
            handle = self.handles.get(fh) if fh is not None else None
            if handle is not None:
                os.ftruncate(handle.fd, attr.st_size)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    os.ftruncate(fd, attr.st_size)
                finally:
                    os.close(fd)
            mask |= ATTR_SIZE | ATTR_ATIME | ATTR_MTIME  # the secondary's truncate sets its own times
        if fields.update_mode:
            chmod_at(dir_fd, path, attr.st_mode)
            mask |= ATTR_MODE
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            chown_at(dir_fd, path, uid, gid)
            mask |= (ATTR_UID if fields.update_uid else 0) | (ATTR_GID if fields.update_gid else 0)
        if fields.update_atime or fields.update_mtime:
            st = self._lstat(node)
            atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
            utime_at(dir_fd, path, atime, mtime)
            mask |= (ATTR_ATIME if fields.update_atime else 0) | (ATTR_MTIME if fields.update_mtime else 0)
        st = self._lstat(node)
        if mask and not node.detached:
            self._send(
                node.dir,
                path,
                ops.SetAttr(
                    path, mask, st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns, st.st_size
                ),
            )
        return self._attr(node, st)

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self._node(inode)
        if node.dir < 0:
            raise pyfuse3.FUSEError(errno.EPERM)
        set_xattr(self.dir_fds[node.dir], node.path, name, value)
        if not node.detached:
            self._send(node.dir, node.path, ops.SetXattr(node.path, name, value))

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._node(inode)
        if node.dir < 0:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return get_xattr(self.dir_fds[node.dir], node.path, name)

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        node = self._node(inode)
        if node.dir < 0:
            return []
        names = list_xattrs(self.dir_fds[node.dir], node.path)
        return [n.encode() for n in names]

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self._node(inode)
        if node.dir < 0:
            raise pyfuse3.FUSEError(errno.EPERM)
        remove_xattr(self.dir_fds[node.dir], node.path, name)
        if not node.detached:
            self._send(node.dir, node.path, ops.RemoveXattr(node.path, name))

    # ------------------------------------------------------------------ namespace
    def _entry(self, dir_index: int, path: bytes) -> tuple[Node, os.stat_result]:
        st = os.stat(path, dir_fd=self.dir_fds[dir_index], follow_symlinks=False)
        node = self._node_for(dir_index, path, st)
        node.lookups += 1
        return node, st

    @fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        dir_index, path = self._child(parent, name)
        dir_fd = self.dir_fds[dir_index]
        uid, gid = self._owner(dir_index, parent, ctx)
        os.mkdir(path, stat.S_IMODE(mode), dir_fd=dir_fd)
        os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        node, st = self._entry(dir_index, path)
        self._send(dir_index, path, ops.Mkdir(path, st.st_mode, uid, gid))
        return self._attr(node, st)

    @fuse_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        dir_index, path = self._child(parent, name)
        dir_fd = self.dir_fds[dir_index]
        uid, gid = self._owner(dir_index, parent, ctx)
        os.mknod(path, mode, rdev, dir_fd=dir_fd)
        os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        node, st = self._entry(dir_index, path)
        self._send(dir_index, path, ops.Mknod(path, st.st_mode, rdev, uid, gid))
        return self._attr(node, st)

    @fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        dir_index, path = self._child(parent, name)
        dir_fd = self.dir_fds[dir_index]
        uid, gid = self._owner(dir_index, parent, ctx)
        os.symlink(target, path, dir_fd=dir_fd)
        os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        node, st = self._entry(dir_index, path)
        self._send(dir_index, path, ops.Symlink(path, target, uid, gid))
        return self._attr(node, st)

    @fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.ENOTSUP)  # hard links are not replicated (docs/replication.md)

    def _detach_if_last(self, dir_index: int, path: bytes) -> None:
        try:
            st = os.stat(path, dir_fd=self.dir_fds[dir_index], follow_symlinks=False)
        except FileNotFoundError:
            return
        ino = self.by_key.get((dir_index, st.st_dev, st.st_ino))
        if ino is not None and st.st_nlink <= 1 and not stat.S_ISDIR(st.st_mode):
            node = self.nodes[ino]
            node.detached = True
            del self.by_key[(dir_index, st.st_dev, st.st_ino)]
            self._drop_if_unused(node)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._node(parent_inode)
        dir_index, path = self._child(parent, name)
        st = os.stat(path, dir_fd=self.dir_fds[dir_index], follow_symlinks=False)
        os.unlink(path, dir_fd=self.dir_fds[dir_index])
        ino = self.by_key.get((dir_index, st.st_dev, st.st_ino))
        if ino is not None and st.st_nlink <= 1:
            node = self.nodes[ino]
            node.detached = True
            del self.by_key[(dir_index, st.st_dev, st.st_ino)]
            self._drop_if_unused(node)
        self._send(dir_index, path, ops.Unlink(path))

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._node(parent_inode)
        dir_index, path = self._child(parent, name)
        os.rmdir(path, dir_fd=self.dir_fds[dir_index])
        self._send(dir_index, path, ops.Rmdir(path))

    @fuse_errors
    async def rename(  # noqa: PLR0917 - pyfuse3's signature
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        old_parent, new_parent = self._node(parent_inode_old), self._node(parent_inode_new)
        dir_index, old = self._child(old_parent, name_old)
        new_dir, new = self._child(new_parent, name_new)
        if new_dir != dir_index:
            raise pyfuse3.FUSEError(errno.EXDEV)
        dir_fd = self.dir_fds[dir_index]
        if not flags & RENAME_EXCHANGE:
            self._detach_if_last(dir_index, new)
        renameat2(dir_fd, old, dir_fd, new, flags)
        self._move_paths(dir_index, old, new, exchange=bool(flags & RENAME_EXCHANGE))
        old_repl, new_repl = self._replicated(dir_index, old), self._replicated(dir_index, new)
        if old_repl and new_repl:
            self.sink.send(dir_index, ops.Rename(old, new, flags))
            self.sink.renamed(dir_index, new)
            if flags & RENAME_EXCHANGE:
                self.sink.renamed(dir_index, old)
        elif new_repl:  # from a notreplicated path into a replicated one: the whole object goes over
            self.sink.send(dir_index, ops.RemoveTree(new))
            self.sink.send_object(dir_index, new)
        elif old_repl:
            self.sink.send(dir_index, ops.RemoveTree(old))
            if flags & RENAME_EXCHANGE:
                self.sink.send_object(dir_index, old)

    def _move_paths(self, dir_index: int, old: bytes, new: bytes, *, exchange: bool) -> None:
        def moved(path: bytes, a: bytes, b: bytes) -> bytes | None:
            if path == a:
                return b
            if path.startswith(a + b"/"):
                return b + path[len(a) :]
            return None

        for node in self.nodes.values():
            if node.dir != dir_index or node.detached or not node.path:
                continue
            first = moved(node.path, old, new)
            if first is not None:
                node.path = first
            elif exchange:
                second = moved(node.path, new, old)
                if second is not None:
                    node.path = second

    # ------------------------------------------------------------------ files
    def _handle(self, fd: int, node: Node, flags: int) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = Handle(
            fd,
            node,
            append=bool(flags & os.O_APPEND),
            sync=bool(flags & (os.O_SYNC | os.O_DSYNC)),
            datasync=(flags & os.O_SYNC) != os.O_SYNC,
        )
        node.opens += 1
        return fh

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        if node.dir < 0 or node.detached:
            raise pyfuse3.FUSEError(errno.EACCES if node.dir < 0 else errno.ENOENT)
        backing = flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY)
        fd = os.open(node.path, backing | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fds[node.dir])
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
            # atomic_o_trunc: the truncation arrives as an open flag, it is replicated as a truncate
            self._send(node.dir, node.path, ops.Truncate(node.path, 0))
        return pyfuse3.FileInfo(fh=self._handle(fd, node, flags), keep_cache=True)

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._node(parent_inode)
        dir_index, path = self._child(parent, name)
        dir_fd = self.dir_fds[dir_index]
        uid, gid = self._owner(dir_index, parent, ctx)
        backing = (flags & ~os.O_NOCTTY) | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, backing, stat.S_IMODE(mode), dir_fd=dir_fd)
        try:
            os.fchown(fd, uid, gid)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        node = self._node_for(dir_index, path, st)
        node.lookups += 1
        self._send(dir_index, path, ops.Create(path, st.st_mode, uid, gid))
        fh = self._handle(fd, node, flags)
        self.handles[fh].wrote = True  # the creation time is ours, sent at close
        return pyfuse3.FileInfo(fh=fh, keep_cache=True), self._attr(node, st)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(self.handles[fh].fd, size, off)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles[fh]
        await self.sink.throttle()
        node = handle.node
        written = os.pwrite(handle.fd, buf, off)
        if handle.append:  # O_APPEND wrote at the end, wherever the kernel said
            off = os.fstat(handle.fd).st_size - written
        handle.unflushed += written
        if handle.unflushed >= WRITEBACK_EVERY:
            handle.unflushed = 0
            start_writeback(handle.fd)
        if not node.detached:
            handle.wrote = True
            data = buf if written == len(buf) else bytes(buf[:written])
            self._send(node.dir, node.path, ops.Write(node.path, off, data))
            if handle.sync:  # O_SYNC / O_DSYNC: durable here (the fd has the flag) and there
                await self.sink.barrier(node.dir, node.path, handle.datasync)
        return written

    @fuse_errors
    async def flush(self, fh: int) -> None:
        return None

    def _send_times(self, handle: Handle) -> None:
        """The secondary's writes give its file its own modification time: send ours after the
        writes, at fsync and at close."""
        if handle.wrote and not handle.node.detached:
            handle.wrote = False
            st = os.fstat(handle.fd)
            node = handle.node
            mask = ATTR_ATIME | ATTR_MTIME
            self._send(
                node.dir,
                node.path,
                ops.SetAttr(node.path, mask, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns),
            )

    @fuse_errors
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        self._send_times(handle)
        os.close(handle.fd)
        handle.node.opens -= 1
        self._drop_if_unused(handle.node)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self.handles[fh]
        node = handle.node
        sync = os.fdatasync if datasync else os.fsync
        self._send_times(handle)
        if node.detached or not self._replicated(node.dir, node.path):
            await trio.to_thread.run_sync(sync, handle.fd)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, sync, handle.fd)
            await self.sink.barrier(node.dir, node.path, datasync)

    # ------------------------------------------------------------------ directories
    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._node(inode)
        if node.dir < 0:
            names = [str(i).encode() for i in range(len(self.dir_fds))]
        else:
            names = sorted(os.listdir(proc_path(self.dir_fds[node.dir], node.path)))
        fh = self.next_fh
        self.next_fh += 1
        self.dir_handles[fh] = (node, names)
        return fh

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        node, names = self.dir_handles[fh]
        for i in range(start_id, len(names)):
            name = names[i]
            if node.dir < 0:
                child = self.dir_roots[i]
                st = self._lstat(child)
            else:
                path = node.path + b"/" + name if node.path else name
                try:
                    st = os.stat(path, dir_fd=self.dir_fds[node.dir], follow_symlinks=False)
                except FileNotFoundError:
                    continue
                child = self._node_for(node.dir, path, st)
            if not pyfuse3.readdir_reply(token, name, self._attr(child, st), i + 1):
                break
            child.lookups += 1

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        self.dir_handles.pop(fh, None)

    @fuse_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        node, _ = self.dir_handles[fh]
        if node.dir < 0:
            return
        fd = os.open(node.path or b".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.dir_fds[node.dir])
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, os.fsync, fd)
                await self.sink.barrier(node.dir, node.path, datasync)
        finally:
            os.close(fd)
