"""safekitd's memory stays flat over months: the C allocator gives back what it no longer uses.

CPython keeps small objects in its own arenas (pymalloc), which it returns to the system only when
an arena is entirely empty; a daemon that allocates a little for every heartbeat, probe and script
for months ends up with arenas pinned by a few long-lived objects (the soak measured resident
memory growing by 20 MiB in 25 minutes while the live Python heap grew by 1 MiB). safekitd runs
with `PYTHONMALLOC=malloc` (set by `ensure_system_allocator`, which re-executes the daemon once
when it is missing) so that every object lives in glibc's heap, and calls `malloc_trim(0)` every
`TRIM_INTERVAL` seconds, which returns the free pages of every heap to the system. Each trim takes
well under a millisecond at this size; the CPU budget (1 % of a core idle) is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import sys
from collections.abc import Sequence

log = logging.getLogger("safekit.daemon.allocator")

ENV = "PYTHONMALLOC"
TRIM_INTERVAL = 60.0
M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (malloc.h)."""
MMAP_THRESHOLD = 128 * 1024
"""glibc's default, made fixed: larger blocks are mapped on their own and unmapped when freed."""


def ensure_system_allocator(argv: Sequence[str]) -> None:
    """Re-execute this process with PYTHONMALLOC=malloc unless it already runs with it (or the
    operator chose another allocator). Returns only when nothing needs to change."""
    if ENV in os.environ:
        return
    os.environ[ENV] = "malloc"
    program = argv[0] if argv else ""
    if not program or program.endswith(".py") or not os.path.isfile(program):
        # `python -m safekit.daemon.main` (argv[0] is the module's file): run the module again
        command = [sys.executable, "-m", "safekit.daemon.main", *argv[1:]]
    else:  # the `safekitd` entry point: the same command line, so `ps` shows the same thing
        command = [sys.executable, *argv]
    os.execv(sys.executable, command)  # noqa: S606 - the same program, same arguments


class Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc >= 2.33): every field a size_t."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library with `malloc_trim` (and `mallinfo2` where it has it) declared, or None when
    this is not glibc. Loaded once; the trim and the memory tracing share it."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = Mallinfo2
    if hasattr(libc, "mallopt"):
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    return libc


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Keep blocks of `threshold` bytes and more out of the heaps, for good (True when set).

    glibc raises its mmap threshold to the size of the largest mapped block freed (up to 32 MiB),
    and its trim threshold to twice that: after the API's first login freed scrypt's 16 MiB, the
    next logins' 16 MiB came from the heap of the worker thread that ran them and stayed resident
    there (malloc_trim returns only free chunks inside a thread's heap, not its top): 16 MiB more
    per worker thread that ever ran a login (docs/api.md, "Memory"). Setting the threshold
    explicitly turns that adjustment off."""
    libc = glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))


async def trim_loop(interval: float = TRIM_INTERVAL) -> None:
    """Give the allocator's free pages back to the system every `interval` seconds."""
    libc = glibc()
    if libc is None:
        log.info("malloc_trim is not available (not glibc): memory is not trimmed")
        return
    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(OSError):
            libc.malloc_trim(0)
