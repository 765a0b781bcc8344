"""Many publishing MQTT 5 connections driven by one selector: what simulated devices need.

A device only publishes: CONNECT (credentials, last will), PUBLISH at QoS 0 or 1, count
PUBACKs, keep alive, DISCONNECT (optionally with the will). A connection never holds more
unacknowledged publications than the broker's Receive Maximum, so the client-side queue is
bounded by what the broker allows (MQTT 5 flow control). Sockets are non-blocking and
`Transport` drives thousands of them with one selector (epoll), optionally over TLS.

Packets are encoded and framed by `broker.codec` (the `mqtt5` codec), as in the ingest session.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import selectors
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import mqtt5

from broker.codec import (
    MAX_PACKET_SIZE,
    MQTT_LIMIT,
    PINGREQ,
    Framer,
    KeepAlive,
    connect_packet,
    disconnect_packet,
    reason_text,
)
from broker.errors import BrokerRefused, BrokerUnreachable, ProtocolBroken

log = logging.getLogger(__name__)

_WRITE_CHUNK: Final = 256 * 1024  # bytes handed to send() at most at once
_DUP: Final = 0x08  # PUBLISH fixed-header flag: a retransmission
_QOS: Final = (mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE)
_PUBACK = mqtt5.PubAckPacket
_TOO_LARGE: Final = 0x95


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
    CONNECTING = "connecting"  # TCP (and TLS) connecting or waiting for CONNACK
    CONNECTED = "connected"
    CLOSED = "closed"


class Connection:
    """One MQTT 5 connection that publishes; driven by a `Transport` (not thread-safe).

    Lifecycle: `open()` starts connecting; the transport reads and writes until `connected`;
    `publish()` while `can_publish`; `close()` says goodbye (with or without the will).
    Publications not yet acknowledged when a connection breaks are kept and sent again, with
    the DUP flag, after `open()` is called again. A broker that stops answering pings within
    the keep-alive, or sends what MQTT 5 forbids, breaks the connection.
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
        tls: ssl.SSLContext | None = None,
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        self.host = host
        self.port = port
        self.login = login
        self.will = will
        self.keepalive_s = keepalive_s
        self.max_inflight = max_inflight
        self.tls = tls
        self.max_packet_size = max_packet_size  # bytes the broker may send us
        self.state = State.NEW
        self.window = 0  # publications the broker lets us have unacknowledged
        self.max_packet = MQTT_LIMIT  # bytes the broker takes (its CONNACK may say less)
        self.sock: socket.socket | None = None
        self.out = bytearray()
        self._framer = Framer(max_packet_size)
        self._handshaking = False
        self.alive = KeepAlive(keepalive_s)
        self.inflight: dict[int, bytes] = {}  # packet id -> packet, until PUBACK
        self._next_id = 1
        self.acked = 0
        self.refused: dict[int, int] = {}  # PUBACK reason code >= 0x80 -> count
        self.error: BaseException | None = None

    @property
    def connected(self) -> bool:
        """Whether the broker accepted us and the connection stands."""
        return self.state is State.CONNECTED

    @property
    def can_publish(self) -> bool:
        """Whether a QoS 1 publication may go out now without exceeding the broker's window."""
        return self.state is State.CONNECTED and len(self.inflight) < self.window

    @property
    def last_write(self) -> float:
        """When we last sent anything (monotonic seconds)."""
        return self.alive.last_sent

    def open(self) -> None:
        """Start connecting (non-blocking); CONNECT goes out as soon as TCP (and TLS) is up."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            infos = socket.getaddrinfo(self.host, self.port, family, socket.SOCK_STREAM)
        except OSError:
            infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(
                sock, server_hostname=self.host, do_handshake_on_connect=False
            )
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            raise BrokerUnreachable(f"cannot connect to {self.host}:{self.port}: {code}")
        self.sock = sock
        self._handshaking = self.tls is not None
        self.state = State.CONNECTING
        self._framer.reset()
        self.alive = KeepAlive(self.keepalive_s)
        will = self.will
        # Whatever was unacknowledged goes again, after the CONNACK, marked as a duplicate.
        self.out = bytearray(
            connect_packet(
                self.login.client_id,
                self.keepalive_s,
                clean_start=True,  # a device that returns resends its backlog itself
                receive_maximum=65_535,
                max_packet_size=self.max_packet_size,
                username=self.login.username,
                password=self.login.password,
                will=None
                if will is None
                else mqtt5.Will(
                    will.topic, payload=will.payload, qos=_QOS[will.qos], retain=will.retain
                ),
            )
        )

    def publish(self, topic: bytes, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Queue a publication; returns its packet id (0 for QoS 0). Check `can_publish` first.

        A publication larger than the broker's Maximum Packet Size is not sent (MQTT 5 forbids
        it) and counted in `refused` under 0x95.
        """
        if self.state is not State.CONNECTED:
            raise BrokerUnreachable(f"{self.login.client_id} is not connected")
        packet_id = self._next_id if qos else 0
        packet = mqtt5.PublishPacket(
            topic.decode(), payload, qos=_QOS[qos], retain=retain, packet_id=packet_id or None
        ).write()
        if len(packet) > self.max_packet:
            self.refused[_TOO_LARGE] = self.refused.get(_TOO_LARGE, 0) + 1
            return 0
        if qos:
            self._next_id = packet_id % 65_535 + 1
            self.inflight[packet_id] = packet
        self.out += packet
        return packet_id

    def close(self, *, with_will: bool = False) -> None:
        """Say goodbye: DISCONNECT (0x04 asks the broker to publish our will), then close."""
        if self.sock is None:
            self.state = State.CLOSED
            return
        if self.state is State.CONNECTED:
            self.out += disconnect_packet(0x04 if with_will else 0x00)
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
        """The connection broke: keep unacknowledged publications for the next `open()`.

        When the broker broke the protocol we tell it why first (DISCONNECT with the reason
        code, best effort: the socket may not take it).
        """
        log.warning("%s: connection lost: %s", self.login.client_id, error)
        if isinstance(error, ProtocolBroken) and self.sock is not None and not self._handshaking:
            with contextlib.suppress(OSError):
                self.sock.send(disconnect_packet(error.reason_code))
        self.error = error
        self._drop()
        self.state = State.CLOSED
        self.window = 0

    def _handshake(self) -> bool:
        """Advance the TLS handshake; True once it is done."""
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except ssl.SSLError as exc:
            raise BrokerUnreachable(f"TLS with {self.host}:{self.port} failed: {exc}") from exc
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise BrokerUnreachable(f"cannot connect to the broker: {exc}") from exc
            failed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if failed:
                raise BrokerUnreachable(
                    f"cannot connect to {self.host}:{self.port}: {errno.errorcode.get(failed)}"
                ) from exc
            return False  # TCP is still connecting
        self._handshaking = False
        return True

    def write(self) -> None:
        """Send what is buffered, as far as the socket takes it."""
        if not self.out or self.sock is None:
            return
        if self._handshaking and not self._handshake():
            return
        try:
            sent = self.sock.send(memoryview(self.out)[:_WRITE_CHUNK])
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except OSError as exc:
            raise BrokerUnreachable(f"sending to the broker failed: {exc}") from exc
        del self.out[:sent]
        self.alive.last_sent = time.monotonic()

    def _receive(self) -> bytes:
        sock = self.sock
        assert sock is not None
        try:
            data = sock.recv(262_144)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return b""
        except OSError as exc:
            raise BrokerUnreachable(f"reading from the broker failed: {exc}") from exc
        if not data:
            raise BrokerUnreachable("the broker closed the connection")
        if isinstance(sock, ssl.SSLSocket):
            # A TLS recv returns one record, and Mosquitto writes a record per packet: read on
            # until the socket is empty, or each 4-byte PUBACK costs a select and a recv.
            parts = [data]
            size = len(data)
            while size < 262_144:
                try:
                    more = sock.recv(262_144)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                except OSError as exc:
                    raise BrokerUnreachable(f"reading from the broker failed: {exc}") from exc
                if not more:
                    break  # closed: the next read says so, after these packets are handled
                parts.append(more)
                size += len(more)
            data = b"".join(parts)
        return data

    def read(self) -> None:
        """Take what the broker sent and handle every complete packet."""
        if self.sock is None:
            return
        if self._handshaking and not self._handshake():
            return
        data = self._receive()
        if not data:
            return
        self.alive.received(time.monotonic())
        inflight = self.inflight
        for packet in self._framer.feed(data):
            if type(packet) is _PUBACK:
                if inflight.pop(packet.packet_id, None) is not None:
                    self.acked += 1
                code = int(packet.reason_code)
                if code >= 0x80:
                    self.refused[code] = self.refused.get(code, 0) + 1
            elif isinstance(packet, mqtt5.ConnAckPacket):
                self._connack(packet)
            elif isinstance(packet, mqtt5.DisconnectPacket):
                raise BrokerUnreachable(
                    "the broker disconnected us: "
                    + reason_text(int(packet.reason_code), packet.reason_str)
                )
            elif not isinstance(packet, mqtt5.PingRespPacket):
                raise ProtocolBroken(f"unexpected {type(packet).__name__} from the broker", 0x82)

    def _connack(self, connack: mqtt5.ConnAckPacket) -> None:
        code = int(connack.reason_code)
        if code >= 0x80:
            raise BrokerRefused(
                f"the broker refused {self.login.client_id!r}: "
                f"{reason_text(code, connack.reason_str)}",
                code,
            )
        self.window = min(connack.receive_max, self.max_inflight)
        self.max_packet = connack.max_packet_size or MQTT_LIMIT
        if connack.server_keep_alive:
            self.alive.interval_s = connack.server_keep_alive  # the server's value binds us
        self.state = State.CONNECTED
        for packet in self.inflight.values():
            # Still unacknowledged from before: again, with DUP set, as MQTT requires.
            self.out += bytes([packet[0] | _DUP]) + packet[1:]

    def keepalive(self, now: float) -> None:
        """Ping when quiet for half the keep-alive; raise if a ping went unanswered."""
        if self.state is not State.CONNECTED:
            return
        todo = self.alive.due(now)
        if todo == "ping":
            self.out += PINGREQ
        elif todo == "dead":
            raise BrokerUnreachable(
                f"no answer from the broker within {self.alive.interval_s:.0f} s of a ping"
            )


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

    def _fail(self, connection: Connection, error: BaseException) -> None:
        self._unregister(connection)
        connection.fail(error)

    def pump(self, timeout_s: float = 0.0) -> None:
        """Write what is queued, wait up to `timeout_s` for acknowledgements, read them."""
        self._write_dirty()
        if self._dirty:
            timeout_s = min(timeout_s, 0.001)  # a full socket buffer: come back soon
        for key, _events in self._selector.select(timeout_s):
            connection: Connection = key.data
            try:
                connection.read()
            except (BrokerUnreachable, ProtocolBroken, BrokerRefused) as exc:
                self._fail(connection, exc)
                continue
            if connection.out:
                self._dirty.add(connection)  # a CONNACK released what waited
        now = time.monotonic()
        if now - self._last_keepalive > 0.5:
            self._last_keepalive = now
            for connection in self.connections:
                try:
                    connection.keepalive(now)
                except BrokerUnreachable as exc:
                    self._fail(connection, exc)
                    continue
                if connection.out:
                    self._dirty.add(connection)

    def _write_dirty(self) -> None:
        if not self._dirty:
            return
        for connection in list(self._dirty):
            try:
                connection.write()
            except BrokerUnreachable as exc:
                self._fail(connection, exc)
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
                    if isinstance(connection.error, BrokerRefused):
                        raise connection.error
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


__all__ = ["Connection", "Login", "State", "Transport", "Will"]
