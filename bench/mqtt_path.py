"""CPU per message of our MQTT code alone, without sockets or a broker: the worker's side
(frame and parse PUBLISHes, buffer, batch, acknowledge) and a device connection's side (encode
a PUBLISH, read its PUBACK). The best of seven rounds of 100,000 messages each.

The same file runs against an older checkout, to compare codecs in one session:

    .venv/bin/python -m bench.mqtt_path
    cd OLD && PYTHONPATH=$PWD /path/to/.venv/bin/python -P /path/to/bench/mqtt_path.py
"""

from __future__ import annotations

# ruff: noqa: SLF001 - it drives the source's connection by hand, without a socket
import asyncio
import importlib
import socket
import time
from typing import Any

import mqtt5

from ingest.source import BrokerConfig, MqttSource

N = 100_000
ROUNDS = 7
LAMPPOST = (
    b'{"ts":"2026-12-02T01:00:00.000Z","seq":1,"metrics":{"dim_level":40.0,"active_power":31.0,'
    b'"active_energy":1000.5,"operating_hours":5000.01,"lamp_failure":0.0,"supply_voltage":229.5}}'
)


def _stream() -> list[bytes]:
    stream = b"".join(
        mqtt5.PublishPacket(
            f"lantaarn/v1/GM0363/lamp-{n % 2000:04d}/telemetry",
            LAMPPOST,
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            packet_id=n % 65_535 + 1,
        ).write()
        for n in range(N)
    )
    return [stream[i : i + 65_536] for i in range(0, len(stream), 65_536)]


class _Sink:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def abort(self) -> None:
        pass


def _protocol(source: MqttSource) -> Any:
    # Which tree runs: `broker` may be importable in an old one too (an editable install).
    if hasattr(source, "_held"):  # this tree: broker/ holds the session
        session = importlib.import_module("broker.session")
        protocol = session.SubscriberProtocol(5, source._session._deliver)
        source._session.protocol, source._session.generation = protocol, 5
    else:  # before: ingest/wire.py
        wire = importlib.import_module("ingest.wire")
        protocol = wire.SubscriberProtocol(5, source._deliver)
        source._protocol, source._generation = protocol, 5  # type: ignore[attr-defined]
    return protocol


async def _worker_round(chunks: list[bytes]) -> float:
    source = MqttSource(BrokerConfig(), "bench", ["a/#"])
    protocol = _protocol(source)
    protocol.transport = sink = _Sink()
    held: list[Any] = []
    started = time.process_time()
    for chunk in chunks:
        protocol.data_received(chunk)
        while source._buffer:
            held += await source.batch(2000, 0)
        if len(held) >= 8000:  # the pipeline holds batches until they are stored
            source.ack(held)
            held = []
    source.ack(held)
    spent = time.process_time() - started
    assert sink.written == 4 * N, sink.written  # one 4-byte PUBACK per message
    return spent


def _fleet() -> Any:
    try:  # before: simulators/wire.py
        return importlib.import_module("simulators.wire")
    except ModuleNotFoundError:
        return importlib.import_module("broker.fleet")


def _device_round(fleet: Any, acks: bytes) -> tuple[float, float]:
    connection = fleet.Connection("::1", 1, fleet.Login("bench"))
    connection.state = fleet.State.CONNECTED
    connection.window = 1 << 30
    topic = b"lantaarn/v1/GM0363/air-0001/telemetry"
    started = time.process_time()
    for n in range(N):
        connection.publish(topic, LAMPPOST, 1, False)
        if n % 1000 == 999:
            connection.out.clear()
    publishing = time.process_time() - started
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection.sock = ours
    reading = 0.0
    for at in range(0, len(acks), 4000):
        first = at // 4
        connection.inflight = {(first + n) % 65_535 + 1: b"" for n in range(1000)}
        theirs.sendall(acks[at : at + 4000])
        started = time.process_time()
        connection.read()
        reading += time.process_time() - started
    assert connection.acked == N
    ours.close()
    theirs.close()
    connection.sock = None
    return publishing, reading


def main() -> None:
    """Print µs of CPU per message for each side."""
    chunks = _stream()
    worker = min(asyncio.run(_worker_round(chunks)) for _ in range(ROUNDS))
    acks = b"".join(mqtt5.PubAckPacket(n % 65_535 + 1).write() for n in range(N))
    fleet = _fleet()
    device = [_device_round(fleet, acks) for _ in range(ROUNDS)]
    print(
        f"worker: {worker / N * 1e6:.2f} µs/message (parse, batch, ack); device: publish "
        f"{min(p for p, _ in device) / N * 1e6:.2f} µs, read PUBACK "
        f"{min(r for _, r in device) / N * 1e6:.2f} µs per message ({fleet.__name__})"
    )


if __name__ == "__main__":
    main()
