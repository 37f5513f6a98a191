"""The client-side PostgreSQL workload: numbered commits through the VIP, every acknowledgement kept.

Runs on the lab's client host (`python -m safekit.chaos.pgworkload VIP PORT FIRST`), beside
`workload`, with the superuser's password in the environment (PGPASSWORD). Standard library only:
it drives Debian's `psql`, one long-lived process per connection (`-X -q -At -v ON_ERROR_STOP=1`),
one statement at a time:

    INSERT INTO chaos_commits (id) VALUES (N) RETURNING id;

in autocommit mode: one transaction per id, ids FIRST, FIRST+1, ... An id is acknowledged only
when psql printed it back: the server sends the statement's result complete (CommandComplete) only
after the commit, and psql prints a result once it is complete; the module runs PostgreSQL with
`fsync = on` and `synchronous_commit = on`, so the commit's WAL fsync returned, and by the
replication's contract the secondary has it (examples/modules/pgmirror/README.md).

A connection that fails, an error (psql ends: ON_ERROR_STOP), or an answer that takes longer than
ANSWER_TIMEOUT ends that psql (SIGKILL to its pid): the id is in flight (it may or may not be
committed) and the next id is tried on a new connection after RETRY_PAUSE.

Output, one line per id, as `workload` prints (judge.parse_workload reads both):

    A N T_SENT T_ACK pg     commit N acknowledged
    F N T_SENT T_END WHY    commit N not acknowledged (in flight)

Memory stays flat: nothing is kept from one id to the next but the connection, and psql's output
is read into buffers of bounded size.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

TABLE = "chaos_commits"
PSQL = "psql"
CONNECT_TIMEOUT = 2  # libpq's connect_timeout (s): its minimum
ANSWER_TIMEOUT = 3.0
RETRY_PAUSE = 0.1
MAX_LINE = 4096
"""Bytes kept of a line psql has not ended yet (an answer is a number: more is garbage)."""
MAX_ERROR = 300
"""Bytes kept of what psql said on stderr (the last ones: the reason it stopped)."""
NODE = "pg"


def statement(number: int) -> bytes:
    """The one statement of commit `number` (autocommit: a transaction of its own)."""
    return f"INSERT INTO {TABLE} (id) VALUES ({number:d}) RETURNING id;\n".encode()  # noqa: S608 - an int


def conninfo(host: str, port: int) -> str:
    return (
        f"host={host} port={port} user=postgres dbname=postgres "
        f"connect_timeout={CONNECT_TIMEOUT} application_name=chaos-pgworkload"
    )


def psql_argv(host: str, port: int) -> list[str]:
    return [PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", conninfo(host, port)]


@dataclass
class Lines:
    """Complete lines out of a byte stream, with a bounded partial line (and nothing else) kept."""

    limit: int = MAX_LINE
    partial: bytes = b""
    overflowed: bool = False

    def feed(self, data: bytes) -> list[str]:
        *complete, rest = (self.partial + data).split(b"\n")
        if len(rest) > self.limit:
            rest = rest[-self.limit :]
            self.overflowed = True
        self.partial = rest
        return [line.decode(errors="replace").strip() for line in complete]


@dataclass
class Tail:
    """The last `limit` bytes of a stream (psql's stderr)."""

    limit: int = MAX_ERROR
    data: bytes = b""

    def feed(self, data: bytes) -> None:
        self.data = (self.data + data)[-self.limit :]


def is_ack(line: str, number: int) -> bool:
    """Whether a line psql printed acknowledges commit `number` (RETURNING id, unaligned)."""
    return line == str(number)


# What psql says when it gives up, and the one word the output line gives as the reason.
REASONS = (
    ("connection refused", "connection_refused"),
    ("timeout expired", "connect_timeout"),
    ("no route to host", "no_route"),
    ("network is unreachable", "unreachable"),
    ("the database system is starting up", "starting_up"),
    ("the database system is shutting down", "shutting_down"),
    ("the database system is in recovery mode", "in_recovery"),
    ("terminating connection", "terminated"),
    ("server closed the connection", "server_closed"),
    ("connection to server was lost", "connection_lost"),
    ("password authentication failed", "auth_failed"),
    ("read-only", "read_only"),
    ("no space left", "disk_full"),
    ("duplicate key", "duplicate"),
    ("does not exist", "no_table"),
)


def reason(stderr: str, default: str) -> str:
    """One word for why psql did not acknowledge (from the last thing it said on stderr)."""
    text = stderr.lower()
    found = [(text.rfind(needle), word) for needle, word in REASONS if needle in text]
    if found:
        return max(found)[1]
    return default


@dataclass
class Psql:
    """One psql process: one connection to the server."""

    argv: list[str]
    proc: subprocess.Popen[bytes] = field(init=False)
    out: Lines = field(default_factory=Lines)
    err: Tail = field(default_factory=Tail)

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
        )

    def ask(self, number: int, timeout: float) -> tuple[bool, str]:
        """Send commit `number`; (acknowledged, why not) within `timeout` seconds."""
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        try:
            self.proc.stdin.write(statement(number))
            self.proc.stdin.flush()
        except OSError:
            return False, reason(self._drain_stderr(), "psql_ended")
        deadline = time.monotonic() + timeout
        out, err = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        open_fds = [out, err]
        while out in open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, "timeout"
            ready, _, _ = select.select(open_fds, [], [], left)
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:
                    open_fds.remove(fd)
                elif fd == err:
                    self.err.feed(data)
                else:
                    for line in self.out.feed(data):
                        if is_ack(line, number):
                            return True, NODE
                        if line:  # an answer that is not ours: this connection is not trusted
                            return False, "unexpected_answer"
        # stdout closed: psql ended (the connection failed, or an error ended it)
        return False, reason(self._drain_stderr(), "psql_ended")

    def _drain_stderr(self) -> str:
        """What psql said on stderr (waiting at most 0.2 s more for it)."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + 0.2
        with contextlib.suppress(OSError, ValueError):
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
                    break
                data = os.read(fd, 65536)
                if not data:
                    break
                self.err.feed(data)
        return self.err.data.decode(errors="replace")

    def end(self) -> None:
        """SIGKILL to this psql (by its pid), reaped; its pipes closed."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def run(host: str, port: int, first: int) -> None:
    number = first
    conn: Psql | None = None
    try:
        while True:
            if conn is None:
                conn = Psql(psql_argv(host, port))
            sent = time.monotonic()
            ok, what = conn.ask(number, ANSWER_TIMEOUT)
            done = time.monotonic()
            sys.stdout.write(f"{'A' if ok else 'F'} {number} {sent:.6f} {done:.6f} {what}\n")
            sys.stdout.flush()
            number += 1
            if not ok:
                conn.end()
                conn = None
                time.sleep(RETRY_PAUSE)
    finally:
        if conn is not None:
            conn.end()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        sys.stderr.write("usage: PGPASSWORD=... python -m safekit.chaos.pgworkload VIP PORT FIRST_ID\n")
        return 2
    if not os.environ.get("PGPASSWORD"):
        sys.stderr.write("pgworkload: PGPASSWORD is not set\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args[0], int(args[1]), int(args[2]))
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
