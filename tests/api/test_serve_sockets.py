"""The API's listening sockets hand out connections with Nagle's algorithm off.

asyncio turns TCP_NODELAY on only for sockets whose protocol is IPPROTO_TCP; a socket made
with protocol 0 (the default) accepts connections that keep Nagle on, and every answer on a
kept-alive connection then waits ~40 ms for the client's delayed ACK (found by bench/sta.py).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from lantaarn.serve import bind_free

pytestmark = pytest.mark.anyio


async def test_accepted_connections_have_nagle_off() -> None:
    sockets, port = bind_free(["::1", "127.0.0.1"])
    seen: list[int] = []
    connected = asyncio.Event()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()
            connected.set()

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Probe, sock=s) for s in sockets]
    try:
        for host in ("::1", "127.0.0.1"):
            connected.clear()
            _reader, writer = await asyncio.open_connection(host, port)
            await asyncio.wait_for(connected.wait(), 10)
            writer.close()
        assert len(seen) == 2
        assert all(seen), "accepted connections keep Nagle's algorithm on"
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
