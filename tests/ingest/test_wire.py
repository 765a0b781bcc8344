"""The MQTT 5 subscriber protocol, fed bytes by hand: framing, splits, and what it refuses."""

from __future__ import annotations

import asyncio
import struct

import pytest
from ingest.wire import (
    DISCONNECT_PACKET,
    PROP_SERVER_KEEP_ALIVE,
    SESSION_TAKEN_OVER,
    Delivery,
    SubscriberProtocol,
    connect_packet,
    disconnect_packet,
    puback_packets,
    unsubscribe_packet,
    varint,
)


class FakeTransport(asyncio.Transport):
    """Records writes; `abort` and `close` end the connection like a socket would."""

    def __init__(self, protocol: SubscriberProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True
        self.protocol.connection_lost(None)

    def close(self) -> None:
        self.protocol.connection_lost(None)


def publish(topic: bytes, payload: bytes, mid: int = 0, qos: int = 1, props: bytes = b"") -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    body += varint(len(props)) + props + payload
    return bytes([0x30 | qos << 1]) + varint(len(body)) + body


def connected() -> tuple[SubscriberProtocol, FakeTransport, list[Delivery]]:
    got: list[Delivery] = []
    protocol = SubscriberProtocol(7, got.extend)
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport, got


def fields(deliveries: list[Delivery]) -> list[tuple[str, bytes, int, int, int]]:
    return [(d.topic, d.payload, d.mid, d.qos, d.generation) for d in deliveries]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [10, 200, 20_000, 2_100_000])  # 1-, 2-, 3- and 4-byte lengths
async def test_packets_split_anywhere_are_parsed_the_same(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    stream = (
        publish(b"lantaarn/v1/t/d/telemetry", payload, mid=1)
        + publish(b"a/b", b"", qos=0)
        + publish(b"c", b"{}", mid=65535, props=b"\x01\x01\x0b\x05")  # properties are skipped
    )
    whole, _, got_whole = connected()
    whole.data_received(stream)
    for step in (1, 7, 4096):
        protocol, transport, got = connected()
        for at in range(0, len(stream), step if size < 100_000 else 65_536):
            protocol.data_received(stream[at : at + (step if size < 100_000 else 65_536)])
        assert not transport.aborted
        assert fields(got) == fields(got_whole)
    assert fields(got_whole) == [
        ("lantaarn/v1/t/d/telemetry", payload, 1, 1, 7),
        ("a/b", b"", 0, 0, 7),
        ("c", b"{}", 65535, 1, 7),
    ]


@pytest.mark.anyio
async def test_one_read_is_one_receive_time() -> None:
    protocol, _, got = connected()
    protocol.data_received(publish(b"a", b"1", 1) + publish(b"b", b"2", 2))
    assert len(got) == 2
    assert got[0].received_ns == got[1].received_ns > 0


@pytest.mark.anyio
async def test_a_topic_that_is_not_utf8_is_passed_on_not_raised() -> None:
    protocol, transport, got = connected()
    protocol.data_received(publish(b"lantaarn/\xff/x", b"{}", 3))
    assert not transport.aborted
    assert got[0].topic == "lantaarn/\ufffd/x"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "packet",
    [
        bytes([0x34]) + varint(6) + b"\x00\x01a\x00\x05\x00",  # QoS 2 is never granted
        bytes([0x32]) + varint(4) + b"\x00\x09ab",  # the topic runs past the packet
        bytes([0x32]) + varint(2) + b"\x00\x00",  # no room for a packet id
        b"\x30\xff\xff\xff\xff\x01",  # a length of more than four bytes
        b"\x50\x02\x00\x01",  # PUBREC: we never publish
    ],
)
async def test_what_mqtt_forbids_drops_the_connection(packet: bytes) -> None:
    protocol, transport, got = connected()
    protocol.data_received(packet)
    assert transport.aborted
    assert got == []
    assert protocol.lost.done()
    assert (protocol.lost.result() or "").startswith("protocol error")


@pytest.mark.anyio
async def test_connack_suback_and_disconnect_are_understood() -> None:
    protocol, transport, _ = connected()
    props = bytes([PROP_SERVER_KEEP_ALIVE]) + struct.pack("!H", 12)
    protocol.data_received(b"\x20" + varint(3 + len(props)) + b"\x01\x00" + varint(3) + props)
    connack = protocol.connack.result()
    assert connack.session_present
    assert connack.reason == 0
    assert connack.properties == {PROP_SERVER_KEEP_ALIVE: 12}
    protocol.subscribe(4, ["$share/g/a/+", "b"])
    assert transport.written[-1].startswith(b"\x82")
    protocol.data_received(b"\x90\x05\x00\x04\x00\x01\x8f")
    assert protocol.suback.result() == [1, 0x8F]
    reason = b"\x1f\x00\x04gone"
    protocol.data_received(b"\xe0" + varint(2 + len(reason)) + b"\x8e" + varint(7) + reason)
    assert protocol.disconnect_reason == (
        "the broker disconnected us: 0x8e session taken over (gone)"
    )


@pytest.mark.anyio
async def test_a_lost_connection_fails_whoever_waits_for_an_answer() -> None:
    protocol, transport, _ = connected()
    transport.close()
    with pytest.raises(ConnectionError):
        protocol.connack.result()
    protocol.send(b"\xc0\x00")  # after the loss: dropped, not raised
    assert transport.written == []


def test_many_acks_are_one_write_of_four_bytes_each() -> None:
    assert puback_packets([1, 258, 65535]) == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"
    assert puback_packets([]) == b""


def test_connect_resumes_the_session_and_states_our_limits() -> None:
    packet = connect_packet(
        "ingest-3", 30, session_expiry_s=86400, receive_maximum=500, username="u", password="p"
    )
    assert packet[0] == 0x10
    body = packet[2:]
    assert body[:7] == b"\x00\x04MQTT\x05"
    flags = body[7]
    assert not flags & 0x02  # no clean start: unacknowledged messages come back
    assert flags & 0xC0 == 0xC0  # user name and password
    assert b"\x11\x00\x01\x51\x80" in body  # session expiry 86,400 s
    assert b"\x21\x01\xf4" in body  # receive maximum 500
    assert body.endswith(b"\x00\x08ingest-3\x00\x01u\x00\x01p")


def test_unsubscribe_names_each_filter_without_options() -> None:
    packet = unsubscribe_packet(9, ["$share/g/a/+", "b"])
    # Fixed header 0xA2 (the reserved flags MQTT demands), packet id, no properties, filters.
    assert packet == b"\xa2\x14\x00\x09\x00" + b"\x00\x0c$share/g/a/+" + b"\x00\x01b"


def test_disconnect_can_end_the_session() -> None:
    assert disconnect_packet() == DISCONNECT_PACKET == b"\xe0\x00"
    # Reason 0, then properties: Session Expiry Interval (0x11) = 0, four bytes.
    assert disconnect_packet(session_expiry_s=0) == b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"
    assert disconnect_packet(0x04) == b"\xe0\x02\x04\x00"


@pytest.mark.anyio
async def test_unsuback_resolves_with_its_reason_codes() -> None:
    protocol, transport, _ = connected()
    protocol.unsubscribe(5, ["$share/g/a/+", "b"])
    assert transport.written[-1] == unsubscribe_packet(5, ["$share/g/a/+", "b"])
    protocol.data_received(b"\xb0\x05\x00\x04\x00\x00\x11")  # another packet id: ignored
    assert not protocol.unsuback.done()
    protocol.data_received(b"\xb0\x05\x00\x05\x00\x00\x11")  # success, no subscription existed
    assert protocol.unsuback.result() == [0x00, 0x11]
    assert not transport.aborted


@pytest.mark.anyio
async def test_a_lost_connection_fails_an_unsubscribe_and_keeps_the_brokers_reason() -> None:
    protocol, transport, _ = connected()
    protocol.unsubscribe(1, ["a"])
    protocol.data_received(b"\xe0\x02" + bytes([SESSION_TAKEN_OVER]) + b"\x00")
    assert protocol.disconnect_code == SESSION_TAKEN_OVER
    transport.close()
    with pytest.raises(ConnectionError, match="session taken over"):
        protocol.unsuback.result()
