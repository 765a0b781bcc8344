"""The simulation engine: devices on a schedule of simulated time, published over connections.

One thread drives everything: it takes the next device due, lets it act (a reading, a fault,
a dropped or regained connection), and hands the messages to the connections, waiting for
the broker's acknowledgements whenever a connection's window is full. Nothing queues without
bound: a device that cannot publish holds up the schedule, and the report says how far behind
it fell.
"""

from __future__ import annotations

import heapq
import logging
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.fleet import Connection, Login, State, Transport, Will
from devices import DEVICE_KINDS, Device
from simulators.behaviour import CityWeather
from simulators.clock import SimClock
from simulators.device import Outgoing, SimulatedDevice
from simulators.errors import BrokerRefused, BrokerUnreachable, SimulatorError
from simulators.faults import FaultRates
from simulators.ledger import Ledger, Sent

log = logging.getLogger(__name__)

_PUMP_EVERY = 64  # publications between reading acknowledgements when not blocked


@dataclass(slots=True)
class Report:
    """What a run did: counts, elapsed real seconds and the rates achieved."""

    readings: int = 0
    messages: int = 0  # telemetry messages published (a duplicate counts twice)
    status_messages: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    lag_s: float = 0.0  # simulated seconds the schedule was behind when the run ended
    unacknowledged: int = 0  # publications the broker had not acknowledged at the end
    lost_backlog: int = 0  # readings dropped from full backlogs
    reconnects: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # PUBACK reason code -> count

    @property
    def rate(self) -> float:
        """Telemetry messages per real second."""
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def reading_rate(self) -> float:
        """Readings per real second (a backlog batch carries many)."""
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Links:
    """Which connection carries each device, and whether a device has its own."""

    def __init__(self, transport: Transport, per_device: bool) -> None:
        self.transport = transport
        self.per_device = per_device
        self._by_device: list[Connection] = []

    @classmethod
    def shared(cls, transport: Transport, connections: Sequence[Connection], count: int) -> Links:
        """`count` devices spread round-robin over `connections` (an anonymous broker)."""
        links = cls(transport, per_device=False)
        links._by_device = [connections[i % len(connections)] for i in range(count)]
        return links

    @classmethod
    def own(cls, transport: Transport, connections: Sequence[Connection]) -> Links:
        """One connection per device, in the devices' order (credentials, last wills)."""
        links = cls(transport, per_device=True)
        links._by_device = list(connections)
        return links

    def connection(self, index: int) -> Connection:
        """The connection of device `index`."""
        return self._by_device[index]


def device_connections(
    devices: Sequence[Device],
    host: str,
    port: int,
    credentials: Mapping[str, tuple[str, str]] | None = None,
    *,
    keepalive_s: int = 60,
    tls: ssl.SSLContext | None = None,
) -> list[Connection]:
    """One connection per device: its credentials, its last will, and as client id its login
    (the broker binds a device's client id to its login) or, without one, its id."""
    connections = []
    for device in devices:
        username, password = (credentials or {}).get(device.device_id, (None, None))
        will = Will(f"lantaarn/v1/{device.tenant}/{device.device_id}/status", b"offline")
        login = Login(username or device.device_id, username, password)
        connections.append(
            Connection(host, port, login, will=will, keepalive_s=keepalive_s, tls=tls)
        )
    return connections


def natural_rate(devices: Iterable[Device]) -> float:
    """Readings per simulated second that devices produce at their intervals."""
    return sum(1.0 / (d.interval_s or DEVICE_KINDS[d.kind].interval_s) for d in devices)


class Simulation:
    """A fleet of simulated devices on one simulated clock."""

    def __init__(
        self,
        devices: Sequence[Device],
        *,
        seed: int = 1,
        clock: SimClock | None = None,
        faults: FaultRates | None = None,
        ledger: Ledger | None = None,
        spread: bool = True,
        status: bool = True,
    ) -> None:
        self.clock = clock or SimClock(time.time())
        self.ledger = ledger
        self.status = status
        weathers: dict[str, CityWeather] = {}
        self.devices = [
            SimulatedDevice(
                d,
                seed,
                self.clock,
                faults,
                weathers.setdefault(d.tenant, CityWeather(seed, d.tenant)),
                spread=spread,
            )
            for d in devices
        ]
        self._topics = [d.topic.encode() for d in self.devices]
        self.report = Report()

    def natural_rate(self) -> float:
        """Readings per simulated second the fleet produces at its kinds' intervals."""
        return natural_rate(d.device for d in self.devices)

    def run(
        self,
        links: Links,
        *,
        duration_s: float | None = None,
        readings_per_device: int | None = None,
        stop: threading.Event | None = None,
    ) -> Report:
        """Publish until the duration is over, every device sent its readings, or `stop` is set."""
        stop = stop or threading.Event()
        transport = links.transport
        report = self.report
        clock = self.clock
        heap = [(d.next_due, i) for i, d in enumerate(self.devices)]
        heapq.heapify(heap)
        began = time.monotonic()
        deadline = None if duration_s is None else began + duration_s
        if self.status:
            for i, device in enumerate(self.devices):
                self._status(links, i, device, b"online")
        since_pump = 0
        while heap and not stop.is_set():
            now_real = time.monotonic()
            if deadline is not None and now_real >= deadline:
                break
            now = clock.now()
            due, index = heap[0]
            if due > now:
                wait = clock.real_delay(due - now)
                if deadline is not None:
                    wait = min(wait, deadline - now_real)
                transport.pump(max(0.0, min(wait, 0.05)))
                since_pump = 0
                continue
            heapq.heappop(heap)
            device = self.devices[index]
            for outgoing in device.tick():
                self._send(links, index, device, outgoing)
            if readings_per_device is None or device.seq < readings_per_device:
                heapq.heappush(heap, (device.next_due, index))
            since_pump += 1
            if since_pump >= _PUMP_EVERY:
                transport.pump(0.0)
                since_pump = 0
        if heap:
            report.lag_s = max(0.0, clock.now() - heap[0][0])
        for index, device in enumerate(self.devices):
            # Devices still offline come back to say goodbye, so their backlog is not lost.
            for outgoing in device.drain():
                self._send(links, index, device, outgoing)
            report.lost_backlog += device.lost
        report.elapsed_s = time.monotonic() - began
        return report

    def finish(self, links: Links, timeout_s: float = 30.0) -> bool:
        """Mark every device offline (retained) and wait for the broker's acknowledgements."""
        if self.status:
            for index, device in enumerate(self.devices):
                self._status(links, index, device, b"offline")
        drained = links.transport.drain(timeout_s)
        report = self.report
        report.unacknowledged = links.transport.unacknowledged()
        for connection in links.transport.connections:
            for code, count in connection.refused.items():
                report.refused[code] = report.refused.get(code, 0) + count
        return drained

    def _status(self, links: Links, index: int, device: SimulatedDevice, state: bytes) -> None:
        connection = self._ready(links, index)
        links.transport.publish(connection, device.status_topic.encode(), state, 1, True)
        self.report.status_messages += 1

    def _ready(self, links: Links, index: int) -> Connection:
        """The device's connection once it may publish; waits on acknowledgements if need be."""
        connection = links.connection(index)
        transport = links.transport
        while not connection.can_publish:
            if connection.state is State.CLOSED:
                self._reconnect(transport, connection)
            else:
                transport.pump(0.005)
        return connection

    def _reconnect(self, transport: Transport, connection: Connection) -> None:
        delay = 0.1
        while True:
            try:
                transport.reopen(connection)
                transport.wait_connected([connection], 10.0)
                self.report.reconnects += 1
                return
            except BrokerRefused:
                raise
            except BrokerUnreachable as exc:
                log.warning("reconnecting %s: %s", connection.login.client_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _send(self, links: Links, index: int, device: SimulatedDevice, out: Outgoing) -> None:
        transport = links.transport
        if out.connection:
            if links.per_device:
                connection = links.connection(index)
                if out.connection == "offline":
                    # The device vanishes; the broker publishes its will ("offline", retained).
                    transport.drain(5.0)
                    transport.close(connection, with_will=True)
                    return
                self._reconnect(transport, connection)
            if self.status:
                self._status(links, index, device, out.payload)
            return
        topic = self._topics[index] if out.topic == device.topic else out.topic.encode()
        for _ in range(out.copies):
            connection = self._ready(links, index)
            transport.publish(connection, topic, out.payload, 1, False)
        report = self.report
        report.messages += out.copies
        report.readings += len(out.readings)
        report.bytes += len(out.payload) * out.copies
        if self.ledger is not None:
            tenant = device.device.tenant
            name = device.device.device_id
            readings = [
                Sent(name, tenant, r.ts_ms * 1_000_000, r.seq, r.metrics, r.fault)
                for r in out.readings
            ]
            self.ledger.add_message(
                out.topic, len(out.payload), time.time_ns(), readings, out.fault, out.copies
            )


__all__ = ["Links", "Report", "Simulation", "SimulatorError", "device_connections"]
