"""Client-side writers for fault tests and benchmarks: a client on a lab host commits numbered
rows through one SQL client process, one statement at a time, and counts as acknowledged only the
numbers the server returned - the client's view of what must survive, not the nodes'."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Sequence

from safekit.lab.lab import Lab

WRITE_INTERVAL = 0.02
"""Seconds between two writes (one statement, autocommit, at a time)."""


class AckedWriter:
    """A client that commits numbered rows through one SQL client process, one statement at a time,
    and counts as acknowledged only the numbers the server returned (`... RETURNING id`, or a
    SELECT after the INSERT): the client's view, not the nodes'."""

    def __init__(
        self,
        lab: Lab,
        name: str,
        argv: Sequence[str],
        statement: str,
        *,
        host: str = "client",
        first: int = 1,
    ) -> None:
        self.name = name
        self.statement = statement
        self.first = first
        """The first number written (a second writer on the same table starts above the first)."""
        self.acked: list[int] = []
        self.acked_at: list[float] = []
        self._stop = threading.Event()
        self._proc = subprocess.Popen(
            lab.exec_argv(host, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.errors: list[str] = []
        self._feeder = threading.Thread(target=self._feed, name=f"{name}-feed", daemon=True)
        self._reader = threading.Thread(target=self._read, name=f"{name}-read", daemon=True)
        self._errors = threading.Thread(target=self._read_errors, name=f"{name}-errors", daemon=True)
        self._feeder.start()
        self._reader.start()
        self._errors.start()

    @property
    def exited(self) -> bool:
        """The client process ended (its connection was lost, with ON_ERROR_STOP)."""
        return self._proc.poll() is not None

    def __repr__(self) -> str:
        return f"{self.name}: {len(self.acked)} acknowledged, errors: {' | '.join(self.errors[-3:])}"

    def _feed(self) -> None:
        assert self._proc.stdin is not None
        number = self.first - 1
        try:
            while not self._stop.is_set():
                number += 1
                self._proc.stdin.write(self.statement.format(n=number) + "\n")
                self._proc.stdin.flush()
                time.sleep(WRITE_INTERVAL)
            self._proc.stdin.close()
        except (BrokenPipeError, ValueError):  # the client gave up (its connection was lost)
            pass

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip().isdigit():
                self.acked.append(int(line))
                self.acked_at.append(time.monotonic())

    def _read_errors(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.errors.append(line.strip())

    def stop(self) -> None:
        self._stop.set()
        self._feeder.join(timeout=10)
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=10)


def postgresql_writer(
    lab: Lab,
    address: str,
    password: str,
    table: str,
    *,
    port: int = 5432,
    host: str = "client",
    first: int = 1,
) -> AckedWriter:
    """INSERT INTO table VALUES (n) RETURNING id, as user postgres: each id printed is committed."""
    # tcp_user_timeout: a statement sent to a powered-off primary fails in 3 s instead of minutes.
    conninfo = (
        f"host={address} port={port} user=postgres dbname=postgres connect_timeout=2 "
        "tcp_user_timeout=3000 keepalives_idle=1 keepalives_interval=1 keepalives_count=2"
    )
    # stdbuf: psql writes each acknowledged id at once instead of when its buffer fills.
    argv = ["env", f"PGPASSWORD={password}", "stdbuf", "-oL", "psql", "-X", "-q", "-At"]
    return AckedWriter(
        lab,
        "postgresql",
        [*argv, "-v", "ON_ERROR_STOP=1", conninfo],
        f"INSERT INTO {_identifier(table)} VALUES ({{n}}) RETURNING id;",  # noqa: S608 - a checked name
        host=host,
        first=first,
    )


def mariadb_writer(
    lab: Lab,
    address: str,
    *,
    user: str,
    password: str,
    database: str,
    table: str,
    port: int = 3306,
    host: str = "client",
) -> AckedWriter:
    """INSERT INTO table VALUES (n); SELECT n (autocommit): each n printed is committed."""
    argv = ["mariadb", "--no-defaults", "-h", address, "-P", str(port), "-u", user, f"-p{password}"]
    return AckedWriter(
        lab,
        "mariadb",
        [*argv, "--connect-timeout=2", "-N", "-B", "--unbuffered", database],
        f"INSERT INTO {_identifier(table)} VALUES ({{n}}); SELECT {{n}};",  # noqa: S608 - a checked name
        host=host,
    )


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain SQL table name: {name!r}")
    return name
