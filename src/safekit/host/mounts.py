"""The mounts safekit stacks over replicated directories, found and removed without ever resolving
a path through them.

A FUSE mount whose server no longer answers (its loop ended, or it is stopped in a debugger, or it
is an orphan of a dead safekitd) blocks every `stat` of its root forever - the server process
itself included. So nothing here stats the mount point: the point is named by the real path of its
*parent* plus its own name, the stack is read from /proc/self/mountinfo, and the unmount is a lazy
`umount2(MNT_DETACH | UMOUNT_NOFOLLOW)` of that name (the kernel looks the last component up as a
mount point, without asking the file system).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FUSE_TYPE = "fuse.safekit"
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
MAX_STACK = 16


class MountError(OSError):
    """A mount could not be removed (the message says which and why)."""


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo (the fields safekit needs)."""

    id: int
    dev: str
    root: str
    point: str
    fstype: str

    @property
    def key(self) -> list[object]:
        """How a mount is recorded to be recognised later as ours (id, device, root)."""
        return [self.id, self.dev, self.root]


_OCTAL = re.compile(rb"\\([0-3][0-7][0-7])")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`); every other byte is
    the path's own. The escapes are decoded on the bytes, then the bytes are a path string as `os`
    makes them (a UTF-8 name as itself, a byte that is not UTF-8 as a surrogate: os.fsencode gives
    the bytes back)."""
    raw = _OCTAL.sub(lambda m: bytes([int(m[1], 8)]), os.fsencode(field))
    return os.fsdecode(raw)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount of a mountinfo text, in the kernel's order (a stack: bottom first). Lines end at
    "\\n" and fields at spaces only (the kernel escapes both in names): a name may hold any other
    character str.split would take as a separator (U+0085, U+00A0, U+2028...)."""
    found: list[Mount] = []
    for line in text.split("\n"):
        fields = [f for f in line.split(" ") if f]
        if len(fields) < 10 or "-" not in fields:
            continue
        sep = fields.index("-")
        if sep + 1 >= len(fields):
            continue
        found.append(
            Mount(int(fields[0]), fields[2], _unescape(fields[3]), _unescape(fields[4]), fields[sep + 1])
        )
    return found


def stack_at(point: str, mounts: Iterable[Mount]) -> list[Mount]:
    """The mounts stacked at `point`, bottom first."""
    return [m for m in mounts if m.point == point]


def ours_on_top(stack: Sequence[Mount], recorded: Sequence[Sequence[object]] = ()) -> bool:
    """Is the top of the stack safekit's: a safekit FUSE mount (or a bind of one), or a mount
    recorded by the replication process (the secondary's read-only binds)?"""
    if not stack:
        return False
    top = stack[-1]
    return top.fstype == FUSE_TYPE or top.key in [list(r) for r in recorded]


def mount_point(path: str) -> str:
    """The kernel's name of the mount point at `path`: its parent's real path and its own name.
    The last component is not resolved: it may be a dead FUSE mount (a stat would hang)."""
    path = os.path.normpath(os.path.abspath(path))
    if path == "/":
        return path
    parent, name = os.path.split(path)
    return os.path.join(os.path.realpath(parent), name)


def read_mounts() -> list[Mount]:
    with open("/proc/self/mountinfo", "rb") as f:
        return parse_mountinfo(os.fsdecode(f.read()))


def mounts_at(path: str) -> list[Mount]:
    """The mounts stacked at `path` now, bottom first (without looking through them)."""
    return stack_at(mount_point(path), read_mounts())


_libc: ctypes.CDLL | None = None


def _umount2(point: str, flags: int) -> None:
    global _libc  # noqa: PLW0603 - loaded once, on first use
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.umount2(os.fsencode(point), flags) != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"umount2 {point}: {os.strerror(err)}")


def detach(path: str) -> None:
    """Lazily unmount the top mount at `path` (MNT_DETACH | UMOUNT_NOFOLLOW): it disappears from the
    namespace at once; files still open on it keep it alive until they are closed."""
    _umount2(mount_point(path), MNT_DETACH | UMOUNT_NOFOLLOW)


def detach_ours(path: str, recorded: Sequence[Sequence[object]] = ()) -> int:
    """Lazily unmount what safekit stacked at `path` (a FUSE mount, live or dead, its binds, a
    recorded read-only bind), from the top, stopping at the first mount that is not ours (a user's
    file system under the replicated directory stays). Returns how many were removed."""
    removed = 0
    for _ in range(MAX_STACK):
        if not ours_on_top(mounts_at(path), recorded):
            break
        try:
            detach(path)
        except MountError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # gone meanwhile
                continue
            raise
        removed += 1
    return removed
