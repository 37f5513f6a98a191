"""The client-side workload: numbered records posted through the VIP, every acknowledgement kept.

Runs on the lab's client host (`python -m safekit.chaos.workload VIP PORT FIRST`). One request at
a time, each on a new connection (HTTP/1.0), so that a failover costs the requests in flight and
no more: connect within CONNECT_TIMEOUT, answer within ANSWER_TIMEOUT. A 200 "ok NODE" to
`POST /append/N` is the application's promise that record N is durable (examples/modules/chaosapp).

Output, one line per request (times are CLOCK_MONOTONIC, shared by every process on the machine):

    A N T_SENT T_ACK NODE   record N acknowledged by NODE
    F N T_SENT T_END WHY    record N not acknowledged (in flight: it may or may not be there)

A refused or failed request is retried with the next number after RETRY_PAUSE, so that a long
outage does not become a busy loop.
"""

from __future__ import annotations

import signal
import socket
import sys
import time

CONNECT_TIMEOUT = 0.5
ANSWER_TIMEOUT = 3.0
RETRY_PAUSE = 0.02


def post(vip: str, port: int, number: int) -> tuple[bool, str]:
    """(acknowledged, node or why not) for one record."""
    try:
        with socket.create_connection((vip, port), timeout=CONNECT_TIMEOUT) as conn:
            conn.settimeout(ANSWER_TIMEOUT)
            conn.sendall(f"POST /append/{number} HTTP/1.0\r\nContent-Length: 0\r\n\r\n".encode())
            chunks = []
            while chunk := conn.recv(4096):
                chunks.append(chunk)
    except TimeoutError:
        return False, "timeout"
    except OSError as exc:
        return False, (exc.strerror or type(exc).__name__).replace(" ", "_")
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"] or not body.startswith(b"ok "):
        return False, "status_" + (status[0].decode() if status else "none")
    return True, body[3:].strip().decode() or "?"


def run(vip: str, port: int, first: int) -> None:
    number = first
    while True:
        sent = time.monotonic()
        ok, what = post(vip, port, number)
        done = time.monotonic()
        sys.stdout.write(f"{'A' if ok else 'F'} {number} {sent:.6f} {done:.6f} {what}\n")
        sys.stdout.flush()
        number += 1
        if not ok:
            time.sleep(RETRY_PAUSE)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        sys.stderr.write("usage: python -m safekit.chaos.workload VIP PORT FIRST_NUMBER\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args[0], int(args[1]), int(args[2]))
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
