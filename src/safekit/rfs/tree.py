"""Walking a replicated directory through its directory fd: manifests, block checksums, exclusions.

Shared by the primary (what it has) and the secondary (what its copy has). Everything is relative
to a directory file descriptor opened *before* anything was mounted over the directory, so it keeps
reaching the real data underneath a FUSE or read-only mount.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from safekit.rfs.journal import ZONE

SUM_SIZE = 16


def proc_path(dir_fd: int, rel: bytes) -> bytes:
    """A path that reaches `rel` under the directory of `dir_fd`, for calls without dir_fd support."""
    base = f"/proc/self/fd/{dir_fd}".encode()
    return base + b"/" + rel if rel else base


@dataclass(frozen=True)
class Exclusions:
    """`<notreplicated path="rel"/>` (a path and everything under it) and `regexpath="re"` (matched
    against the whole relative path): not replicated, not compared, never removed on the secondary."""

    paths: tuple[bytes, ...] = ()
    regexes: tuple[re.Pattern[bytes], ...] = ()

    @classmethod
    def build(cls, paths: list[str], regexes: list[str]) -> Exclusions:
        return cls(
            tuple(p.strip("/").encode() for p in paths if p.strip("/")),
            tuple(re.compile(r.encode()) for r in regexes),
        )

    def excluded(self, rel: bytes) -> bool:
        if not rel:
            return False
        for p in self.paths:
            if rel == p or rel.startswith(p + b"/"):
                return True
        if not self.regexes:
            return False
        # a regex names whole relative paths; what is under an excluded directory is excluded too
        parts = rel.split(b"/")
        prefixes = [b"/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(r.fullmatch(prefix) for r in self.regexes for prefix in prefixes)


@dataclass(frozen=True)
class EntryInfo:
    path: bytes
    kind: str  # f d l o (other: fifo, socket, device)
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    target: bytes = b""
    rdev: int = 0
    sums: tuple[bytes, ...] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "p": self.path.decode("latin-1"),
            "k": self.kind,
            "m": self.mode,
            "u": self.uid,
            "g": self.gid,
            "s": self.size,
            "t": self.mtime_ns,
        }
        if self.target:
            out["l"] = self.target.decode("latin-1")
        if self.rdev:
            out["r"] = self.rdev
        if self.sums is not None:
            out["h"] = b"".join(self.sums).hex()
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EntryInfo:
        sums = None
        if "h" in obj:
            raw = bytes.fromhex(obj["h"])
            sums = tuple(raw[i : i + SUM_SIZE] for i in range(0, len(raw), SUM_SIZE))
        return cls(
            str(obj["p"]).encode("latin-1"),
            str(obj["k"]),
            int(obj["m"]),
            int(obj["u"]),
            int(obj["g"]),
            int(obj["s"]),
            int(obj["t"]),
            str(obj.get("l", "")).encode("latin-1"),
            int(obj.get("r", 0)),
            sums,
        )


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    return "o"


def entry_info(dir_fd: int, rel: bytes, st: os.stat_result | None = None) -> EntryInfo:
    if st is None:
        st = lstat(dir_fd, rel)
    kind = kind_of(st.st_mode)
    target = os.readlink(rel, dir_fd=dir_fd) if kind == "l" else b""
    return EntryInfo(
        rel,
        kind,
        stat.S_IMODE(st.st_mode) | stat.S_IFMT(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_size if kind == "f" else 0,
        st.st_mtime_ns,
        bytes(target),
        st.st_rdev if kind == "o" else 0,
    )


def xattr_target(dir_fd: int, rel: bytes) -> tuple[int | bytes, bool]:
    """What os.*xattr calls take for `rel`: the directory's fd itself for the replicated directory
    (a /proc/self/fd link with follow_symlinks=False would name the link), else a /proc path."""
    if not rel:
        return dir_fd, True
    return proc_path(dir_fd, rel), False


def list_xattrs(dir_fd: int, rel: bytes) -> list[str]:
    target, _ = xattr_target(dir_fd, rel)
    return os.listxattr(target, follow_symlinks=False) if rel else os.listxattr(target)


def get_xattr(dir_fd: int, rel: bytes, name: bytes | str) -> bytes:
    target, _ = xattr_target(dir_fd, rel)
    return os.getxattr(target, name) if not rel else os.getxattr(target, name, follow_symlinks=False)


def set_xattr(dir_fd: int, rel: bytes, name: bytes | str, value: bytes) -> None:
    target, _ = xattr_target(dir_fd, rel)
    if rel:
        os.setxattr(target, name, value, follow_symlinks=False)
    else:
        os.setxattr(target, name, value)


def remove_xattr(dir_fd: int, rel: bytes, name: bytes | str) -> None:
    target, _ = xattr_target(dir_fd, rel)
    if rel:
        os.removexattr(target, name, follow_symlinks=False)
    else:
        os.removexattr(target, name)


def chown_at(dir_fd: int, rel: bytes, uid: int, gid: int) -> None:
    if rel:
        os.chown(rel, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    else:
        os.chown(dir_fd, uid, gid)


def chmod_at(dir_fd: int, rel: bytes, mode: int) -> None:
    if rel:
        os.chmod(rel, stat.S_IMODE(mode), dir_fd=dir_fd)
    else:
        os.chmod(dir_fd, stat.S_IMODE(mode))


def utime_at(dir_fd: int, rel: bytes, atime_ns: int, mtime_ns: int) -> None:
    if rel:
        os.utime(rel, ns=(atime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
    else:
        os.utime(dir_fd, ns=(atime_ns, mtime_ns))


def lstat(dir_fd: int, rel: bytes) -> os.stat_result:
    if not rel:
        return os.fstat(dir_fd)
    return os.stat(rel, dir_fd=dir_fd, follow_symlinks=False)


def walk(dir_fd: int, exclusions: Exclusions, top: bytes = b"") -> Iterator[tuple[bytes, os.stat_result]]:
    """Every entry under `top` (not `top` itself), parents before children, excluded ones skipped."""
    stack = [top]
    while stack:
        current = stack.pop()
        try:
            names = sorted(os.listdir(proc_path(dir_fd, current)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        subdirs: list[bytes] = []
        for name in names:
            rel = current + b"/" + name if current else name
            if exclusions.excluded(rel):
                continue
            try:
                st = os.stat(rel, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield rel, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def block_sums(fd: int, size: int) -> tuple[bytes, ...]:
    sums: list[bytes] = []
    offset = 0
    while offset < size:
        data = os.pread(fd, ZONE, offset)
        if not data:
            break
        sums.append(block_sum(data))
        offset += len(data)
    return tuple(sums)


def block_sum(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:SUM_SIZE]


def manifest(dir_fd: int, exclusions: Exclusions, *, sums: bool) -> Iterator[EntryInfo]:
    for rel, st in walk(dir_fd, exclusions):
        info = entry_info(dir_fd, rel, st)
        if sums and info.kind == "f":
            try:
                fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            try:
                info = EntryInfo(**{**_fields(info), "sums": block_sums(fd, info.size)})
            finally:
                os.close(fd)
        yield info


def _fields(info: EntryInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "kind": info.kind,
        "mode": info.mode,
        "uid": info.uid,
        "gid": info.gid,
        "size": info.size,
        "mtime_ns": info.mtime_ns,
        "target": info.target,
        "rdev": info.rdev,
    }


def entries_with_sums(dir_fd: int, paths: list[bytes]) -> Iterator[EntryInfo]:
    """Metadata and block checksums of the given files (missing ones are left out)."""
    for rel in paths:
        try:
            if not stat.S_ISREG(os.stat(rel, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                continue
            # O_NONBLOCK: a FIFO that replaced the file in between must not block the reader
            fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            info = entry_info(dir_fd, rel, st)
            yield EntryInfo(**{**_fields(info), "sums": block_sums(fd, info.size)})
        finally:
            os.close(fd)
