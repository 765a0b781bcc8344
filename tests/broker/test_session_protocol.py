"""The subscriber's connection protocol, fed bytes by hand: framing, splits, what it refuses.

(Moved from tests/ingest/test_wire.py when the codec moved to `broker/`.)
"""

from __future__ import annotations

import asyncio

import mqtt5
import pytest

from broker.codec import SESSION_TAKEN_OVER, unsubscribe_packet
from broker.errors import BrokerUnreachable
from broker.session import Delivery, SubscriberProtocol
from tests.broker.fake import varint

pytestmark = pytest.mark.anyio
QOS1 = mqtt5.QoS.AT_LEAST_ONCE


class FakeTransport(asyncio.Transport):
    """Records writes; `abort` and `close` end the connection like a socket would."""

    def __init__(self, protocol: SubscriberProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written: list[bytes] = []
        self.aborted = False
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True
        self.protocol.connection_lost(None)

    def close(self) -> None:
        self.closed = True
        self.protocol.connection_lost(None)


def publish(topic: str, payload: bytes, mid: int = 0, expiry_s: int | None = None) -> bytes:
    qos = QOS1 if mid else mqtt5.QoS.AT_MOST_ONCE
    return mqtt5.PublishPacket(
        topic, payload, qos=qos, packet_id=mid or None, message_expiry_interval=expiry_s
    ).write()


def connected() -> tuple[SubscriberProtocol, FakeTransport, list[Delivery]]:
    got: list[Delivery] = []
    protocol = SubscriberProtocol(7, got.extend, max_packet_size=4 << 20)
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport, got


def fields(deliveries: list[Delivery]) -> list[tuple[str, bytes, int, int, int]]:
    return [(d.topic, d.payload, d.mid, d.qos, d.generation) for d in deliveries]


@pytest.mark.parametrize("size", [10, 200, 20_000, 2_100_000])  # 1-, 2-, 3- and 4-byte lengths
async def test_packets_split_anywhere_are_parsed_the_same(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    stream = (
        publish("lantaarn/v1/t/d/telemetry", payload, mid=1)
        + publish("a/b", b"")
        + publish("c", b"{}", mid=65535, expiry_s=5)  # properties are skipped
    )
    whole, _, got_whole = connected()
    whole.data_received(stream)
    steps = (1, 7, 4096) if size < 100_000 else (65_536,)
    for step in steps:
        protocol, transport, got = connected()
        for at in range(0, len(stream), step):
            protocol.data_received(stream[at : at + step])
        assert not transport.aborted
        assert not transport.closed
        assert fields(got) == fields(got_whole)
    assert fields(got_whole) == [
        ("lantaarn/v1/t/d/telemetry", payload, 1, 1, 7),
        ("a/b", b"", 0, 0, 7),
        ("c", b"{}", 65535, 1, 7),
    ]
    # Plain ints: mqtt5's QoS objects are all truthy, and `if d.qos` decides on a PUBACK.
    assert [type(d.qos) for d in got_whole] == [int, int, int]
    assert [bool(d.qos) for d in got_whole] == [True, False, True]


async def test_a_stream_cut_at_every_byte_is_parsed_the_same() -> None:
    stream = publish("a/b", b"x" * 300, 1) + publish("c", b"{}", 2)
    for cut in range(len(stream) + 1):
        protocol, transport, got = connected()
        protocol.data_received(stream[:cut])
        protocol.data_received(stream[cut:])
        assert [d.mid for d in got] == [1, 2]
        assert not transport.closed


async def test_one_read_is_one_receive_time() -> None:
    protocol, _, got = connected()
    protocol.data_received(publish("a", b"1", 1) + publish("b", b"2", 2))
    assert len(got) == 2
    assert got[0].received_ns == got[1].received_ns > 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (bytes([0x34]) + varint(6) + b"\x00\x01a\x00\x05\x00", 0x82),  # QoS 2 is never granted
        (bytes([0x32]) + varint(4) + b"\x00\x09ab", 0x81),  # the topic runs past the packet
        (bytes([0x32]) + varint(2) + b"\x00\x00", 0x81),  # no room for a packet id
        (b"\x30\xff\xff\xff\xff\x01", 0x81),  # a length of more than four bytes
        (b"\x32\x08\x00\x02\xff\xfe\x00\x01\x00x", 0x81),  # a topic that is not UTF-8
        (b"\x50\x02\x00\x01", 0x82),  # PUBREC: we never publish
    ],
)
async def test_what_mqtt_forbids_gets_a_reason_then_the_connection_closes(
    packet: bytes, reason: int
) -> None:
    protocol, transport, got = connected()
    protocol.data_received(packet)
    assert got == []
    disconnect, _ = mqtt5.read(memoryview(transport.written[-1]))
    assert isinstance(disconnect, mqtt5.DisconnectPacket)
    assert disconnect.reason_code == reason
    assert transport.closed  # closed after the DISCONNECT, not aborted before it
    assert protocol.lost.done()
    assert (protocol.lost.result() or "").startswith("protocol error")


async def test_connack_suback_and_disconnect_are_understood() -> None:
    protocol, transport, _ = connected()
    protocol.data_received(mqtt5.ConnAckPacket(session_present=True, server_keep_alive=12).write())
    connack = protocol.connack.result()
    assert connack.session_present
    assert connack.reason_code == 0
    assert connack.server_keep_alive == 12
    protocol.subscribe(4, ["$share/g/a/+", "b"])
    assert transport.written[-1].startswith(b"\x82")
    protocol.data_received(b"\x90\x05\x00\x04\x00\x01\x8f")
    assert protocol.suback.result() == [1, 0x8F]
    reason = b"\x1f\x00\x04gone"
    protocol.data_received(b"\xe0" + varint(2 + len(reason)) + b"\x8e" + varint(7) + reason)
    assert protocol.disconnect_reason == (
        "the broker disconnected us: 0x8e session taken over (gone)"
    )


async def test_a_lost_connection_fails_whoever_waits_for_an_answer() -> None:
    protocol, transport, _ = connected()
    transport.close()
    with pytest.raises(BrokerUnreachable):
        protocol.connack.result()
    protocol.send(b"\xc0\x00")  # after the loss: dropped, not raised
    assert transport.written == []


async def test_unsuback_resolves_with_its_reason_codes() -> None:
    protocol, transport, _ = connected()
    protocol.unsubscribe(5, ["$share/g/a/+", "b"])
    assert transport.written[-1] == unsubscribe_packet(5, ["$share/g/a/+", "b"])
    protocol.data_received(b"\xb0\x05\x00\x04\x00\x00\x11")  # another packet id: ignored
    assert not protocol.unsuback.done()
    protocol.data_received(b"\xb0\x05\x00\x05\x00\x00\x11")  # success, no subscription existed
    assert protocol.unsuback.result() == [0x00, 0x11]
    assert not transport.aborted


async def test_a_lost_connection_fails_an_unsubscribe_and_keeps_the_brokers_reason() -> None:
    protocol, transport, _ = connected()
    protocol.unsubscribe(1, ["a"])
    protocol.data_received(b"\xe0\x02" + bytes([SESSION_TAKEN_OVER]) + b"\x00")
    assert protocol.disconnect_code == SESSION_TAKEN_OVER
    transport.close()
    with pytest.raises(BrokerUnreachable, match="session taken over"):
        protocol.unsuback.result()
