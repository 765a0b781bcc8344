"""A small MQTT 5 client for publishing only, built for throughput and for many connections.

paho-mqtt tops out at about 24,000 QoS 1 publications a second on our 2-core machine, most of it
spent building objects for each PUBACK; a simulator has to leave room for generating readings.
This client does just what a publishing device does: CONNECT (credentials, last will),
PUBLISH at QoS 0 or 1, count PUBACKs, keep alive, DISCONNECT (optionally with the will).
It never holds more unacknowledged publications than the broker's Receive Maximum, so the
client-side queue is bounded by what the broker allows (MQTT 5 flow control).

Sockets are non-blocking; `Transport` drives many connections with one selector (epoll), so
a process can hold thousands of device connections.
"""

from __future__ import annotations

import enum
import errno
import logging
import selectors
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from simulators.errors import BrokerRefused, BrokerUnreachable, ProtocolBroken

log = logging.getLogger(__name__)

_CONNECT: Final = 0x10
_CONNACK: Final = 2
_PUBLISH: Final = 0x30
_PUBACK: Final = 4
_PINGREQ: Final = b"\xc0\x00"
_PINGRESP: Final = 13
_DISCONNECT: Final = 14
_RECEIVE_MAXIMUM: Final = 0x21
_MAXIMUM_PACKET_SIZE: Final = 0x27
_SESSION_EXPIRY: Final = 0x11
_WRITE_CHUNK: Final = 256 * 1024  # bytes handed to send() at most at once
# Property identifier -> size of its value: fixed bytes, or -1 a string/binary, -2 a varint,
# -3 a string pair. Enough to skip any property a CONNACK or DISCONNECT may carry.
_PROPERTY_SIZES: Final = {
    0x01: 1, 0x02: 4, 0x03: -1, 0x08: -1, 0x09: -1, 0x0B: -2, 0x11: 4, 0x12: -1, 0x13: 2,
    0x15: -1, 0x16: -1, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2,
    0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: -3, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip


def varint(value: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _str(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def read_varint(data: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """(value, next offset) of a variable byte integer at `at`, or None if incomplete."""
    value, shift = 0, 0
    for i in range(at, min(at + 4, len(data))):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    if len(data) - at >= 4:
        raise ProtocolBroken("malformed variable byte integer")
    return None


def parse_properties(data: bytes | bytearray) -> dict[int, int | bytes]:
    """The numeric and string properties of a property block (without its length)."""
    out: dict[int, int | bytes] = {}
    i = 0
    while i < len(data):
        ident = data[i]
        size = _PROPERTY_SIZES.get(ident)
        if size is None:
            raise ProtocolBroken(f"unknown MQTT property 0x{ident:02x}")
        i += 1
        if size > 0:
            out[ident] = int.from_bytes(data[i : i + size], "big")
            i += size
        elif size == -2:
            parsed = read_varint(data, i)
            if parsed is None:
                raise ProtocolBroken("truncated property")
            out[ident], i = parsed
        else:
            for _ in range(2 if size == -3 else 1):
                length = int.from_bytes(data[i : i + 2], "big")
                out[ident] = bytes(data[i + 2 : i + 2 + length])
                i += 2 + length
    return out


@dataclass(frozen=True, slots=True)
class Will:
    """A last will: published by the broker when the connection dies without a clean goodbye."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Login:
    """Who connects: client id and, when the broker asks, credentials."""

    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


class State(enum.Enum):
    """Where a connection is in its life."""

    NEW = "new"
    CONNECTING = "connecting"  # TCP connecting or waiting for CONNACK
    CONNECTED = "connected"
    CLOSED = "closed"


def connect_packet(login: Login, keepalive_s: int, will: Will | None) -> bytes:
    """The CONNECT packet: clean start, no session kept, our receive maximum."""
    flags = 0x02  # clean start: a device that returns resends its backlog itself
    payload = _str(login.client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += b"\x00" + _str(will.topic) + _str(will.payload)
    if login.username is not None:
        flags |= 0x80
        payload += _str(login.username)
    if login.password is not None:
        flags |= 0x40
        payload += _str(login.password)
    body = _str("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive_s) + b"\x00" + payload
    return bytes([_CONNECT]) + varint(len(body)) + body


class Connection:
    """One MQTT 5 connection that publishes; driven by a `Transport` (not thread-safe).

    Lifecycle: `open()` starts connecting; the transport reads and writes until `connected`;
    `publish()` while `can_publish`; `close()` says goodbye (with or without the will).
    Publications not yet acknowledged when a connection breaks are kept and sent again, with
    the DUP flag, after `open()` is called again.
    """

    def __init__(
        self,
        host: str,
        port: int,
        login: Login,
        *,
        will: Will | None = None,
        keepalive_s: int = 60,
        max_inflight: int = 65_535,
    ) -> None:
        self.host = host
        self.port = port
        self.login = login
        self.will = will
        self.keepalive_s = keepalive_s
        self.max_inflight = max_inflight
        self.state = State.NEW
        self.window = 0  # publications the broker lets us have unacknowledged
        self.max_packet = 268_435_455
        self.sock: socket.socket | None = None
        self.out = bytearray()
        self._in = bytearray()
        self.inflight: dict[int, bytes] = {}  # packet id -> packet, until PUBACK
        self._next_id = 1
        self.acked = 0
        self.refused: dict[int, int] = {}  # PUBACK reason code >= 0x80 -> count
        self.last_write = 0.0
        self.error: BaseException | None = None

    @property
    def connected(self) -> bool:
        """Whether the broker accepted us and the connection stands."""
        return self.state is State.CONNECTED

    @property
    def can_publish(self) -> bool:
        """Whether a QoS 1 publication may go out now without exceeding the broker's window."""
        return self.state is State.CONNECTED and len(self.inflight) < self.window

    def open(self) -> None:
        """Start connecting (non-blocking); CONNECT goes out as soon as TCP is up."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            infos = socket.getaddrinfo(self.host, self.port, family, socket.SOCK_STREAM)
        except OSError:
            infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            raise BrokerUnreachable(f"cannot connect to {self.host}:{self.port}: {code}")
        self.sock = sock
        self.state = State.CONNECTING
        self._in.clear()
        # Whatever was unacknowledged goes again, after the CONNECT, marked as a duplicate.
        self.out = bytearray(connect_packet(self.login, self.keepalive_s, self.will))
        self.last_write = time.monotonic()

    def publish(self, topic: bytes, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Queue a publication; returns its packet id (0 for QoS 0). Check `can_publish` first."""
        if self.state is not State.CONNECTED:
            raise BrokerUnreachable(f"{self.login.client_id} is not connected")
        head = _PUBLISH | (qos << 1) | (1 if retain else 0)
        if qos:
            packet_id = self._next_id
            self._next_id = packet_id % 65_535 + 1
            length = len(topic) + len(payload) + 5  # topic length, packet id, no properties
            packet = (
                bytes([head])
                + varint(length)
                + struct.pack("!H", len(topic))
                + topic
                + struct.pack("!HB", packet_id, 0)
                + payload
            )
            self.inflight[packet_id] = packet
        else:
            packet_id = 0
            length = len(topic) + len(payload) + 3
            packet = (
                bytes([head]) + varint(length) + struct.pack("!H", len(topic)) + topic + b"\x00"
            )
            packet += payload
        self.out += packet
        return packet_id

    def close(self, *, with_will: bool = False) -> None:
        """Say goodbye: DISCONNECT (0x04 asks the broker to publish our will), then close."""
        if self.sock is None:
            self.state = State.CLOSED
            return
        if self.state is State.CONNECTED:
            reason = 0x04 if with_will else 0x00
            self.out += bytes([_DISCONNECT << 4, 2, reason, 0])
            self._flush_blocking(2.0)
        self._drop()
        self.state = State.CLOSED

    def _flush_blocking(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.out and time.monotonic() < deadline:
            try:
                self.write()
            except BrokerUnreachable:
                return
            if self.out:
                time.sleep(0.001)

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fail(self, error: BaseException) -> None:
        """The connection broke: keep unacknowledged publications for the next `open()`."""
        log.warning("%s: connection lost: %s", self.login.client_id, error)
        self.error = error
        self._drop()
        self.state = State.CLOSED
        self.window = 0

    def write(self) -> None:
        """Send what is buffered, as far as the socket takes it."""
        if not self.out or self.sock is None:
            return
        try:
            sent = self.sock.send(memoryview(self.out)[:_WRITE_CHUNK])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise BrokerUnreachable(f"sending to the broker failed: {exc}") from exc
        del self.out[:sent]
        self.last_write = time.monotonic()

    def read(self) -> None:
        """Take what the broker sent and handle every complete packet."""
        if self.sock is None:
            return
        try:
            data = self.sock.recv(262_144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise BrokerUnreachable(f"reading from the broker failed: {exc}") from exc
        if not data:
            raise BrokerUnreachable("the broker closed the connection")
        buf = self._in
        buf += data
        at = 0
        while len(buf) - at >= 2:
            parsed = read_varint(buf, at + 1)
            if parsed is None:
                break
            length, start = parsed
            end = start + length
            if end > len(buf):
                break
            kind = buf[at] >> 4
            if kind == _PUBACK:
                packet_id = (buf[start] << 8) | buf[start + 1]
                if self.inflight.pop(packet_id, None) is not None:
                    self.acked += 1
                if length > 2 and buf[start + 2] >= 0x80:
                    code = buf[start + 2]
                    self.refused[code] = self.refused.get(code, 0) + 1
            elif kind == _CONNACK:
                self._connack(bytes(buf[start:end]))
            elif kind == _DISCONNECT:
                code = buf[start] if length else 0
                raise ProtocolBroken(f"the broker disconnected us (reason 0x{code:02x})")
            elif kind != _PINGRESP:
                log.debug("ignoring MQTT packet type %d", kind)
            at = end
        del buf[:at]

    def _connack(self, body: bytes) -> None:
        code = body[1]
        if code >= 0x80:
            raise BrokerRefused(
                f"the broker refused {self.login.client_id!r} (reason 0x{code:02x})", code
            )
        parsed = read_varint(body, 2)
        properties = {} if parsed is None else parse_properties(body[parsed[1] :])
        receive_maximum = properties.get(_RECEIVE_MAXIMUM, 65_535)
        max_packet = properties.get(_MAXIMUM_PACKET_SIZE, self.max_packet)
        assert isinstance(receive_maximum, int)
        assert isinstance(max_packet, int)
        self.window = min(receive_maximum, self.max_inflight)
        self.max_packet = max_packet
        self.state = State.CONNECTED
        for packet_id, packet in list(self.inflight.items()):
            # Still unacknowledged from before: again, with DUP set, as MQTT requires.
            self.out += bytes([packet[0] | 0x08]) + packet[1:]
            del packet_id

    def keepalive(self, now: float) -> None:
        """Send PINGREQ when we have been quiet for half the keepalive."""
        if self.state is State.CONNECTED and now - self.last_write > self.keepalive_s / 2:
            self.out += _PINGREQ
            self.last_write = now


class Transport:
    """Drives connections with one selector: reads acknowledgements, writes what is queued.

    Sockets are watched for reading only; what is queued is written on every `pump()`, and a
    socket whose buffer is full is tried again on the next one (pumps come every few ms).
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.connections: list[Connection] = []
        self._registered: dict[Connection, int] = {}
        self._dirty: set[Connection] = set()
        self._last_keepalive = time.monotonic()

    def add(self, connection: Connection) -> None:
        """Drive `connection` (opening it if new)."""
        if connection.state in (State.NEW, State.CLOSED):
            connection.open()
        self.connections.append(connection)
        self._register(connection)

    def reopen(self, connection: Connection) -> None:
        """Connect a closed connection again."""
        self._unregister(connection)
        connection.open()
        self._register(connection)

    def close(self, connection: Connection, *, with_will: bool = False) -> None:
        """Say goodbye on one connection and stop driving it."""
        self._unregister(connection)
        connection.close(with_will=with_will)

    def publish(
        self,
        connection: Connection,
        topic: bytes,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
    ) -> int:
        """Queue a publication on `connection`; it goes out on the next `pump()`."""
        packet_id = connection.publish(topic, payload, qos, retain)
        self._dirty.add(connection)
        return packet_id

    def _register(self, connection: Connection) -> None:
        sock = connection.sock
        if sock is not None:
            self._selector.register(sock.fileno(), selectors.EVENT_READ, connection)
            self._registered[connection] = sock.fileno()
            self._dirty.add(connection)  # CONNECT waits in its buffer

    def _unregister(self, connection: Connection) -> None:
        fd = self._registered.pop(connection, None)
        if fd is not None:
            self._selector.unregister(fd)
        self._dirty.discard(connection)

    def pump(self, timeout_s: float = 0.0) -> None:
        """Write what is queued, wait up to `timeout_s` for acknowledgements, read them."""
        self._write_dirty()
        if self._dirty:
            timeout_s = min(timeout_s, 0.001)  # a full socket buffer: come back soon
        for key, _events in self._selector.select(timeout_s):
            connection: Connection = key.data
            try:
                connection.read()
            except (BrokerUnreachable, ProtocolBroken) as exc:
                self._unregister(connection)
                connection.fail(exc)
                continue
            if connection.out:
                self._dirty.add(connection)  # a CONNACK released what waited
        now = time.monotonic()
        if now - self._last_keepalive > 1.0:
            self._last_keepalive = now
            for connection in self.connections:
                connection.keepalive(now)
                if connection.out:
                    self._dirty.add(connection)

    def _write_dirty(self) -> None:
        if not self._dirty:
            return
        for connection in list(self._dirty):
            try:
                connection.write()
            except BrokerUnreachable as exc:
                self._unregister(connection)
                connection.fail(exc)
                continue
            if not connection.out:
                self._dirty.discard(connection)

    def wait_connected(self, connections: Iterable[Connection], timeout_s: float = 15.0) -> None:
        """Pump until every connection has its CONNACK; raise if one is refused or times out."""
        waiting = list(connections)
        deadline = time.monotonic() + timeout_s
        while waiting:
            for connection in waiting:
                if connection.state is State.CLOSED:
                    raise BrokerUnreachable(
                        f"{connection.login.client_id}: {connection.error or 'closed'}"
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnreachable(
                    f"no CONNACK within {timeout_s:.0f} s for {len(waiting)} connections"
                )
            self.pump(min(0.05, remaining))
            waiting = [c for c in waiting if c.state is not State.CONNECTED]

    def unacknowledged(self) -> int:
        """Publications sent but not yet acknowledged, over all connections."""
        return sum(len(c.inflight) for c in self.connections)

    def drain(self, timeout_s: float) -> bool:
        """Pump until every publication is acknowledged; False on time-out."""
        deadline = time.monotonic() + timeout_s
        while self.unacknowledged() or self._dirty:
            if time.monotonic() > deadline:
                return False
            self.pump(0.01)
        return True

    def close_all(self) -> None:
        """Close every connection cleanly (no wills) and the selector."""
        for connection in list(self.connections):
            self.close(connection)
        self._selector.close()
