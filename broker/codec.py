"""MQTT 5 over a byte stream, on the `mqtt5` codec: framing with a size limit, the packets we
send, reason codes as words, and the keep-alive rule both of our clients follow.

`mqtt5` (PyPI, sans-IO, Rust) encodes and decodes single packets. What a stream adds is ours:
packets split over socket reads or packed many to a read, a Maximum Packet Size we announce in
CONNECT and enforce before buffering what a header declares, and one error type for anything
the codec cannot read.

How `mqtt5.read` answers (0.8, checked by tests/broker/test_codec.py): `IndexError` when the
buffer holds less than the packet (also for a header declaring 200 MB: it never allocates for
it), `ValueError` for bytes that are not MQTT 5, and, for a PUBLISH whose topic is not UTF-8,
a Rust panic surfacing as `pyo3_runtime.PanicException`, a BaseException.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from typing import Final, Literal

import mqtt5

from broker.errors import MalformedPacket, PacketTooLarge

MAX_PACKET_SIZE: Final = 1024 * 1024
"""Bytes a packet to us may have at most (announced in CONNECT): a telemetry payload is at
most 64 KiB, so this leaves room for the topic, properties and a generous margin."""

MQTT_LIMIT: Final = 268_435_455  # the largest remaining length MQTT can express

PINGREQ: Final = mqtt5.PingReqPacket().write()
DISCONNECT: Final = mqtt5.DisconnectPacket().write()  # reason 0: normal, the session is kept

SESSION_TAKEN_OVER: Final = 0x8E


def _reason_names() -> dict[int, str]:
    # mqtt5's reason enums are Rust classes: not iterable, so their members are found by name.
    names: dict[int, str] = {}
    kinds: tuple[type, ...] = (
        mqtt5.PubAckReasonCode,
        mqtt5.UnsubAckReasonCode,
        mqtt5.ConnAckReasonCode,
        mqtt5.SubAckReasonCode,
        mqtt5.DisconnectReasonCode,
    )
    for kind in kinds:
        for name in dir(kind):
            if name.isupper():
                names.setdefault(int(getattr(kind, name)), name.lower().replace("_", " "))
    names[0] = "success"
    return names


@functools.cache
def _reasons() -> dict[int, str]:
    return _reason_names()


def reason_text(code: int, said: str | None = None) -> str:
    """A reason code as words, e.g. `0x87 not authorized`, with the broker's own text if any."""
    text = f"0x{code:02x} {_reasons().get(code, 'success' if code < 0x80 else 'error')}"
    return f"{text} ({said})" if said else text


def subscription_failures(reasons: Iterable[int], qos: int) -> list[str]:
    """Why a SUBACK is not what we asked for: a failure code, or a lower QoS than `qos`.

    A grant of QoS 0 where QoS 1 was asked would silently end at-least-once delivery.
    """
    failed = []
    for code in reasons:
        if code >= 0x80:
            failed.append(reason_text(code))
        elif code < qos:
            failed.append(f"granted QoS {code} where QoS {qos} was asked")
    return failed


def _declared_end(data: bytes, pos: int, end: int) -> int | None:
    """Where the packet at `pos` ends, by its fixed header; None if the header is incomplete."""
    value, shift = 0, 0
    for i in range(pos + 1, min(pos + 5, end)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return i + 1 + value
        shift += 7
    if end - pos >= 5:
        raise MalformedPacket("malformed remaining length")
    return None


class Framer:
    """Turns a byte stream into MQTT packets; sans-IO, one per connection.

    `feed` buffers an incomplete packet until the rest has arrived (pieces are joined once, so
    a large payload in many reads costs linear copying). A header declaring more than
    `max_packet_size` bytes raises PacketTooLarge before anything of it is buffered.
    """

    __slots__ = ("_needed", "_pieces", "_size", "max_packet_size")

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._pieces: list[bytes] = []
        self._size = 0
        self._needed = 0

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held."""
        return self._size if self._pieces else 0

    def reset(self) -> None:
        """Forget a partial packet (a new connection starts a new stream)."""
        self._pieces.clear()
        self._size = 0

    def feed(self, chunk: bytes) -> Iterator[mqtt5.Packet]:
        """The packets completed by `chunk`, one at a time; iterate to the end.

        Raises ProtocolBroken on bytes MQTT 5 forbids. A generator, not a list: an mqtt5
        packet carries two Python lists (user properties, subscription ids), so holding a
        socket read's worth of packets at once set the garbage collector off three times as
        often (+0.4 µs per message in the worker); one at a time, each is freed at once.
        """
        pieces = self._pieces
        if pieces:
            pieces.append(chunk)
            self._size += len(chunk)
            if self._size < self._needed:
                return
            data = b"".join(pieces)
            pieces.clear()
        else:
            data = chunk
        view = memoryview(data)
        end = len(data)
        pos = 0
        limit = self.max_packet_size
        read = mqtt5.read
        needed = 0
        while pos < end:
            try:
                packet, size = read(view[pos:])
            except IndexError:
                stop = _declared_end(data, pos, end)
                if stop is None:
                    needed = end - pos + 1
                    break
                if stop - pos > limit:
                    raise PacketTooLarge(
                        f"a packet of {stop - pos} bytes, over our maximum of {limit}"
                    ) from None
                if stop <= end:  # all of it is here and still not readable
                    raise MalformedPacket("packet shorter than its contents") from None
                needed = stop - pos
                break
            except (ValueError, OverflowError) as exc:
                raise MalformedPacket(f"malformed packet: {exc}") from None
            except BaseException as exc:
                # mqtt5 0.8 panics (pyo3's PanicException, a BaseException) on a PUBLISH topic
                # that is not UTF-8; anything else (cancellation, Ctrl-C) passes on.
                if type(exc).__name__ != "PanicException":
                    raise
                raise MalformedPacket("malformed packet: the codec could not read it") from None
            if size > limit:
                raise PacketTooLarge(f"a packet of {size} bytes, over our maximum of {limit}")
            pos += size
            yield packet
            del packet
        if pos < end:
            rest = data[pos:] if pos else data
            pieces.append(rest)
            self._size = len(rest)
            self._needed = needed


class KeepAlive:
    """When to ping the broker and when to give it up, for a keep-alive of `interval_s`.

    We ping once nothing was sent or received for half the interval; a ping unanswered (no
    packet at all) for a whole interval means the broker is gone: a silent broker is noticed
    within 1.5 keep-alives of its last word (plus how often `due` is asked).
    """

    __slots__ = ("_ping_at", "interval_s", "last_received", "last_sent")

    def __init__(self, interval_s: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.interval_s = interval_s
        self.last_sent = now
        self.last_received = now
        self._ping_at: float | None = None

    def received(self, now: float) -> None:
        """Anything arrived: the broker lives."""
        self.last_received = now
        self._ping_at = None

    def due(self, now: float) -> Literal["ping", "dead"] | None:
        """What to do now: send PINGREQ, drop the connection, or nothing."""
        if self.interval_s <= 0:
            return None
        if self._ping_at is not None:
            return "dead" if now - self._ping_at > self.interval_s else None
        half = self.interval_s / 2
        if now - self.last_sent >= half or now - self.last_received >= half:
            self._ping_at = now
            self.last_sent = now
            return "ping"
        return None


def connect_packet(
    client_id: str,
    keepalive_s: int,
    *,
    clean_start: bool = False,
    session_expiry_s: int = 0,
    receive_maximum: int = 65_535,
    max_packet_size: int = MAX_PACKET_SIZE,
    username: str | None = None,
    password: str | None = None,
    will: mqtt5.Will | None = None,
) -> bytes:
    """CONNECT, announcing our Receive Maximum and Maximum Packet Size."""
    return mqtt5.ConnectPacket(
        client_id,
        username=username,
        password=password.encode() if password is not None else None,
        clean_start=clean_start,
        will=will,
        keep_alive=keepalive_s,
        session_expiry_interval=session_expiry_s,
        receive_max=receive_maximum,
        max_packet_size=max_packet_size,
    ).write()


def subscribe_packet(mid: int, filters: Iterable[str], qos: int = 1) -> bytes:
    """SUBSCRIBE to each filter at `qos` (retained messages sent, retain flag not kept)."""
    wanted = mqtt5.QoS(qos)
    return mqtt5.SubscribePacket(
        mid, [mqtt5.TopicFilter(f, max_qos=wanted, retain_as_published=False) for f in filters]
    ).write()


def unsubscribe_packet(mid: int, filters: Iterable[str]) -> bytes:
    """UNSUBSCRIBE from each filter: the broker stops routing their messages to this session."""
    return mqtt5.UnsubscribePacket(mid, list(filters)).write()


def disconnect_packet(reason: int = 0, *, session_expiry_s: int | None = None) -> bytes:
    """DISCONNECT with `reason`; `session_expiry_s` replaces the expiry CONNECT asked for.

    With `session_expiry_s=0` the broker deletes the session once the connection closes, with
    whatever is still queued in it. (MQTT 5 forbids a non-zero value here if CONNECT said 0.)
    """
    if reason == 0 and session_expiry_s is None:
        return DISCONNECT
    return mqtt5.DisconnectPacket(
        reason_code=mqtt5.DisconnectReasonCode(reason), session_expiry_interval=session_expiry_s
    ).write()


@functools.cache
def _puback(mid: int) -> bytes:
    # Cached: at most 65,535 four-byte packets, and a hit costs a fifth of encoding one.
    return mqtt5.PubAckPacket(mid).write()


def puback_packets(mids: Iterable[int]) -> bytes:
    """PUBACKs (reason: success) for these packet ids, as one write."""
    return b"".join(map(_puback, mids))
