#!/usr/bin/env python3
"""chaosapp's append service: the application of the fault-injection suite (docs/chaos.md).

It runs on the primary only (start_prim / stop_prim), listens on every address (the VIP
included) and owns one thing: a journal of numbered records in the replicated directory.

    POST /append/N   append the record of N to the journal, fsync, then answer 200 "ok NODE"
    GET  /records    every journal file, concatenated (what the primary holds now)
    GET  /health     200 "ok NODE"

A 200 to POST is the acknowledgement: the record's fsync returned, so by the replication's
contract (docs/replication.md) it is on the secondary too. Records are fixed-width lines
"NNNNNNNNNN CCCCCCCC\\n" (number, crc32 of the number), so a torn write never reads as a record.
Journal files hold 10,000 records each (chunk-NNNNN.log), so a resynchronisation after a fault
copies the last files, not the whole history. Python's standard library only: it runs with the
system's python3 on any node.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORDS_PER_FILE = 10_000


def record(number: int) -> bytes:
    text = f"{number:010d}"
    return f"{text} {zlib.crc32(text.encode()):08x}\n".encode()


class Journal:
    """Appends records with fsync; one open file at a time, reopened after any error."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.chunk = -1

    def append(self, number: int) -> None:
        chunk = number // RECORDS_PER_FILE
        with self.lock:
            try:
                if self.fd is None or chunk != self.chunk:
                    self._close()
                    path = os.path.join(self.directory, f"chunk-{chunk:05d}.log")
                    self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    self.chunk = chunk
                os.write(self.fd, record(number))
                os.fsync(self.fd)
            except OSError:
                self._close()
                raise

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def read_all(self) -> bytes:
        names = sorted(n for n in os.listdir(self.directory) if n.startswith("chunk-"))
        parts = []
        for name in names:
            with open(os.path.join(self.directory, name), "rb") as f:
                parts.append(f.read())
        return b"".join(parts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    journal: Journal
    node = socket.gethostname()

    def log_message(self, format: str, *args: object) -> None:
        return  # one line per record would fill the disk

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "append" or not parts[1].isdigit():
            self._answer(404, b"POST /append/N\n")
            return
        try:
            self.journal.append(int(parts[1]))
        except OSError as exc:
            self._answer(503, f"not appended: {exc}\n".encode())
            return
        self._answer(200, f"ok {self.node}\n".encode())

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(200, f"ok {self.node}\n".encode())
        elif self.path == "/records":
            try:
                body = self.journal.read_all()
            except OSError as exc:
                self._answer(503, f"cannot read the journal: {exc}\n".encode())
                return
            self._answer(200, body)
        else:
            self._answer(404, b"GET /records or /health\n")


def main() -> int:
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    Handler.journal = Journal(directory)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - the VIP is one of them
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
