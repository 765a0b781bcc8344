"""Both of our clients over TLS to a real Mosquitto: the worker's session and the simulators'."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import BrokerConfig, Connection, Login, Transport, client_context
from broker.errors import BrokerUnreachable
from ingest import MqttSource
from ingest.errors import BrokerRefused
from lantaarn.localstack import free_port
from lantaarn.settings import Settings
from simulators.publisher import BrokerAddress, Publisher
from tests.broker.tlsbroker import TlsFiles, TlsMosquitto, make_authority
from tests.conftest import require_program
from tests.ingest.processes import publish_all


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMosquitto]:
    require_program("mosquitto", "mosquitto")
    folder = tmp_path_factory.mktemp("tls")
    broker = TlsMosquitto(folder / "mosquitto", free_port(), tls=make_authority(folder / "ca"))
    broker.start()
    yield broker
    broker.stop()


def context(broker: TlsMosquitto) -> ssl.SSLContext:
    assert broker.tls is not None
    return client_context(broker.tls.ca)


@pytest.mark.anyio
async def test_the_worker_session_takes_and_acknowledges_messages_over_tls(
    tls_broker: TlsMosquitto,
) -> None:
    tag = uuid.uuid4().hex[:8]
    config = BrokerConfig("::1", tls_broker.tls_port, tls=context(tls_broker))
    async with MqttSource(config, f"tls-{tag}", [f"tls/{tag}/+"]) as source:
        messages = [(f"tls/{tag}/{n}", str(n).encode()) for n in range(50)]
        await asyncio.to_thread(publish_all, tls_broker.port, messages)  # in over plain MQTT
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 50 and time.monotonic() < deadline:
            got += await source.batch(50 - len(got), 0.05)
        assert sorted(int(d.payload) for d in got) == list(range(50))
        assert source.ack(got) == 50
        assert source.received - source.acked == 0


@pytest.mark.anyio
async def test_the_worker_session_refuses_a_broker_it_cannot_verify(
    tls_broker: TlsMosquitto, tmp_path: Path
) -> None:
    stranger = make_authority(tmp_path / "other", "someone else's CA")
    config = BrokerConfig("::1", tls_broker.tls_port, tls=client_context(stranger.ca))
    with pytest.raises(BrokerRefused, match="certificate verify failed"):
        await MqttSource(config, "unverified", ["a/#"]).open(timeout_s=5)


def test_the_simulator_publishes_over_tls(tls_broker: TlsMosquitto) -> None:
    address = BrokerAddress("::1", tls_broker.tls_port, tls=context(tls_broker))
    with Publisher(address, f"tls-sim-{uuid.uuid4().hex[:8]}") as publisher:
        for n in range(3000):
            publisher.publish("lantaarn/v1/GM0363/tls-test/telemetry", b'{"n": %d}' % n)
        assert publisher.flush(20)
        assert publisher.published == 3000


def test_a_device_connection_refuses_a_broker_it_cannot_verify(
    tls_broker: TlsMosquitto, tmp_path: Path
) -> None:
    stranger = make_authority(tmp_path / "other", "someone else's CA")
    transport = Transport()
    connection = Connection(
        "::1", tls_broker.tls_port, Login("unverified"), tls=client_context(stranger.ca)
    )
    transport.add(connection)
    with pytest.raises(BrokerUnreachable, match="certificate verify failed"):
        transport.wait_connected([connection], 5)
    transport.close_all()


def test_settings_make_a_verifying_tls_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files: TlsFiles = make_authority(tmp_path / "ca")
    monkeypatch.setenv("LANTAARN_MQTT__TLS", "true")
    monkeypatch.setenv("LANTAARN_MQTT__CA_FILE", str(files.ca))
    settings = Settings()
    for tls in (settings.broker().tls, settings.broker_address().tls):
        assert isinstance(tls, ssl.SSLContext)
        assert tls.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert tls.verify_mode == ssl.CERT_REQUIRED
        assert tls.check_hostname
    monkeypatch.setenv("LANTAARN_MQTT__TLS", "false")
    assert Settings().broker().tls is None
