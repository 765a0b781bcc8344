"""Devices on their own connections: last will on a flap, retained status, flow control."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from broker.fleet import Connection, Login, Transport
from lantaarn.localstack import Mosquitto
from simulators import (
    FaultRates,
    Ledger,
    Links,
    SimClock,
    Simulation,
    device_connections,
    make_fleet,
)


def _watch(
    port: int, topic: str, seen: list[tuple[str, bytes, bool]], ready: threading.Event
) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.on_connect = lambda c, *_a: (c.subscribe(topic, qos=1), ready.set())
    client.on_message = lambda _c, _u, m: seen.append((m.topic, m.payload, bool(m.retain)))
    client.connect("::1", port)
    client.loop_start()
    return client


def test_flapping_devices_leave_their_will_and_come_back_with_a_backlog(
    mosquitto: Mosquitto,
) -> None:
    fleet = make_fleet(6, tenants=1, seed=31, interval_s=0.02)
    tag = str(time.monotonic_ns())[-6:]
    devices = [
        d.__class__(
            **{
                **{f: getattr(d, f) for f in d.__dataclass_fields__},
                "device_id": f"{d.device_id}-{tag}",
            }
        )
        for d in fleet.devices
    ]
    seen: list[tuple[str, bytes, bool]] = []
    ready = threading.Event()
    watcher = _watch(mosquitto.port, "lantaarn/v1/+/+/status", seen, ready)
    try:
        assert ready.wait(10)
        transport = Transport()
        connections = device_connections(devices, "::1", mosquitto.port)
        for connection in connections:
            transport.add(connection)
        transport.wait_connected(connections)
        ledger = Ledger()
        simulation = Simulation(
            devices,
            seed=31,
            clock=SimClock(time.time()),
            faults=FaultRates(flap=0.1),
            ledger=ledger,
        )
        links = Links.own(transport, connections)
        report = simulation.run(links, readings_per_device=60)
        assert simulation.finish(links, 10)
        transport.close_all()
        time.sleep(0.5)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    assert report.reconnects > 0
    offline = [
        t for t, payload, _ in seen if payload == b"offline" and t.endswith(f"-{tag}/status")
    ]
    # Each flap: the broker published the will; the device said online again when it came back.
    assert len(offline) >= report.reconnects
    assert any(len(m.readings) > 1 for m in ledger.messages)
    assert report.readings == len(ledger) == sum(s.seq for s in simulation.devices)


def test_never_more_unacknowledged_than_the_broker_allows(mosquitto: Mosquitto) -> None:
    transport = Transport()
    connection = Connection("::1", mosquitto.port, Login(f"window-{time.monotonic_ns()}"))
    transport.add(connection)
    transport.wait_connected([connection])
    assert connection.window == 1000  # Mosquitto's Receive Maximum from our configuration
    most = 0
    for n in range(20_000):
        while not connection.can_publish:
            transport.pump(0.01)
        transport.publish(connection, b"lantaarn/v1/GM0363/window-test/telemetry", b"{}" * 20)
        most = max(most, len(connection.inflight))
        if n % 500 == 0:
            transport.pump(0.0)
    assert transport.drain(20)
    assert most <= 1000
    assert connection.acked == 20_000
    transport.close_all()
