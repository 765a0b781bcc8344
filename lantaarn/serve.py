"""Running the parts in one asyncio loop: the API on several addresses, ingest workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Generator, Sequence
from pathlib import Path

import uvicorn

from api import ApiConfig, create_app
from ingest.worker import startup_heap_frozen

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # Our command owns the signals: it stops the parts in order.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def _heap_frozen_once_started(
    server: uvicorn.Server, serving: asyncio.Task[None]
) -> AsyncIterator[None]:
    """Once the API has started (its lifespan opened the registry and caches), keep what exists
    out of the garbage collector's full collections until it stops.

    The API's start-up heap (modules, the app and its routes, the registry) is some 175,000
    objects; a full collection walked all of them in the middle of whichever request set it
    off: ~150 ms of CPU, every few large answers (a day of SensorThings Observations makes
    ~30,000 objects). See `startup_heap_frozen` and bench/results/sta.md.
    """
    with contextlib.ExitStack() as frozen:

        async def freeze() -> None:
            while not server.started:
                if serving.done():
                    return
                await asyncio.sleep(0.05)
            frozen.enter_context(startup_heap_frozen())

        freezer = asyncio.create_task(freeze(), name="api-heap")
        try:
            yield
        finally:
            freezer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await freezer


def bind(hosts: list[str], port: int) -> list[socket.socket]:
    """Listening sockets on every host (IPv6 sockets are IPv6-only: IPv4 gets its own)."""
    sockets = []
    try:
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            # IPPROTO_TCP named, not 0: only then does asyncio turn Nagle off on accepted
            # connections (else a kept-alive answer waits ~40 ms for a delayed ACK).
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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


def server_config(
    config: ApiConfig,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    trusted_proxies: Sequence[str] = (),
) -> uvicorn.Config:
    """uvicorn's configuration of the API: HTTPS with a certificate, proxies it believes.

    Forwarded headers (`X-Forwarded-For`, `X-Forwarded-Proto`) are believed only from the
    addresses in `trusted_proxies` (uvicorn's own default would believe any local process). The
    Host header is never used for our links (see api.urls).
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("HTTPS needs both a certificate file and its key file")
    server = uvicorn.Config(
        create_app(config),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies) or [],
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server.load()
    if server.ssl is not None:
        server.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return server


async def serve_api(
    config: ApiConfig,
    hosts: list[str],
    port: int,
    stop: asyncio.Event,
    *,
    sockets: list[socket.socket] | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    trusted_proxies: Sequence[str] = (),
) -> None:
    """Serve the API until `stop` is set (on `sockets` when given, already listening).

    With `certfile` and `keyfile` (PEM) it speaks HTTPS only (TLS 1.2 or newer).
    """
    sockets = sockets or bind(hosts, port)
    server = _Server(
        server_config(config, certfile=certfile, keyfile=keyfile, trusted_proxies=trusted_proxies)
    )
    task = asyncio.create_task(server.serve(sockets=sockets), name="api")
    stopper = asyncio.create_task(stop.wait(), name="api-stop")
    async with _heap_frozen_once_started(server, task):
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopper.cancel()
        await task
    for sock in sockets:
        sock.close()
