"""A simulated fleet that keeps publishing in a thread, plus the odd bad message and status.

The dashboard tests need a platform that looks like a city at work: readings arriving all the
time, some rejected with a reason, and devices that said they went offline.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from devices import DEVICE_KINDS, topic
from simulators import BrokerAddress, Fleet, Publisher, telemetry_payload
from simulators.behaviour import DeviceState


def publish_troubles(publisher: Publisher, fleet: Fleet, now_ms: int) -> int:
    """Publish messages the ingest must reject, and one device's `offline` last will.

    Returns how many rejections to expect at least (one per bad message).
    """
    first, second = fleet.devices[0], fleet.devices[1]
    bad = [
        (topic(first.tenant, first.device_id), b"{not json"),
        (
            topic(first.tenant, first.device_id),
            telemetry_payload(now_ms, 1, {"no_such_metric": 1.0}),
        ),
        (
            topic(second.tenant, second.device_id),
            telemetry_payload(now_ms, 1, {fleet_metric(second.kind): -1e9}),
        ),
        (topic(first.tenant, "nobody-knows-me"), telemetry_payload(now_ms, 1, {"x": 1.0})),
    ]
    for name, payload in bad:
        publisher.publish(name, payload)
    last = fleet.devices[-1]
    publisher.publish(topic(last.tenant, last.device_id, "status"), b"offline", retain=False)
    return len(bad)


def fleet_metric(kind: str) -> str:
    """The first metric of a kind in the catalogue (for an out-of-range value)."""
    return DEVICE_KINDS[kind].metrics[0].name


class LiveFleet:
    """Publishes a reading of every device per (shortest) interval until closed."""

    def __init__(
        self, fleet: Fleet, port: int, client_id: str, *, seed: int = 3, history_minutes: int = 0
    ) -> None:
        self.fleet = fleet
        self.address = BrokerAddress("::1", port)
        self.client_id = client_id
        self.seed = seed
        self.history_minutes = history_minutes
        self.stop = threading.Event()
        self.sent = 0
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-fleet", daemon=True)
        self._publisher: Publisher | None = None
        self._ready = threading.Event()

    def _run(self) -> None:
        try:
            with Publisher(self.address, self.client_id) as publisher:
                self._publisher = publisher
                self._ready.set()
                self._publish_until_stopped(publisher)
                publisher.flush(10)
        except BaseException as exc:  # noqa: BLE001 - reported to the test on exit
            self.failure = exc
            self._ready.set()

    def _publish_until_stopped(self, publisher: Publisher) -> None:
        # Our own loop over the devices' simulated signals rather than `run_fleet`: the test
        # needs only "each device about once per interval", and owns its sequence numbers.
        states = [DeviceState(d, self.seed) for d in self.fleet.devices]
        seqs = [0] * len(states)
        # First a past, a reading a minute, from the same simulated state the live readings
        # continue (so counters keep counting instead of jumping).
        start_ms = int(time.time() * 1000) - self.history_minutes * 60_000
        for minute in range(self.history_minutes):
            at_ms = start_ms + minute * 60_000
            for i, state in enumerate(states):
                device = state.device
                payload = telemetry_payload(at_ms, seqs[i], state.reading(at_ms / 1000))
                publisher.publish(topic(device.tenant, device.device_id), payload)
                seqs[i] += 1
                self.sent += 1
        interval = min(d.interval_s or 60.0 for d in self.fleet.devices)
        while not self.stop.is_set():
            started = time.monotonic()
            for i, state in enumerate(states):
                now = time.time()
                device = state.device
                payload = telemetry_payload(int(now * 1000), seqs[i], state.reading(now))
                publisher.publish(topic(device.tenant, device.device_id), payload)
                seqs[i] += 1
                self.sent += 1
            self.stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def publisher(self) -> Publisher:
        """The running publisher (paho's publish is thread-safe)."""
        if self._publisher is None:
            raise RuntimeError("the fleet is not publishing")
        return self._publisher

    def __enter__(self) -> LiveFleet:
        self._thread.start()
        if not self._ready.wait(15) or self.failure is not None:
            raise RuntimeError(f"the simulated fleet did not start: {self.failure!r}")
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop.set()
        self._thread.join(20)
        if self.failure is not None and et is None:
            raise RuntimeError("the simulated fleet failed") from self.failure
