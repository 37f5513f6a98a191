"""nftables commands run inside this process through libnftables, the library `nft` is built on.

`nft -j -f -` costs a process start and libnftables' own start-up on every call: 20 ms on a quiet
two-core machine, 78 ms (p50) and up to 136 ms under load (bench/results/farm.json), for a farm's
ruleset whose parsing and kernel transaction take 1.2 ms in-process. A farm loads its rules on the
takeover path (a member lost: its buckets are served again once they are loaded), so the engine
keeps one libnftables context for the whole run (docs/adr/0073).

The binding covers the few functions of libnftables' documented API (libnftables(3), soname
`libnftables.so.1`) that the engine needs, the way Debian's python3-nftables (the project's own
binding, which is not on PyPI and lives in the system Python only) calls them. A context is not
thread-safe: calls are serialised by a lock and run in the context's own thread, off the event
loop that sends the heartbeats. Without the library (`libnftables1` missing) the caller falls back
to the `nft` program.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

SONAME = "libnftables.so.1"
NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4


@dataclass(frozen=True)
class Result:
    """What a command gave: its return code (0: done; the whole transaction applied), the output
    (JSON) and what libnftables reported as errors."""

    rc: int
    output: str
    error: str


class Unavailable(Exception):
    """libnftables cannot be loaded here (the message says why)."""


class Nftables:
    """One libnftables context, its output and errors buffered (never written to stdout); it lives
    as long as the process."""

    def __init__(self, soname: str = SONAME) -> None:
        try:
            lib = ctypes.CDLL(soname, use_errno=True)
        except OSError as exc:
            raise Unavailable(f"{soname}: {exc}") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.restype = None
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.restype = None
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).restype = ctypes.c_int
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise Unavailable(f"{soname}: nft_ctx_new failed")
        if lib.nft_ctx_buffer_output(ctx) != 0 or lib.nft_ctx_buffer_error(ctx) != 0:
            lib.nft_ctx_free(ctx)
            raise Unavailable(f"{soname}: cannot buffer the output")
        self._lib = lib
        self._ctx: int = ctx
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="libnftables")
        # Output in JSON (`nft -j`); commands are then read as JSON first, else as nft's own syntax.
        lib.nft_ctx_output_set_flags(ctx, lib.nft_ctx_output_get_flags(ctx) | NFT_CTX_OUTPUT_JSON)

    def run(self, commands: str) -> Result:
        """Run `commands` as `nft -j -f` would (one transaction, all of it or nothing)."""
        with self._lock:
            rc = int(self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode()))
            # Reading a buffer hands it over and starts a new one: nothing accumulates between calls.
            output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        return Result(rc, output, error)

    async def run_async(self, commands: str) -> Result:
        """`run` in this context's own thread: the event loop keeps its timers while the kernel
        commits. One thread for the process's life, so libnftables' allocations stay in one malloc
        arena (through a pool of threads, each thread's arena grew: +2.3 MiB over 2,000 loads)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.run, commands)


_shared: Nftables | None = None
_shared_error: str | None = None
_shared_lock = threading.Lock()


def shared() -> Nftables | None:
    """The process's context, made at the first call; None (and `unavailable_reason()` says why)
    when libnftables cannot be loaded."""
    global _shared, _shared_error  # noqa: PLW0603 - one context per process, made on first use
    with _shared_lock:
        if _shared is None and _shared_error is None:
            try:
                _shared = Nftables()
            except Unavailable as exc:
                _shared_error = str(exc)
        return _shared


def unavailable_reason() -> str | None:
    return _shared_error
