"""The restart-script runner: SafeKit's script contract, executed with bounded time.

A module's `bin/` directory holds the application's scripts (`prestart`, `start_prim`, `stop_prim`,
`start_second`, `stop_second`, `start_both`, `stop_both`, `poststop`). Each is called with SafeKit's
arguments (current state, next state, action) and environment (`SAFE`, `SAFEMODULE`, `SAFEBIN`,
`SAFEUSERBIN`, `SAFEUSERCONF`, `SAFEVAR`, `SAFEUSERVAR`, and the module's `<user><var>` values), its
output going to the module's user log.

A stop script that does not finish within `nicestoptimeout` is killed (its whole process group) and
called a second time with `force` as its first argument, bounded by `forcestoptimeout`: a stuck stop
script must never stop a failover. A missing script is not an error (it has nothing to do).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from safekit.aio import within
from safekit.host import logfiles
from safekit.host.priority import at_normal_priority
from safekit.lifecycle import Script

EXIT_CANNOT_EXECUTE = 126  # the shell's code for "found but not executable"


@dataclass(frozen=True)
class ScriptResult:
    script: Script
    ok: bool
    exit_code: int | None
    """None when the script was killed after its time ran out, or did not exist."""
    timed_out: bool = False
    forced: bool = False
    """The first call timed out and the script was called again with `force`."""
    missing: bool = False
    duration_s: float = 0.0

    def describe(self) -> str:
        if self.missing:
            return f"{self.script}: no script, nothing to do"
        how = f"in {self.duration_s:.2f} s"
        if self.forced:
            how += " (after a forced second call)"
        if self.timed_out:
            return f"{self.script}: did not finish in time, killed {how}"
        return f"{self.script}: exit {self.exit_code} {how}"


@dataclass(frozen=True)
class ScriptEnvironment:
    """Where a module lives: the values of SafeKit's script environment variables."""

    safe: Path
    module: str
    safevar: Path
    userbin: Path
    userconf: Path
    uservar: Path
    user_vars: Mapping[str, str] = field(default_factory=dict)

    def variables(self) -> dict[str, str]:
        env = {
            "SAFE": str(self.safe),
            "SAFEMODULE": self.module,
            "SAFEBIN": str(self.safe / "private" / "bin"),
            "SAFEUSERBIN": str(self.userbin),
            "SAFEUSERCONF": str(self.userconf),
            "SAFEVAR": str(self.safevar),
            "SAFEUSERVAR": str(self.uservar),
        }
        env.update(self.user_vars)
        return env


class ScriptRunner:
    """Runs one module's scripts, one at a time, each bounded in time."""

    def __init__(
        self,
        environment: ScriptEnvironment,
        user_log: Path,
        *,
        nicestoptimeout: float = 300.0,
        forcestoptimeout: float = 300.0,
        starttimeout: float | None = None,
    ) -> None:
        self.environment = environment
        self.user_log = user_log
        self.nicestoptimeout = nicestoptimeout
        self.forcestoptimeout = forcestoptimeout
        self.starttimeout = starttimeout
        self._lock = asyncio.Lock()

    def path(self, script: Script) -> Path:
        return self.environment.userbin / str(script)

    async def run(
        self, script: Script, current: str, next_state: str, action: str, *, forced: bool = False
    ) -> ScriptResult:
        """Call `script current next action`; a stop script gets a second, forced call on timeout.

        `forced` makes the first call the forced one (`force current next action`), as after a
        `forcestop`.
        """
        async with self._lock:
            path = self.path(script)
            if not path.exists():
                return ScriptResult(script, ok=True, exit_code=None, missing=True)
            started = time.monotonic()
            if not forced:
                timeout = self.nicestoptimeout if script.is_stop else self.starttimeout
                code = await self._call(path, [current, next_state, action], timeout)
                if code is not None:
                    return ScriptResult(script, code == 0, code, duration_s=time.monotonic() - started)
                if not script.is_stop:
                    return ScriptResult(
                        script,
                        ok=False,
                        exit_code=None,
                        timed_out=True,
                        duration_s=time.monotonic() - started,
                    )
                self._log_line(
                    f"{script}: no answer after {self.nicestoptimeout:g} s; calling it again with 'force'"
                )
            code = await self._call(path, ["force", current, next_state, action], self.forcestoptimeout)
            return ScriptResult(
                script,
                ok=code == 0,
                exit_code=code,
                timed_out=code is None,
                forced=True,
                duration_s=time.monotonic() - started,
            )

    async def _call(self, path: Path, args: list[str], timeout: float | None) -> int | None:
        """Run the script; None when it had to be killed after `timeout` seconds."""
        self.user_log.parent.mkdir(parents=True, exist_ok=True)
        logfiles.rotate_if_larger(self.user_log)  # a script writes straight into it: bounded here
        env = {**os.environ, **self.environment.variables()}
        with open(self.user_log, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {path.name} {' '.join(args)}\n".encode())
            log.flush()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *at_normal_priority([str(path), *args]),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=str(self.environment.userbin),
                    start_new_session=True,  # its own process group: a timeout kills its children too
                )
            except OSError as exc:
                log.write(f"--- safekit: cannot run {path}: {exc.strerror} (is it executable?)\n".encode())
                return EXIT_CANNOT_EXECUTE
            try:
                return await within(proc.wait(), timeout)
            except TimeoutError:
                _kill_group(proc.pid)
                await proc.wait()
                return None
            except asyncio.CancelledError:
                _kill_group(proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
                raise

    def _log_line(self, text: str) -> None:
        with open(self.user_log, "a", encoding="utf-8") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} safekit: {text}\n")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
