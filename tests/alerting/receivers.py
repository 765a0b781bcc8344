"""A real HTTP receiver for webhook tests: a threaded stdlib server on ::1 that records requests."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class _V4Server(ThreadingHTTPServer):
    daemon_threads = True


@dataclass
class Receiver:
    """What arrived (headers, body) and the statuses to answer with, in turn (then 200)."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@contextmanager
def webhook_receiver(host: str = "::1", tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A running receiver on `host` (::1 or 127.0.0.1), over TLS with `tls` (a server
    context); its URL is `receiver.url`."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            receiver.arrived.set()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test's output stays quiet

    server = (_V6Server if ":" in host else _V4Server)((host, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    shown = f"[{host}]" if ":" in host else host
    scheme = "http" if tls is None else "https"
    receiver.url = f"{scheme}://{shown}:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
