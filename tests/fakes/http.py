"""The common part of the fakes: a threaded HTTP server on 127.0.0.1 with a request log and a queue
of injected faults.

A fault applies to the next request(s) whose "METHOD path" contains a given text: answer 429 or
any status (with the cloud's error body), or sleep before answering (a timeout for a client whose
attempt timeout is shorter).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    match: str
    status: int = 0
    """0: no error status, only the delay."""
    delay: float = 0.0
    times: int = 1


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class HttpFake:
    """Subclasses implement `handle(request) -> Reply` and `error_body(status, message)`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """Listens on `host` (a free port): 127.0.0.1, or a lab address a lab host can reach (a lab
        host has its own loopback)."""
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                fake._serve(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name=type(self).__name__, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HttpFake:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, match: str, status: int = 0, delay: float = 0.0, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(match, status, delay, times))

    def calls(self, method: str | None = None, contains: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": status, "message": message}}

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = Request(
            handler.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in handler.headers.items()},
            body,
        )
        with self.lock:
            self.requests.append(request)
            fault = next((f for f in self.faults if f.match in f"{request.method} {request.path}"), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status:
            reply = Reply(fault.status, self.error_body(fault.status, "injected fault"), {"Retry-After": "0"})
        else:
            with self.lock:
                try:
                    reply = self.handle(request)
                except Exception as exc:  # a bug in the fake shows as a 500 with the reason
                    reply = Reply(500, self.error_body(500, f"fake error: {exc!r}"))
        self._send(handler, reply)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if isinstance(reply.body, str):
            data, ctype = reply.body.encode(), "text/plain"
        elif reply.body is None:
            data, ctype = b"", "application/json"
        else:
            data, ctype = json.dumps(reply.body).encode(), "application/json"
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(data)))
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up (an injected timeout)
            pass
