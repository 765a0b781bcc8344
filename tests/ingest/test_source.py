"""The MQTT source against a real Mosquitto: held acks, flow control, redelivery, generations."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker import SubscriberProtocol, connect_packet, disconnect_packet
from ingest import BrokerConfig, MqttSource
from ingest.errors import BrokerRefused, SourceClosed
from ingest.source import Delivery
from lantaarn.localstack import Mosquitto, free_port
from tests.conftest import require_program
from tests.ingest.processes import publish_all

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test alone, to restart."""
    require_program("mosquitto", "mosquitto")
    broker = Mosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    yield broker
    broker.stop()


def names() -> tuple[str, str, str]:
    """A unique client id, topic prefix and shared subscription for one test."""
    tag = uuid.uuid4().hex[:10]
    return f"src-{tag}", f"test/{tag}", f"$share/g{tag}/test/{tag}/+"


async def take(source: MqttSource, want: int, timeout_s: float = 10.0) -> list[Delivery]:
    """Batches until `want` deliveries came, or the time is up."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                got += await source.batch(want - len(got), 0.05)
        except TimeoutError:
            break
    return got


async def quiet(source: MqttSource, for_s: float = 0.5) -> list[Delivery]:
    """What arrives within `for_s` seconds (expected: nothing)."""
    try:
        async with asyncio.timeout(for_s):
            return await source.batch(1000, 0.01)
    except TimeoutError:
        return []


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Whether `check()` comes true within `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


async def publish(port: int, topic: str, count: int) -> None:
    messages = [(f"{topic}/{n}", str(n).encode()) for n in range(count)]
    await asyncio.to_thread(publish_all, port, messages)


async def test_unacknowledged_messages_come_back_and_acknowledged_ones_do_not(
    mosquitto: Mosquitto,
) -> None:
    client_id, topic, sub = names()
    broker = BrokerConfig("::1", mosquitto.port)
    async with MqttSource(broker, client_id, [sub]) as source:
        await publish(mosquitto.port, topic, 10)
        first = await take(source, 10)
        assert sorted(int(d.payload) for d in first) == list(range(10))
        assert source.ack(first[:4]) == 4
    async with MqttSource(broker, client_id, [sub]) as source:
        again = await take(source, 6)
        assert sorted(d.payload for d in again) == sorted(d.payload for d in first[4:])
        assert await quiet(source) == []
        assert source.ack(again) == 6
    async with MqttSource(broker, client_id, [sub]) as source:
        assert await quiet(source) == []


async def test_the_broker_sends_no_more_than_our_receive_maximum(mosquitto: Mosquitto) -> None:
    client_id, topic, sub = names()
    broker = BrokerConfig("::1", mosquitto.port)
    async with MqttSource(broker, client_id, [sub], receive_maximum=3) as source:
        await publish(mosquitto.port, topic, 8)
        held = await take(source, 3)
        assert len(held) == 3
        assert await quiet(source) == []  # the window is full until we acknowledge
        source.ack(held)
        more = await take(source, 3)
        assert len(more) == 3
        source.ack(more)
        rest = await take(source, 2)
        source.ack(rest)
        assert sorted(int(d.payload) for d in held + more + rest) == list(range(8))


async def test_acks_for_a_lost_connection_are_never_sent(own_broker: Mosquitto) -> None:
    client_id, topic, sub = names()
    broker = BrokerConfig("::1", own_broker.port)
    async with MqttSource(broker, client_id, [sub]) as source:
        await publish(own_broker.port, topic, 5)
        before = await take(source, 5)
        assert len(before) == 5
        await asyncio.to_thread(own_broker.stop)  # the loop sees the connection go
        assert not source.connected
        await asyncio.to_thread(own_broker.start)
        assert await eventually(lambda: source.connected)
        # The packet ids of the old connection may name other messages on this one.
        assert source.ack(before) == 0
        after = await take(source, 5)
        assert sorted(d.payload for d in after) == sorted(d.payload for d in before)
        assert {d.generation for d in after} != {d.generation for d in before}
        assert source.ack(after) == 5
    async with MqttSource(broker, client_id, [sub]) as source:
        assert await quiet(source) == []


async def test_nothing_counts_as_unacknowledged_once_redelivered_messages_are_stored(
    own_broker: Mosquitto,
) -> None:
    # The gauge lantaarn_ingest_unacknowledged_messages is `received - acked`: deliveries of a
    # lost connection come again and must not stay counted from the first time.
    client_id, topic, sub = names()
    broker = BrokerConfig("::1", own_broker.port)
    async with MqttSource(broker, client_id, [sub]) as source:
        await publish(own_broker.port, topic, 5)
        before = await take(source, 5)
        assert source.received - source.acked == 5
        await asyncio.to_thread(own_broker.stop)
        await asyncio.to_thread(own_broker.start)
        assert await eventually(lambda: source.connected)
        again = await take(source, 5)
        assert sorted(d.payload for d in again) == sorted(d.payload for d in before)
        source.ack(before)  # stale: the pipeline finishing the old batch changes nothing
        source.ack(again)
        assert source.received - source.acked == 0


async def test_close_hands_out_what_is_buffered_then_ends(mosquitto: Mosquitto) -> None:
    client_id, topic, sub = names()
    async with MqttSource(BrokerConfig("::1", mosquitto.port), client_id, [sub]) as source:
        await publish(mosquitto.port, topic, 4)
        assert await eventually(lambda: source.received >= 4)
        source.close()
        drained = await source.batch(100, 1.0)
        assert len(drained) == 4
        with pytest.raises(SourceClosed):
            await source.batch(100, 1.0)
        source.ack(drained)


async def test_no_broker_is_reported_within_the_timeout() -> None:
    source = MqttSource(BrokerConfig("::1", free_port()), "nobody", ["a/#"])
    started = time.monotonic()
    with pytest.raises(BrokerRefused, match="no answer"):
        await source.open(timeout_s=1.5)
    assert time.monotonic() - started < 5


async def session_present(port: int, client_id: str) -> bool:
    """Whether the broker still holds a session for `client_id` (the probe leaves none behind).

    It connects with Session Expiry 0: a session it finds is deleted when it leaves, so call it
    only where no session (or none worth keeping) is expected.
    """
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: SubscriberProtocol(1, lambda _messages: None), "::1", port
    )
    protocol.send(connect_packet(client_id, 30, session_expiry_s=0, receive_maximum=10))
    connack = await protocol.connack
    protocol.send(disconnect_packet())
    await asyncio.wait([protocol.lost], timeout=3)
    return connack.session_present


async def drain(source: MqttSource, for_s: float) -> list[Delivery]:
    """Take and acknowledge whatever arrives until nothing has for `for_s` seconds."""
    got: list[Delivery] = []
    while more := await quiet(source, for_s):
        source.ack(more)
        got += more
    return got


async def test_a_leaving_source_takes_what_its_session_holds_and_deletes_it(
    mosquitto: Mosquitto,
) -> None:
    client_id, topic, sub = names()
    staying, leaving = f"{client_id}-0", f"{client_id}-1"
    broker = BrokerConfig("::1", mosquitto.port)
    async with MqttSource(broker, staying, [sub]) as stays:
        async with MqttSource(broker, leaving, [sub]):
            pass  # now an offline member of the shared subscription
        await publish(mosquitto.port, topic, 40)
        first = await drain(stays, 0.5)
        assert 0 < len(first) < 40  # the offline session got its share, queued
        async with MqttSource(broker, leaving, [sub], leave=True) as leaver:
            held = await drain(leaver, 0.5)
            assert sorted(int(d.payload) for d in first + held) == list(range(40))
            assert await eventually(lambda: leaver.quiet_for() > 0.2)
            assert leaver.end_session()
        assert leaver.session_ended
        assert not await session_present(mosquitto.port, leaving)
        # With the session gone, the one left gets everything.
        await publish(mosquitto.port, topic, 20)
        assert len(await take(stays, 20, timeout_s=5)) == 20
        stays.ack(await drain(stays, 0.3))


async def test_a_leaving_source_waits_for_its_acknowledgements(mosquitto: Mosquitto) -> None:
    client_id, topic, sub = names()
    broker = BrokerConfig("::1", mosquitto.port)
    async with MqttSource(broker, client_id, [sub]):
        pass
    await publish(mosquitto.port, topic, 5)
    async with MqttSource(broker, client_id, [sub], leave=True) as leaver:
        held = await take(leaver, 5)
        await asyncio.sleep(0.3)
        assert leaver.quiet_for() == 0.0  # held, not acknowledged: not drained
        leaver.ack(held)
        assert await eventually(lambda: leaver.quiet_for() > 0.2)
        assert leaver.end_session()
    assert not await session_present(mosquitto.port, client_id)


async def test_a_leaving_source_gives_up_while_the_worker_still_runs(mosquitto: Mosquitto) -> None:
    client_id, topic, sub = names()
    broker = BrokerConfig("::1", mosquitto.port)
    async with MqttSource(broker, client_id, [sub]) as running:
        leaver = MqttSource(broker, client_id, [sub], leave=True)
        await leaver.open()  # takes the session over; the running one comes back within 1 s
        assert await eventually(lambda: leaver.refused is not None, timeout_s=10)
        assert "stop it, then leave again" in str(leaver.refused)
        assert not leaver.session_ended
        await leaver.aclose()
        # The running worker has its session and subscription back.
        assert await eventually(lambda: running.connected)
        await publish(mosquitto.port, topic, 3)
        running.ack(await take(running, 3))
