"""An HTTP server on ::1 that answers /query with whatever a test sets: what a misconfigured
reverse proxy or a cut-off connection in front of InfluxDB looks like to our client.

Real InfluxDB never answers like this, so a stand-in is the only way to see these answers; it is
a real HTTP server over a real socket, not a patched client.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """What the server says next: status, content type and body."""

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b'{"results":[{"statement_id":0}]}'


@dataclass(frozen=True)
class Asked:
    """A request the server received: method, the URL's length, the body, Accept-Encoding."""

    method: str
    url_bytes: int
    body: bytes
    accept_encoding: str = ""


class _Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    answer: Answer
    asked: list[Asked]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        encodings = self.headers.get("Accept-Encoding", "")
        self.server.asked.append(Asked(self.command, len(self.path), body, encodings))
        answer = self.server.answer
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = _reply  # noqa: N815 - the names http.server dispatches to
    do_POST = _reply  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test says what went wrong."""


@contextmanager
def strange_influx() -> Iterator[tuple[str, _Server]]:
    """Serve on a free port of ::1; yields the base URL and the server (set `.answer`; the
    requests it received are in `.asked`)."""
    server = _Server(("::1", 0), _Handler)
    server.answer = Answer()
    server.asked = []
    thread = threading.Thread(target=server.serve_forever, name="strange-influx", daemon=True)
    thread.start()
    try:
        yield f"http://[::1]:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
