"""Walking a replicated directory through its directory fd, and its exclusions.

Used by the split-brain save (`rfs.splitbrain`: what this node changed, copied aside) and by the
spec (`DirSpec.exclusions`); the native programs have their own, in C. Everything
is relative to a directory file descriptor, so it keeps reaching the real data underneath a
read-only bind.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass


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
