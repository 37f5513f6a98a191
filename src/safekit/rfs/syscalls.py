"""The Linux call the os module lacks that the split-brain save (`splitbrain.py`) needs: syncfs
(the saved copy on disk before its manifest says it is complete). A failure raises OSError with
the call's errno."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def syncfs(fd: int) -> None:
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
