"""safekitd's side of replication: starts a module's replication process (the native program
`safekit-rfs-ROLE SPEC`, see `safekit.rfs.native`), reads its events, relays its log into the
module log, and notices when it dies.

The process is a child of safekitd, in the node's mount namespace (its FUSE and bind mounts are the
ones applications see). Events come on its stdout, commands go to its stdin, one JSON object per
line, typed and decoded by `safekit.rfs.channel` (the contract both sides speak).
Its identity (pid, start time, command line, boot id) is recorded under the module's state
directory while it runs, so that a safekitd restarted after a crash ends that very process and no
other (`PROCESS_RECORD`). What a dead process left over the directories (its dead FUSE mount, its
binds, a secondary's recorded read-only binds), a missing directory, and on the primary this node's
old record as a secondary (secondary.json) are the program's own start-up work (native/primary,
native/secondary), not done here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from safekit.aio import within
from safekit.host import persist, processes
from safekit.rfs import channel, native
from safekit.rfs.spec import RfsSpec

Role = Literal["primary", "secondary"]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
PROCESS_RECORD = "process.json"
"""Under the spec's state_dir: the running replication process's identity (removed when it ends)."""


def recorded_process(state_dir: Path) -> tuple[str, processes.ProcessIdentity] | None:
    """The replication process a previous safekitd recorded as running (role, identity), if any."""
    try:
        data = persist.read_json(state_dir / PROCESS_RECORD)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    identity = processes.ProcessIdentity.from_json(data.get("process"))
    return None if identity is None else (str(data.get("role", "")), identity)


def forget_process(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / PROCESS_RECORD).unlink()


class RfsError(Exception):
    """The replication process could not start or answer (the message says why)."""


class RfsProcess:
    def __init__(
        self,
        role: Role,
        spec: RfsSpec,
        log: logging.Logger,
        on_event: Callable[[channel.Event], None],
    ) -> None:
        self.role = role
        self.engine = native.ENGINE
        # the interpreter the native secondary runs its split-brain steps with (`python -m safekit.rfs ...`)
        self.spec = dataclasses.replace(spec, extra={**spec.extra, "python": sys.executable})
        self.log = log
        self.on_event = on_event
        self.proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: asyncio.Future[channel.Event] | None = None
        self._stopping = False
        self.last_event: channel.Event | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Start the process and wait until it serves (primary: mounted; secondary: listening)."""
        state_dir = Path(self.spec.state_dir)
        spec_file = state_dir / f"{self.role}.spec.json"
        try:
            argv = native.command_line(self.role, spec_file, os.environ)
        except native.EngineError as exc:
            raise RfsError(str(exc)) from None
        await asyncio.to_thread(persist.write_bytes, spec_file, self.spec.to_json().encode())
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._stopping = False
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=channel.MAX_LINE + 1,
        )
        self._tasks = [
            asyncio.create_task(self._read_events(), name=f"rfs-{self.role}-events"),
            asyncio.create_task(self._read_log(), name=f"rfs-{self.role}-log"),
        ]
        await asyncio.to_thread(self._record, state_dir)
        try:
            await within(asyncio.shield(self._ready), START_TIMEOUT)
        except TimeoutError:
            await self.stop()
            raise RfsError(
                f"the replication process ({self.role}) did not start within {START_TIMEOUT:g} s"
            ) from None
        except RfsError:
            await self.stop()
            raise

    def _record(self, state_dir: Path) -> None:
        identity = processes.identity(self.proc.pid) if self.proc is not None else None
        if identity is None:
            return  # already gone: `exited` follows
        record = {"role": self.role, "engine": self.engine, "process": identity.to_json()}
        persist.write_json(state_dir / PROCESS_RECORD, record)

    def command(self, command: channel.Command) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.proc.stdin.write(channel.encode_command(command))

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self._stopping = True
        if proc.returncode is None:
            self.command(channel.Stop())
            try:
                await within(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self.log.error("the replication process did not stop within %g s: killed", STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await within(task, 5.0)
        self._tasks = []
        self.proc = None
        forget_process(Path(self.spec.state_dir))

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def _read_events(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        proc = self.proc
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # longer than the channel allows: the rest of it is dropped
                self.log.warning(
                    "rfs %s: an event line longer than %d bytes dropped", self.role, channel.MAX_LINE
                )
                continue
            if not line:
                break
            try:
                event = channel.decode_event(line)
            except channel.ChannelError as exc:
                self.log.warning("rfs %s: unreadable event (%s): %r", self.role, exc, line[:200])
                continue
            if isinstance(event, channel.UnknownEvent):
                self.log.debug("rfs %s: event %r of a newer version ignored", self.role, event.name)
                continue
            self.last_event = event
            if self._ready is not None and not self._ready.done():
                if isinstance(event, (channel.Mounted, channel.Listening)):
                    self._ready.set_result(event)
                elif isinstance(event, channel.Failed):
                    self._ready.set_exception(RfsError(f"replication ({self.role}): {event.reason}"))
            self.on_event(event)
        code = await proc.wait()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                RfsError(f"the replication process ({self.role}) exited with code {code}")
            )
        if not self._stopping:
            self.on_event(channel.Exited(code))

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stderr = self.proc.stderr
        while line := await stderr.readline():
            text = line.decode(errors="replace").rstrip()
            level = logging.INFO
            for name, value in (
                ("ERROR", logging.ERROR),
                ("WARNING", logging.WARNING),
                ("INFO", logging.INFO),
                ("DEBUG", logging.DEBUG),
            ):
                if text.startswith(name + " "):
                    level = value
                    text = text[len(name) + 1 :]
                    break
            self.log.log(level, "%s", text)
