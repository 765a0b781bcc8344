"""Publishing a fleet's telemetry over MQTT 5 with paho-mqtt, many devices on one connection."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from devices import Device, topic
from simulators.behaviour import DeviceState
from simulators.ledger import Ledger, Sent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the simulator publishes, and as whom."""

    host: str = "::1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)


class Publisher:
    """One MQTT connection that publishes for many devices, within the broker's flow control."""

    def __init__(self, broker: BrokerAddress, client_id: str, *, max_queued: int = 5000) -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        if broker.username is not None:
            self._client.username_pw_set(broker.username, broker.password)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(max_queued)
        self._broker = broker
        self._connected = threading.Event()
        self._client.on_connect = lambda *_a: self._connected.set()
        self.published = 0

    def __enter__(self) -> Publisher:
        self._client.connect(self._broker.host, self._broker.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(15):
            self.__exit__(None, None, None)
            raise ConnectionError(f"no CONNACK from [{self._broker.host}]:{self._broker.port}")
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish, waiting while the client's queue is full (no unbounded client queue)."""
        while True:
            info = self._client.publish(topic_name, payload, qos=qos, retain=retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                time.sleep(0.002)
                continue
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
            self.published += 1
            return

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every publication was acknowledged by the broker; False on time-out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # paho keeps unacknowledged QoS>0 messages in _out_messages.
            if not self._client._out_messages:  # noqa: SLF001
                return True
            time.sleep(0.01)
        return False


def rfc3339_ms(ts_ms: int) -> str:
    """An RFC 3339 UTC timestamp with milliseconds, from epoch milliseconds."""
    moment = datetime.fromtimestamp(ts_ms // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def telemetry_payload(ts_ms: int, seq: int, metrics: dict[str, float]) -> bytes:
    """A single-reading payload with an RFC 3339 UTC timestamp (epoch milliseconds in)."""
    ts = rfc3339_ms(ts_ms)
    return orjson.dumps({"ts": ts, "seq": seq, "metrics": metrics})


def run_fleet(
    devices: Sequence[Device],
    publisher: Publisher,
    *,
    seed: int = 1,
    duration_s: float | None = None,
    readings_per_device: int | None = None,
    stop: threading.Event | None = None,
    ledger: Ledger | None = None,
) -> int:
    """Publish each device's readings at its interval (real time) until a limit is reached.

    Devices start spread over their first interval. Returns the number of readings published.
    """
    stop = stop or threading.Event()
    start = time.time()
    states = {d.device_id: DeviceState(d, seed) for d in devices}
    queue: list[tuple[float, str]] = []
    for n, device in enumerate(devices):
        interval = device.interval_s or 60.0
        offset = 0.0 if readings_per_device is not None else interval * n / max(1, len(devices))
        queue.append((start + offset, device.device_id))
    heapq.heapify(queue)
    sent = 0
    while queue and not stop.is_set():
        due, device_id = heapq.heappop(queue)
        if duration_s is not None and due - start > duration_s:
            break
        wait = due - time.time()
        if wait > 0 and stop.wait(wait):
            break
        state = states[device_id]
        device = state.device
        now = time.time()
        metrics = state.reading(now)
        ts_ms = int(now * 1000)
        payload = telemetry_payload(ts_ms, state.seq, metrics)
        publisher.publish(topic(device.tenant, device.device_id), payload)
        if ledger is not None:
            ledger.add(Sent(device.device_id, device.tenant, ts_ms * 1_000_000, state.seq, metrics))
        state.seq += 1
        sent += 1
        if readings_per_device is None or state.seq < readings_per_device:
            interval = device.interval_s or 60.0
            heapq.heappush(
                queue, (max(due + interval, now if readings_per_device else 0.0), device_id)
            )
    return sent
