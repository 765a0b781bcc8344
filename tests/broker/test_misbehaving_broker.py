"""Both of our clients against a broker that breaks the rules: silent, short, stingy, huge, garbled.

The worker's session (`ingest.MqttSource` on `broker.Subscriber`) and the simulators' connections
(`broker.fleet`) must each notice, say why in a DISCONNECT where MQTT 5 has a reason for it, and
never buffer what a header merely declares.
"""

from __future__ import annotations

import asyncio

import mqtt5
import pytest

from broker.fleet import Connection, Login, State, Transport
from ingest import BrokerConfig, MqttSource
from ingest.errors import BrokerRefused
from tests.broker.fake import FakeBroker, eventually, varint

HUGE = b"\x30" + varint(200_000_000) + b"\x00\x01a" + b"x" * 65_536  # declares 200 MB
SHORT_CONNACK = b"\x20\x01\x00"
TRUNCATED_PROPERTIES = b"\x20\x05\x00\x00\x02\x11\x00"  # Session Expiry with 1 of its 4 bytes
GARBLED = b"\x32\x04\x00\x09ab"  # a PUBLISH whose topic runs past the packet


def disconnect_reasons(broker: FakeBroker) -> list[int]:
    return [int(p.reason_code) for p in broker.sent(mqtt5.DisconnectPacket)]


# -- the ingest worker's session ----------------------------------------------------------------


@pytest.mark.anyio
async def test_the_worker_notices_a_broker_gone_silent_and_reconnects() -> None:
    with FakeBroker() as broker:
        config = BrokerConfig("::1", broker.port, keepalive_s=2)
        async with MqttSource(config, "silent", ["a/#"]) as source:
            assert source.connected
            # Pinged after 1 s of quiet, no answer for 2 s: dropped (and reconnected).
            await asyncio.to_thread(eventually, lambda: broker.connections >= 2, 2 * 1.5 + 1)
            assert broker.connections >= 2
            assert broker.sent(mqtt5.PingReqPacket)


@pytest.mark.anyio
async def test_the_worker_refuses_a_subscription_granted_at_qos_0() -> None:
    with FakeBroker(granted=[0]) as broker:
        source = MqttSource(BrokerConfig("::1", broker.port), "stingy", ["a/#"])
        with pytest.raises(BrokerRefused, match="granted QoS 0 where QoS 1 was asked"):
            await source.open(timeout_s=5)


@pytest.mark.anyio
@pytest.mark.parametrize("connack", [SHORT_CONNACK, TRUNCATED_PROPERTIES])
async def test_the_worker_says_malformed_to_a_broken_connack(connack: bytes) -> None:
    with FakeBroker(connack=connack) as broker:
        source = MqttSource(BrokerConfig("::1", broker.port), "short", ["a/#"])
        with pytest.raises(BrokerRefused, match="no answer"):
            await source.open(timeout_s=1.5)
        assert 0x81 in disconnect_reasons(broker)


@pytest.mark.anyio
async def test_the_worker_says_malformed_before_dropping_a_garbled_stream() -> None:
    with FakeBroker(then=GARBLED) as broker:
        async with MqttSource(BrokerConfig("::1", broker.port), "garbled", ["a/#"]):
            await asyncio.to_thread(eventually, lambda: bool(disconnect_reasons(broker)), 5)
        assert disconnect_reasons(broker)[0] == 0x81


@pytest.mark.anyio
async def test_the_worker_refuses_a_declared_200_mb_packet_without_buffering_it() -> None:
    with FakeBroker(then=HUGE) as broker:
        config = BrokerConfig("::1", broker.port, max_packet_size=1 << 20)
        async with MqttSource(config, "huge", ["a/#"]) as source:
            await asyncio.to_thread(eventually, lambda: bool(disconnect_reasons(broker)), 5)
            assert source.received == 0
        (connect,) = broker.sent(mqtt5.ConnectPacket)[:1]
        assert connect.max_packet_size == 1 << 20  # announced: the broker may not send more
        assert disconnect_reasons(broker)[0] == 0x95


# -- the simulators' connections ----------------------------------------------------------------


def connect(broker: FakeBroker, keepalive_s: int = 60) -> tuple[Transport, Connection]:
    transport = Transport()
    connection = Connection("::1", broker.port, Login("sim"), keepalive_s=keepalive_s)
    transport.add(connection)
    return transport, connection


def test_a_device_connection_notices_a_broker_gone_silent() -> None:
    with FakeBroker(granted=[]) as broker:
        transport, connection = connect(broker, keepalive_s=2)
        transport.wait_connected([connection], 5)
        assert eventually(
            lambda: connection.state is State.CLOSED, 2 * 1.5 + 1, lambda: transport.pump(0.05)
        )
        assert broker.sent(mqtt5.PingReqPacket)
        transport.close_all()


@pytest.mark.parametrize("connack", [SHORT_CONNACK, TRUNCATED_PROPERTIES])
def test_a_device_connection_says_malformed_to_a_broken_connack(connack: bytes) -> None:
    with FakeBroker(connack=connack, granted=[]) as broker:
        transport, connection = connect(broker)
        with pytest.raises(Exception, match="malformed") as raised:
            transport.wait_connected([connection], 5)
        assert type(raised.value).__name__ == "BrokerUnreachable"
        assert eventually(lambda: 0x81 in disconnect_reasons(broker), 5)
        transport.close_all()


def test_a_device_connection_refuses_a_declared_200_mb_packet() -> None:
    with FakeBroker(granted=[], then=HUGE) as broker:
        transport, connection = connect(broker)
        transport.wait_connected([connection], 5)
        assert eventually(lambda: connection.state is State.CLOSED, 5, lambda: transport.pump(0.05))
        assert "over our maximum" in str(connection.error)
        assert eventually(lambda: 0x95 in disconnect_reasons(broker), 5)
        transport.close_all()


def test_a_device_connection_keeps_to_the_brokers_maximum_packet_size() -> None:
    connack = mqtt5.ConnAckPacket(receive_max=10, max_packet_size=100).write()
    with FakeBroker(connack=connack, granted=[]) as broker:
        transport, connection = connect(broker)
        transport.wait_connected([connection], 5)
        assert transport.publish(connection, b"a/b", b"x" * 200) == 0  # not sent: too large
        assert connection.refused == {0x95: 1}
        assert transport.publish(connection, b"a/b", b"x" * 20) == 1
        transport.pump(0.05)
        assert eventually(lambda: len(broker.sent(mqtt5.PublishPacket)) == 1, 5)
        transport.close_all()
