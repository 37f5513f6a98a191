"""The Linux calls the os module lacks, for both ends of replication: renameat2 (RENAME_EXCHANGE,
RENAME_NOREPLACE), fallocate, sync_file_range (early writeback of a large write) and syncfs.

The primary's FUSE front (`fusefs.py`), the secondary's `apply.py` and the split-brain save
(`splitbrain.py`) call them; each failure raises OSError with the call's errno.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_AT_FDCWD = -100


def renameat2(src_fd: int, old: bytes, dst_fd: int, new: bytes, flags: int) -> None:
    if flags == 0:
        os.rename(old, new, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    if _libc.renameat2(src_fd, old, dst_fd, new, ctypes.c_uint(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, ctypes.c_int(mode), ctypes.c_int64(offset), ctypes.c_int64(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_EVERY = 16 << 20
"""Bytes written to a file between two early writeback starts: the final fsync of a large write then
flushes little (measured by the prototype: a 1 GiB fsync went from seconds to tenths)."""


def start_writeback(fd: int) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE): start writing the file's dirty pages, do not wait."""
    _libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), ctypes.c_uint(_SYNC_FILE_RANGE_WRITE))


def syncfs(fd: int) -> None:
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
