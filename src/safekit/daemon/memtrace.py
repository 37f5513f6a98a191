"""Memory tracing of safekitd for leak hunting (the soak, docs/chaos.md): off unless asked.

`SAFEKIT_TRACEMALLOC=SECONDS` in safekitd's environment starts Python's tracemalloc and, every
SECONDS, appends to `<log dir>/tracemalloc.txt` the Python heap that is traced, the process's
resident memory, and the 15 allocation sites that grew most since the first report. A site that
grows at every report is a leak; resident memory growing while the traced heap stays flat is the
allocator (fragmentation, arenas), not Python objects.

Tracing costs memory and CPU: never set it on a production node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import time
import tracemalloc
from pathlib import Path

from safekit.daemon import allocator

log = logging.getLogger("safekit.daemon.memtrace")

ENV = "SAFEKIT_TRACEMALLOC"
TOP = 15


def period_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> float | None:
    """The report period asked for in the environment, or None when tracing is off."""
    raw = environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        period = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of seconds: memory tracing stays off", ENV, raw)
        return None
    return period if period > 0 else None


def malloc_figures(libc: ctypes.CDLL | None) -> str:
    """The C allocator's view (main arena and mmap'd blocks, KiB): in use vs free inside the heap.
    Python's big objects and every C library allocate there; a heap whose free part grows while
    the used part stays flat is fragmentation, not a leak."""
    if libc is None or not hasattr(libc, "mallinfo2"):
        return "mallinfo2 unavailable"
    info = libc.mallinfo2()
    return (
        f"malloc heap={info.arena // 1024} used={info.uordblks // 1024} free={info.fordblks // 1024} "
        f"mmapped={info.hblkhd // 1024} top_releasable={info.keepcost // 1024} KiB"
    )


def _rss_kib() -> int:
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def trace_memory(out: Path, period: float) -> None:
    """Report every `period` seconds until cancelled."""
    tracemalloc.start(12)
    log.warning("memory tracing on (%s=%g): reports in %s; not for production", ENV, period, out)
    started = time.monotonic()
    libc = allocator.glibc()
    first: tracemalloc.Snapshot | None = None
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    while True:
        await asyncio.sleep(period)
        snapshot = tracemalloc.take_snapshot().filter_traces(filters)
        current, peak = tracemalloc.get_traced_memory()
        lines = [
            f"== t={time.monotonic() - started:.0f}s rss={_rss_kib()} KiB "
            f"traced={current // 1024} KiB peak={peak // 1024} KiB; {malloc_figures(libc)}"
        ]
        if first is None:
            first = snapshot
        else:
            for stat in snapshot.compare_to(first, "traceback")[:TOP]:
                if stat.size_diff <= 0:
                    break
                lines.append(f"  +{stat.size_diff // 1024} KiB +{stat.count_diff} blocks")
                lines.extend(f"      {frame}" for frame in stat.traceback.format()[-8:])
        text = "\n".join(lines) + "\n"
        await asyncio.to_thread(_append, out, text)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
