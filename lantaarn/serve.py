"""Running the parts in one asyncio loop: the API on several addresses, ingest workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn

from api import ApiConfig, create_app

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # Our command owns the signals: it stops the parts in order.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(hosts: list[str], port: int) -> list[socket.socket]:
    """Listening sockets on every host (IPv6 sockets are IPv6-only: IPv4 gets its own)."""
    sockets = []
    try:
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(512)
            sock.setblocking(False)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bind_free(hosts: list[str], attempts: int = 20) -> tuple[list[socket.socket], int]:
    """Listening sockets on one port that is free on every host (chosen by the kernel)."""
    for _ in range(attempts):
        first = bind(hosts[:1], 0)
        port = int(first[0].getsockname()[1])
        try:
            return first + bind(hosts[1:], port), port
        except OSError:
            for sock in first:
                sock.close()
    raise OSError(f"no port free on all of {', '.join(hosts)}")


async def serve_api(
    config: ApiConfig,
    hosts: list[str],
    port: int,
    stop: asyncio.Event,
    *,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve the API until `stop` is set (on `sockets` when given, already listening)."""
    sockets = sockets or bind(hosts, port)
    server = _Server(
        uvicorn.Config(
            create_app(config),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
    )
    task = asyncio.create_task(server.serve(sockets=sockets), name="api")
    stopper = asyncio.create_task(stop.wait(), name="api-stop")
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopper.cancel()
    await task
    for sock in sockets:
        sock.close()
