"""Publishing a fleet's telemetry: one connection for many devices, and `run_fleet`."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from broker.fleet import Connection, Login, Transport
from devices import Device
from simulators.clock import SimClock
from simulators.engine import Links, Report, Simulation
from simulators.faults import FaultRates
from simulators.ledger import Ledger
from simulators.payloads import rfc3339_ms, telemetry_payload

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the simulator publishes, and as whom."""

    host: str = "::1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False)  # None: plain MQTT


class Publisher:
    """One MQTT 5 connection that publishes for many devices, within the broker's flow control.

    At most the broker's Receive Maximum (capped at `max_inflight`) publications are
    unacknowledged at any time; `publish` waits for acknowledgements beyond that.
    """

    def __init__(self, broker: BrokerAddress, client_id: str, *, max_inflight: int = 1000) -> None:
        self.transport = Transport()
        self.connection = Connection(
            broker.host,
            broker.port,
            Login(client_id, broker.username, broker.password),
            max_inflight=max_inflight,
            tls=broker.tls,
        )
        self.broker = broker

    @property
    def published(self) -> int:
        """Publications the broker acknowledged so far."""
        return self.connection.acked

    def __enter__(self) -> Publisher:
        self.transport.add(self.connection)
        try:
            self.transport.wait_connected([self.connection])
        except BaseException:
            self.transport.close_all()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.transport.close_all()

    def publish(self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish, first waiting while the broker's window is full (no unbounded queue)."""
        while not self.connection.can_publish:
            self.transport.pump(0.005)
        self.transport.publish(self.connection, topic_name.encode(), payload, qos, retain)
        self.transport.pump(0.0)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every publication was acknowledged by the broker; False on time-out."""
        return self.transport.drain(timeout_s)

    def links(self, count: int) -> Links:
        """`count` devices sharing this connection."""
        return Links.shared(self.transport, [self.connection], count)


def run_fleet(
    devices: Sequence[Device],
    publisher: Publisher,
    *,
    seed: int = 1,
    duration_s: float | None = None,
    readings_per_device: int | None = None,
    stop: threading.Event | None = None,
    ledger: Ledger | None = None,
    faults: FaultRates | None = None,
    clock: SimClock | None = None,
) -> int:
    """Publish each device's readings at its interval until a limit is reached.

    The clock is real time unless given. Devices start spread over their first interval
    (all at once when `readings_per_device` is given). Returns the number of readings published.
    """
    simulation = Simulation(
        devices,
        seed=seed,
        clock=clock or SimClock(time.time()),
        faults=faults,
        ledger=ledger,
        spread=readings_per_device is None,
    )
    links = publisher.links(len(devices))
    report: Report = simulation.run(
        links, duration_s=duration_s, readings_per_device=readings_per_device, stop=stop
    )
    simulation.finish(links, timeout_s=0.0)
    return report.readings


__all__ = ["BrokerAddress", "Publisher", "rfc3339_ms", "run_fleet", "telemetry_payload"]
