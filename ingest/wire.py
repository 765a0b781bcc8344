"""A small MQTT 5 subscriber on asyncio: the packets the ingest worker needs, nothing more.

paho-mqtt costs about 27 µs of CPU per QoS 1 message on our 2-core machine before our code sees
it (a network thread, one `recv` per packet header, a Properties object and a topic-matcher walk
per message, a queued PUBACK per `ack`). This protocol parses whole socket reads at once, hands
PUBLISH packets on as plain tuples and writes many PUBACKs in one `write`. It speaks only the
subscriber's side: CONNECT (persistent session, Receive Maximum), SUBSCRIBE, UNSUBSCRIBE (a worker
that leaves for good), PUBLISH in at QoS 0 or 1, PUBACK out, PINGREQ, DISCONNECT (optionally
ending the session). QoS 2 is never granted (we subscribe at QoS 1), so a
QoS 2 PUBLISH is a protocol violation.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PROP_SESSION_EXPIRY: Final = 0x11
PROP_SERVER_KEEP_ALIVE: Final = 0x13
PROP_REASON_STRING: Final = 0x1F
PROP_RECEIVE_MAXIMUM: Final = 0x21

SESSION_TAKEN_OVER: Final = 0x8E  # DISCONNECT reason: another client connected with our id

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"  # reason 0: normal; the session is kept (its expiry)
_PUBACK: Final = struct.Struct("!BBH")
_U16: Final = struct.Struct("!H")

# Property identifier -> size of its value: fixed bytes, or -1 a string/binary, -2 a varint,
# -3 a string pair. Every property MQTT 5 defines, so any packet's properties can be read.
_PROPERTY_SIZES: Final = {
    0x01: 1, 0x02: 4, 0x03: -1, 0x08: -1, 0x09: -1, 0x0B: -2, 0x11: 4, 0x12: -1, 0x13: 2,
    0x15: -1, 0x16: -1, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2,
    0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: -3, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip

REASONS: Final = {
    0x11: "no subscription existed",  # UNSUBACK: nothing to undo, which is fine
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x93: "receive maximum exceeded",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA0: "maximum connect time",
    0xA2: "wildcard subscriptions not supported",
}


def reason_text(code: int) -> str:
    """A reason code as words, e.g. `0x87 not authorized`."""
    return f"0x{code:02x} {REASONS.get(code, 'success' if code < 0x80 else 'error')}"


class ProtocolBroken(Exception):
    """The broker sent something MQTT 5 does not allow; the connection is dropped."""


def varint(value: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, at: int, end: int) -> tuple[int, int] | None:
    """(value, next offset) of a variable byte integer at `at`, or None if incomplete."""
    value, shift = 0, 0
    for i in range(at, min(at + 4, end)):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    if end - at >= 4:
        raise ProtocolBroken("malformed variable byte integer")
    return None


def _utf8(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return _U16.pack(len(data)) + data


def parse_properties(data: bytes) -> dict[int, int | bytes]:
    """The properties of a property block (without its length); string pairs keep the last."""
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
            parsed = read_varint(data, i, len(data))
            if parsed is None:
                raise ProtocolBroken("truncated property")
            out[ident], i = parsed
        else:
            for _ in range(2 if size == -3 else 1):
                length = int.from_bytes(data[i : i + 2], "big")
                out[ident] = bytes(data[i + 2 : i + 2 + length])
                i += 2 + length
        if i > len(data):
            raise ProtocolBroken("truncated property")
    return out


def _properties_at(body: bytes, at: int) -> tuple[dict[int, int | bytes], int]:
    """Properties starting at `at` (length first); returns them and the offset after them."""
    if at >= len(body):
        return {}, at  # MQTT 5 lets a packet end before its properties when there are none
    parsed = read_varint(body, at, len(body))
    if parsed is None:
        raise ProtocolBroken("truncated property length")
    length, start = parsed
    return parse_properties(body[start : start + length]), start + length


def connect_packet(
    client_id: str,
    keepalive_s: int,
    *,
    session_expiry_s: int,
    receive_maximum: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT without clean start: the broker resumes our session and its unacked messages."""
    flags = 0x00
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
    if password is not None:
        flags |= 0x40
        payload += _utf8(password)
    props = (
        bytes([PROP_SESSION_EXPIRY])
        + session_expiry_s.to_bytes(4, "big")
        + bytes([PROP_RECEIVE_MAXIMUM])
        + receive_maximum.to_bytes(2, "big")
    )
    body = _utf8("MQTT") + bytes([5, flags]) + _U16.pack(keepalive_s)
    body += varint(len(props)) + props + payload
    return bytes([CONNECT << 4]) + varint(len(body)) + body


def subscribe_packet(mid: int, filters: Iterable[str], qos: int = 1) -> bytes:
    """SUBSCRIBE to each filter at `qos` (retain handling: send retained messages)."""
    body = _U16.pack(mid) + b"\x00"
    for topic_filter in filters:
        body += _utf8(topic_filter) + bytes([qos])
    return bytes([SUBSCRIBE << 4 | 0x02]) + varint(len(body)) + body


def unsubscribe_packet(mid: int, filters: Iterable[str]) -> bytes:
    """UNSUBSCRIBE from each filter: the broker stops routing their messages to this session."""
    body = _U16.pack(mid) + b"\x00"  # no properties
    for topic_filter in filters:
        body += _utf8(topic_filter)
    return bytes([UNSUBSCRIBE << 4 | 0x02]) + varint(len(body)) + body


def disconnect_packet(reason: int = 0, *, session_expiry_s: int | None = None) -> bytes:
    """DISCONNECT with `reason`; `session_expiry_s` replaces the expiry CONNECT asked for.

    With `session_expiry_s=0` the broker deletes the session once the connection closes, with
    whatever is still queued in it: only send that when nothing is left there. (MQTT 5 forbids a
    non-zero value here if CONNECT said 0; ours never does.)
    """
    if session_expiry_s is None and reason == 0:
        return DISCONNECT_PACKET
    props = b""
    if session_expiry_s is not None:
        props = bytes([PROP_SESSION_EXPIRY]) + session_expiry_s.to_bytes(4, "big")
    body = bytes([reason]) + varint(len(props)) + props
    return bytes([DISCONNECT << 4]) + varint(len(body)) + body


def puback_packets(mids: Iterable[int]) -> bytes:
    """PUBACKs (reason: success, left implicit) for these packet ids, as one write."""
    pack = _PUBACK.pack
    return b"".join([pack(0x40, 2, mid) for mid in mids])


@dataclass(frozen=True, slots=True)
class Connack:
    """The broker's answer to CONNECT."""

    session_present: bool
    reason: int
    properties: dict[int, int | bytes] = field(default_factory=dict)


class Delivery(NamedTuple):
    """One message as the broker delivered it; `generation` counts connections.

    A named tuple rather than a frozen dataclass: it is made once per message, and a frozen
    dataclass costs about four times as much to construct.
    """

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ns: int


class SubscriberProtocol(asyncio.Protocol):
    """One connection to the broker: parses packets, hands PUBLISHes to `on_messages` in bulk.

    Lifecycle: created by `loop.create_connection`; `connack`, `suback` and `unsuback` resolve as
    the broker answers; `lost` resolves (with the reason, or None) and `on_lost(generation)` is
    called at once when the connection is gone. It never reconnects; the owner makes a new one.
    """

    def __init__(
        self,
        generation: int,
        on_messages: Callable[[list[Delivery]], None],
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        self.generation = generation
        self._on_messages = on_messages
        self._on_lost = on_lost
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[Connack] = loop.create_future()
        self.suback: asyncio.Future[list[int]] = loop.create_future()
        self.unsuback: asyncio.Future[list[int]] = loop.create_future()
        self.lost: asyncio.Future[str | None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        # The start of a packet that has not fully arrived: its pieces, their size, and how
        # many bytes the packet needs. Pieces are joined once, when it is complete, so a huge
        # payload arriving in many reads costs linear, not quadratic, copying.
        self._pieces: list[bytes] = []
        self._pieces_size = 0
        self._needed = 0
        self._suback_mid = -1
        self._unsuback_mid = -1
        self.last_sent = time.monotonic()
        self.last_received = time.monotonic()
        self.disconnect_reason: str | None = None
        self.disconnect_code: int | None = None  # the reason of the broker's DISCONNECT, if any

    # -- asyncio's callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        why = self.disconnect_reason or (repr(exc) if exc is not None else None)
        for waiter in (self.connack, self.suback, self.unsuback):
            if not waiter.done():
                waiter.set_exception(ConnectionError(why or "the broker closed the connection"))
                waiter.exception()  # retrieved here: nobody may be waiting any more
        if not self.lost.done():
            self.lost.set_result(why)
        if self._on_lost is not None:
            self._on_lost(self.generation)

    def data_received(self, data: bytes) -> None:
        try:
            self._parse(data)
        except (ProtocolBroken, IndexError) as exc:
            self.abort(f"protocol error: {exc}")

    # -- sending ---------------------------------------------------------------------------------

    def send(self, packet: bytes) -> None:
        """Write a packet (or several); dropped silently once the connection is gone."""
        if self.transport is not None and packet:
            self.transport.write(packet)
            self.last_sent = time.monotonic()

    def subscribe(self, mid: int, filters: Iterable[str]) -> None:
        """Send SUBSCRIBE; `suback` resolves with the reason codes."""
        self._suback_mid = mid
        self.send(subscribe_packet(mid, filters))

    def unsubscribe(self, mid: int, filters: Iterable[str]) -> None:
        """Send UNSUBSCRIBE; `unsuback` resolves with the reason codes."""
        self._unsuback_mid = mid
        self.send(unsubscribe_packet(mid, filters))

    def abort(self, why: str) -> None:
        """Drop the connection at once (nothing more is read or written)."""
        self.disconnect_reason = self.disconnect_reason or why
        if self.transport is not None:
            self.transport.abort()

    # -- parsing ---------------------------------------------------------------------------------

    def _parse(self, chunk: bytes) -> None:
        if self._pieces:
            self._pieces.append(chunk)
            self._pieces_size += len(chunk)
            if self._pieces_size < self._needed:
                self.last_received = time.monotonic()
                return
            data = b"".join(self._pieces)
            self._pieces.clear()
        else:
            data = chunk
        needed = 0  # bytes the packet at `pos` needs in all, once its length is known
        end = len(data)
        pos = 0
        now_ns = time.time_ns()  # one socket read arrived at one moment
        messages: list[Delivery] = []
        generation = self.generation
        while end - pos >= 2:
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length & 0x80:
                # Telemetry is mostly 128 bytes to 16 KiB long: a two-byte length, read inline.
                if end - pos < 3:
                    break
                second = data[pos + 2]
                if second & 0x80:
                    parsed = read_varint(data, pos + 1, end)
                    if parsed is None:
                        break
                    length, start = parsed
                else:
                    length = (length & 0x7F) | second << 7
                    start = pos + 3
            stop = start + length
            if stop > end:
                needed = stop - pos
                break
            if first >> 4 == PUBLISH:
                qos = (first >> 1) & 3
                if length < 3:
                    raise ProtocolBroken("PUBLISH shorter than its headers")
                at = start + 2 + (data[start] << 8 | data[start + 1])
                if at + (3 if qos else 1) > stop:
                    raise ProtocolBroken("PUBLISH shorter than its headers")
                raw_topic = data[start + 2 : at]
                mid = 0
                if qos:
                    if qos == 2:
                        raise ProtocolBroken("QoS 2 PUBLISH on a QoS 1 subscription")
                    mid = data[at] << 8 | data[at + 1]
                    at += 2
                props = data[at]
                if props & 0x80:
                    parsed = read_varint(data, at, stop)
                    if parsed is None:
                        raise ProtocolBroken("truncated PUBLISH properties")
                    props, at = parsed
                    at += props
                else:
                    at += 1 + props
                if at > stop:
                    raise ProtocolBroken("PUBLISH shorter than its headers")
                try:
                    topic = raw_topic.decode()
                except UnicodeDecodeError:
                    topic = raw_topic.decode("utf-8", "replace")  # the decoder rejects it
                messages.append(Delivery(topic, data[at:stop], mid, qos, generation, now_ns))
            else:
                self._control(first, data[start:stop])
            pos = stop
        if pos < end:
            rest = data[pos:]
            self._pieces.append(rest)
            self._pieces_size = len(rest)
            self._needed = max(needed, len(rest) + 1)
        self.last_received = time.monotonic()
        if messages:
            self._on_messages(messages)

    def _control(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == CONNACK:
            if len(body) < 2:
                raise ProtocolBroken("short CONNACK")
            props, _ = _properties_at(body, 2)
            if not self.connack.done():
                self.connack.set_result(Connack(bool(body[0] & 1), body[1], props))
        elif kind == SUBACK:
            if len(body) < 2:
                raise ProtocolBroken("short SUBACK")
            mid = body[0] << 8 | body[1]
            _props, at = _properties_at(body, 2)
            if mid == self._suback_mid and not self.suback.done():
                self.suback.set_result(list(body[at:]))
        elif kind == UNSUBACK:
            if len(body) < 2:
                raise ProtocolBroken("short UNSUBACK")
            mid = body[0] << 8 | body[1]
            _props, at = _properties_at(body, 2)
            if mid == self._unsuback_mid and not self.unsuback.done():
                self.unsuback.set_result(list(body[at:]))
        elif kind == PINGRESP:
            pass
        elif kind == DISCONNECT:
            code = body[0] if body else 0
            self.disconnect_code = code
            props, _ = _properties_at(body, 1)
            text = reason_text(code)
            said = props.get(PROP_REASON_STRING)
            if isinstance(said, bytes):
                text += f" ({said.decode('utf-8', 'replace')})"
            self.disconnect_reason = f"the broker disconnected us: {text}"
        else:
            raise ProtocolBroken(f"unexpected packet type {kind}")
