"""The codec layer: how `mqtt5` answers, framing over a stream, the packets we send, keep-alive."""

from __future__ import annotations

import contextlib

import mqtt5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec import (
    DISCONNECT,
    Framer,
    KeepAlive,
    connect_packet,
    disconnect_packet,
    puback_packets,
    reason_text,
    subscribe_packet,
    subscription_failures,
    unsubscribe_packet,
)
from broker.errors import MalformedPacket, PacketTooLarge, ProtocolBroken
from tests.broker.fake import varint

QOS1 = mqtt5.QoS.AT_LEAST_ONCE
# mqtt5 0.8 reports the UnicodeDecodeError behind its panic as "unraisable" too.
PANIC_NOISE = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def publish(topic: str, payload: bytes, mid: int | None = None) -> bytes:
    qos = QOS1 if mid else mqtt5.QoS.AT_MOST_ONCE
    return mqtt5.PublishPacket(topic, payload, qos=qos, packet_id=mid).write()


STREAM = (
    mqtt5.ConnAckPacket(session_present=True, server_keep_alive=12).write()
    + publish("lantaarn/v1/t/d/telemetry", bytes(range(256)) * 3, mid=1)
    + publish("a/b", b"", None)
    + mqtt5.PublishPacket("c", b"{}", qos=QOS1, packet_id=65535, message_expiry_interval=5).write()
    + mqtt5.PubAckPacket(9).write()
    + mqtt5.PingRespPacket().write()
    + mqtt5.DisconnectPacket(
        reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER, reason_str="gone"
    ).write()
)


# -- what mqtt5 0.8 does, which the framer relies on ----------------------------------------------


def test_mqtt5_says_index_error_for_too_few_bytes_and_value_error_for_wrong_ones() -> None:
    packet = publish("a/b", b"xyz", 3)
    for end in range(len(packet)):
        with pytest.raises(IndexError):
            mqtt5.read(memoryview(packet[:end]))
    with pytest.raises(ValueError, match="remaining length"):
        mqtt5.read(memoryview(b"\x20\x01\x00"))  # a CONNACK too short for its fields
    with pytest.raises(IndexError):  # a header declaring 200 MB: it just wants more
        mqtt5.read(memoryview(b"\x30" + varint(200_000_000) + b"\x00\x01a"))


@PANIC_NOISE
def test_mqtt5_panics_on_a_topic_that_is_not_utf8() -> None:
    # A BaseException, not an Exception: the framer must catch it by name (see broker.codec).
    with pytest.raises(BaseException, match="PyObject pointer is null") as raised:
        mqtt5.read(memoryview(b"\x32\x08\x00\x02\xff\xfe\x00\x01\x00x"))
    assert type(raised.value).__name__ == "PanicException"


# -- framing --------------------------------------------------------------------------------------


def kinds(packets: list[mqtt5.Packet]) -> list[str]:
    return [repr(p) for p in packets]


def test_a_stream_split_at_every_byte_gives_the_same_packets() -> None:
    whole = kinds(list(Framer().feed(STREAM)))
    assert len(whole) == 7
    for cut in range(len(STREAM) + 1):
        framer = Framer()
        assert kinds(list(framer.feed(STREAM[:cut])) + list(framer.feed(STREAM[cut:]))) == whole
        assert framer.buffered == 0


def test_a_stream_fed_byte_by_byte_gives_the_same_packets() -> None:
    framer = Framer()
    got: list[mqtt5.Packet] = []
    for at in range(len(STREAM)):
        got += framer.feed(STREAM[at : at + 1])
    assert kinds(got) == kinds(list(Framer().feed(STREAM)))


@pytest.mark.parametrize("size", [200, 20_000, 2_100_000])  # 2-, 3- and 4-byte lengths
def test_a_large_packet_in_many_reads_is_read_once(size: int) -> None:
    packet = publish("t", b"x" * size, 1)
    framer = Framer(max_packet_size=4 << 20)
    got: list[mqtt5.Packet] = []
    for at in range(0, len(packet), 65_536):
        got += framer.feed(packet[at : at + 65_536])
    assert len(got) == 1
    assert isinstance(got[0], mqtt5.PublishPacket)
    assert got[0].payload == b"x" * size


def test_a_declared_200_mb_packet_is_refused_before_it_is_buffered() -> None:
    framer = Framer(max_packet_size=1 << 20)
    assert list(framer.feed(b"\x30" + varint(200_000_000)[:2])) == []  # the header is incomplete
    with pytest.raises(PacketTooLarge, match="over our maximum") as raised:
        list(framer.feed(varint(200_000_000)[2:] + b"\x00\x01a" + b"x" * 1000))
    assert raised.value.reason_code == 0x95
    assert framer.buffered < 10


def test_a_complete_packet_over_the_maximum_is_refused() -> None:
    with pytest.raises(PacketTooLarge):
        list(Framer(max_packet_size=100).feed(publish("t", b"x" * 200, 1)))


@PANIC_NOISE
@pytest.mark.parametrize(
    "data",
    [
        b"\x20\x01\x00",  # a short CONNACK
        b"\x20\x05\x00\x00\x02\x11\x00",  # a property cut short (was read as {0x11: 0})
        b"\x32\x04\x00\x09ab",  # the topic runs past the packet
        b"\x32\x02\x00\x00",  # no room for a packet id
        b"\x30\xff\xff\xff\xff\x01",  # a length of more than four bytes
        b"\x00\x00",  # packet type 0 does not exist
        b"\x32\x08\x00\x02\xff\xfe\x00\x01\x00x",  # a topic that is not UTF-8
    ],
)
def test_what_mqtt_forbids_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedPacket) as raised:
        list(Framer().feed(data))
    assert raised.value.reason_code == 0x81


@pytest.mark.slow
@PANIC_NOISE
@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([STREAM[:n] for n in range(0, len(STREAM), 7)]),
            st.builds(
                lambda head, body: bytes([head]) + varint(len(body)) + body,
                st.integers(0, 255),
                st.binary(max_size=30),
            ),
        ),
        max_size=6,
    )
)
def test_arbitrary_bytes_raise_nothing_but_our_error(chunks: list[bytes]) -> None:
    framer = Framer(max_packet_size=10_000)
    try:
        for chunk in chunks:
            for packet in framer.feed(chunk):
                assert isinstance(packet, mqtt5.ConnAckPacket | mqtt5.PublishPacket | object)
    except ProtocolBroken:
        pass


@PANIC_NOISE
@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.binary(max_size=40))
def test_any_topic_bytes_are_read_or_refused(topic: bytes, payload: bytes) -> None:
    body = len(topic).to_bytes(2, "big") + topic + b"\x00\x07\x00" + payload
    with contextlib.suppress(ProtocolBroken):
        list(Framer().feed(b"\x32" + varint(len(body)) + body))


# -- what we send ---------------------------------------------------------------------------------


def test_connect_resumes_the_session_and_states_our_limits() -> None:
    packet = connect_packet(
        "ingest-3",
        30,
        session_expiry_s=86400,
        receive_maximum=500,
        max_packet_size=1 << 20,
        username="u",
        password="p",
    )
    connect, size = mqtt5.read(memoryview(packet))
    assert size == len(packet)
    assert isinstance(connect, mqtt5.ConnectPacket)
    assert not connect.clean_start  # unacknowledged messages come back
    assert (connect.client_id, connect.username, connect.password) == ("ingest-3", "u", b"p")
    assert connect.session_expiry_interval == 86400
    assert connect.receive_max == 500
    assert connect.max_packet_size == 1 << 20
    assert connect.keep_alive == 30


def test_subscribe_asks_qos_1_and_unsubscribe_names_each_filter() -> None:
    subscribe, _ = mqtt5.read(memoryview(subscribe_packet(4, ["$share/g/a/+", "b"])))
    assert isinstance(subscribe, mqtt5.SubscribePacket)
    assert [(f.pattern, f.max_qos) for f in subscribe.topic_filters] == [
        ("$share/g/a/+", QOS1),
        ("b", QOS1),
    ]
    # Fixed header 0xA2 (the reserved flags MQTT demands), packet id, no properties, filters.
    assert unsubscribe_packet(9, ["$share/g/a/+", "b"]) == (
        b"\xa2\x14\x00\x09\x00" + b"\x00\x0c$share/g/a/+" + b"\x00\x01b"
    )


def test_disconnect_can_end_the_session_or_give_a_reason() -> None:
    assert disconnect_packet() == DISCONNECT == b"\xe0\x00"
    ended, _ = mqtt5.read(memoryview(disconnect_packet(session_expiry_s=0)))
    assert isinstance(ended, mqtt5.DisconnectPacket)
    assert ended.session_expiry_interval == 0
    malformed, _ = mqtt5.read(memoryview(disconnect_packet(0x81)))
    assert isinstance(malformed, mqtt5.DisconnectPacket)
    assert malformed.reason_code == 0x81


def test_many_acks_are_one_write_of_four_bytes_each() -> None:
    assert puback_packets([1, 258, 65535]) == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"
    assert puback_packets([]) == b""


def test_reasons_read_as_words() -> None:
    assert reason_text(0x87) == "0x87 not authorized"
    assert reason_text(0x8E, "gone") == "0x8e session taken over (gone)"
    assert reason_text(0x11) == "0x11 no subscription existed"


def test_a_grant_below_the_asked_qos_is_a_failure() -> None:
    assert subscription_failures([1, 1], 1) == []
    assert subscription_failures([1, 0], 1) == ["granted QoS 0 where QoS 1 was asked"]
    assert subscription_failures([0x87], 1) == ["0x87 not authorized"]


# -- keep-alive -----------------------------------------------------------------------------------


def test_keep_alive_pings_when_quiet_and_gives_up_one_interval_later() -> None:
    alive = KeepAlive(10, now=0.0)
    assert alive.due(4.9) is None
    assert alive.due(5.0) == "ping"
    assert alive.due(10.0) is None  # the ping is out: wait for an answer
    assert alive.due(15.1) == "dead"  # silent since 0: noticed within 1.5 keep-alives
    alive.received(15.2)
    alive.last_sent = 15.2
    assert alive.due(15.3) is None


def test_an_answer_keeps_the_connection() -> None:
    alive = KeepAlive(10, now=0.0)
    assert alive.due(5.0) == "ping"
    alive.received(6.0)
    assert alive.due(9.9) is None
    assert alive.due(10.0) == "ping"  # five seconds since our last ping


def test_a_publisher_that_only_sends_still_pings() -> None:
    # Sending keeps last_sent fresh; a broker silent all the while must still be noticed.
    alive = KeepAlive(10, now=0.0)
    alive.last_sent = 5.5
    assert alive.due(5.5) == "ping"
    alive.last_sent = 16.0
    assert alive.due(16.0) == "dead"
