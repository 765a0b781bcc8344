"""A scripted MQTT broker for the tests of misbehaviour: it answers CONNECT and SUBSCRIBE as told,
then sends what it is told (or nothing at all), and records what the client sent.

A real Mosquitto never sends a short CONNACK or a 200 MB header, nor goes silent on demand; this
one does. It runs in a thread of its own, so synchronous and asyncio clients can both use it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import mqtt5

GOOD_CONNACK = mqtt5.ConnAckPacket(receive_max=100).write()


@dataclass
class FakeBroker:
    """Listens on ::1; each connection gets `connack`, a SUBACK with `granted`, then `then`."""

    connack: bytes = GOOD_CONNACK
    granted: list[int] = field(default_factory=lambda: [1])
    then: bytes = b""
    answer_pings: bool = False
    packets: list[mqtt5.Packet] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0

    def __post_init__(self) -> None:
        self._server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self._server.bind(("::1", 0))
        self._server.listen(8)
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> FakeBroker:
        thread = threading.Thread(target=self._accept, name="fake-broker", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._threads[0].join(5)  # the acceptor first: it starts no thread after this
        for thread in self._threads[1:]:
            thread.join(5)
        self._server.close()

    def sent(self, kind: type) -> list[mqtt5.Packet]:
        """The packets of one kind the client sent so far."""
        with self._lock:
            return [p for p in self.packets if isinstance(p, kind)]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _packets(self, sock: socket.socket) -> Iterator[mqtt5.Packet]:
        buffer = b""
        sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                self.closed_by_client += 1
                return
            buffer += data
            while buffer:
                try:
                    packet, size = mqtt5.read(memoryview(buffer))
                except IndexError:
                    break
                buffer = buffer[size:]
                with self._lock:
                    self.packets.append(packet)
                yield packet

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError), sock:
            for packet in self._packets(sock):
                if isinstance(packet, mqtt5.ConnectPacket):
                    sock.sendall(self.connack)
                    if not self.granted:
                        self._then(sock)
                elif isinstance(packet, mqtt5.SubscribePacket | mqtt5.UnsubscribePacket):
                    codes = [mqtt5.SubAckReasonCode(c) for c in self.granted]
                    sock.sendall(mqtt5.SubAckPacket(packet.packet_id, codes).write())
                    self._then(sock)
                elif isinstance(packet, mqtt5.PingReqPacket) and self.answer_pings:
                    sock.sendall(mqtt5.PingRespPacket().write())

    def _then(self, sock: socket.socket) -> None:
        if self.then:
            time.sleep(0.05)  # a read of its own, after the answers
            sock.sendall(self.then)


def varint(value: int) -> bytes:
    """MQTT's variable byte integer, to write headers no codec would write (tests only)."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def eventually(
    check: Callable[[], bool], timeout_s: float, pump: Callable[[], None] | None = None
) -> bool:
    """Whether `check()` comes true within `timeout_s`, calling `pump()` (if given) meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        if pump is not None:
            pump()
        else:
            time.sleep(0.02)
    return check()
