"""One simulated device over time: readings at its interval, its faults, its backlog.

A `SimulatedDevice` knows nothing about connections. `tick(due)` returns what the device
does at its scheduled moment: messages to publish, and whether it drops or regains its
connection. The engine decides how that reaches the broker.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import orjson
from pydantic import ValidationError

from devices import DEVICE_KINDS, MAX_PAYLOAD_BYTES, Device, topic
from devices.command_messages import CommandAck, CommandMessage, utc_text
from simulators.behaviour import CityWeather, DeviceState
from simulators.clock import SimClock
from simulators.faults import Fault, FaultRates
from simulators.payloads import batches, reading_json

BACKLOG_LIMIT: Final = 10_000  # readings a device keeps while offline; older ones are lost
_REMEMBERED_ANSWERS: Final = 256  # command ids a device remembers, to answer repeats alike
_MESSAGE_FAULTS: Final = frozenset(
    {Fault.MALFORMED_JSON, Fault.OVERSIZE, Fault.WRONG_TOPIC, Fault.DUPLICATE}
)
_FOREIGN_TENANT: Final = "GM9999"  # a tenant code no fleet of ours uses
_UNKNOWN_METRICS: Final = ("rssi", "battery_voltage", "enclosure_temperature")
_HOUR: Final = 3600.0
_DAY: Final = 86400.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading as sent: timestamp (epoch ms), sequence number, values, the fault it carries."""

    ts_ms: int
    seq: int
    metrics: dict[str, float]
    fault: Fault | None = None


@dataclass(slots=True)
class Outgoing:
    """What a device does at one moment: a message, or a change of its connection.

    `connection` is "offline" when the device drops its connection (its last will says so)
    and "online" when it comes back; status messages carry no readings.
    """

    topic: str
    payload: bytes
    readings: list[Reading] = field(default_factory=list)
    fault: Fault | None = None
    copies: int = 1
    retain: bool = False
    connection: str = ""


class SimulatedDevice:
    """A device's behaviour, schedule, faults and backlog; deterministic in (seed, device id)."""

    def __init__(
        self,
        device: Device,
        seed: int,
        clock: SimClock,
        faults: FaultRates | None = None,
        weather: CityWeather | None = None,
        *,
        spread: bool = True,
    ) -> None:
        self.device = device
        self.clock = clock
        self.faults = faults or FaultRates()
        self.state = DeviceState(device, seed, weather)
        self.kind = DEVICE_KINDS[device.kind]
        self.interval_s = device.interval_s or self.kind.interval_s
        self.topic = topic(device.tenant, device.device_id)
        self.status_topic = topic(device.tenant, device.device_id, "status")
        self._rng = random.Random(f"{seed}:faults:{device.device_id}")
        rng = self._rng
        # Devices boot at different moments, so their readings spread over an interval.
        self.next_due = clock.start + (rng.uniform(0, self.interval_s) if spread else 0.0)
        self.seq = 0
        self.skew_s = 0.0
        if self.faults.clock_skew and rng.random() < self.faults.clock_skew:
            # Wrong, but within what the platform accepts (300 s ahead, 30 days back).
            self.skew_s = rng.choice((rng.uniform(-6 * _HOUR, -60.0), rng.uniform(30.0, 200.0)))
        # A stream of its own, so switching command faults on changes no reading.
        draw = random.Random(f"{seed}:commands:{device.device_id}").random()
        self.command_fault = self.faults.command_fault(draw)
        # And one for what it measures: a polluted, loud or flooded street, a lamp gone wrong.
        draw = random.Random(f"{seed}:episode:{device.device_id}").random()
        self.state.episode = self.faults.episode(device.kind, draw)
        self.silent_until = -math.inf
        self.offline_until = -math.inf
        self._fault_table = self.faults.table()
        self._silent = self.faults.silent
        self._flap = self.faults.flap
        self.backlog: deque[Reading] = deque(maxlen=BACKLOG_LIMIT)
        self.lost = 0  # readings dropped from a full backlog
        self._answers: dict[str, CommandAck] = {}  # by command id, oldest first

    @property
    def offline(self) -> bool:
        """Whether the device is in a spell without connection."""
        return self.offline_until > self.next_due

    def tick(self) -> list[Outgoing]:
        """What the device does at `next_due`; then schedules its next reading."""
        due = self.next_due
        self.next_due = due + self.interval_s
        out: list[Outgoing] = []
        if due < self.silent_until:
            self.state.last_t = due  # silent devices keep their counters ticking
            return out
        was_offline = self.offline_until > -math.inf
        if was_offline and due >= self.offline_until:
            self.offline_until = -math.inf
            out.append(Outgoing(self.status_topic, b"online", retain=True, connection="online"))
            out.extend(self._backlog_batches())
        if self._silent and self._rng.random() < self._silent:
            self.silent_until = due + self.interval_s * self._rng.randint(5, 50)
            self.state.last_t = due
            return out
        if self._flap and self.offline_until == -math.inf and self._rng.random() < self._flap:
            self.offline_until = due + self.interval_s * self._rng.randint(2, 30)
            out.append(Outgoing(self.status_topic, b"offline", retain=True, connection="offline"))
        fault = None
        if self._fault_table:
            u = self._rng.random()
            for edge, candidate in self._fault_table:
                if u < edge:
                    fault = candidate
                    break
        reading = self._reading(due, fault)
        if self.offline_until > due:
            if len(self.backlog) == self.backlog.maxlen:
                self.lost += 1
            # Message faults need a message of their own; in a backlog only reading faults stay.
            if reading.fault is not None and reading.fault in _MESSAGE_FAULTS:
                reading = Reading(reading.ts_ms, reading.seq, reading.metrics)
            self.backlog.append(reading)
            return out
        out.append(self._message(reading))
        return out

    def command(self, payload: bytes, now: float) -> CommandAck:
        """Obey a command message (at `now`, epoch seconds) and return the device's answer.

        A repeated id (the platform may publish a command twice after a crash, the broker may
        redeliver) gets the first answer again and is not carried out twice.
        """
        try:
            message = CommandMessage.model_validate_json(payload)
        except ValidationError:
            return CommandAck(id=_unknown_id(payload), status="refused", detail="malformed command")
        ts = utc_text(datetime.fromtimestamp(now, UTC))
        if (earlier := self._answers.get(message.id)) is not None:
            return earlier
        if message.expires_at.timestamp() < now:
            status, detail = "refused", "past its deadline"
        else:
            status, detail = self.state.obey(message.name, message.args)
            if message.name == "set_interval" and status == "done" and self.state.interval_s:
                self.interval_s = self.state.interval_s
        answer = CommandAck(id=message.id, status=status, detail=detail, ts=ts)
        self._answers[message.id] = answer
        while len(self._answers) > _REMEMBERED_ANSWERS:
            self._answers.pop(next(iter(self._answers)))
        return answer

    def refuse(self, payload: bytes, now: float, reason: str) -> CommandAck:
        """Answer a command "refused" for `reason` without carrying it out (a fault on purpose)."""
        try:
            command_id = CommandMessage.model_validate_json(payload).id
        except ValidationError:
            command_id = _unknown_id(payload)
        ts = utc_text(datetime.fromtimestamp(now, UTC))
        return CommandAck(id=command_id, status="refused", detail=reason, ts=ts)

    def drain(self) -> list[Outgoing]:
        """The backlog as batches, when the simulation ends while the device is offline."""
        if not self.backlog:
            return []
        self.offline_until = -math.inf
        return [
            Outgoing(self.status_topic, b"online", retain=True, connection="online"),
            *self._backlog_batches(),
        ]

    def _reading(self, due: float, fault: Fault | None) -> Reading:
        metrics = self.state.reading(due)
        seq = self.seq
        self.seq += 1
        ts = due + self.skew_s
        if fault is None:
            return Reading(round(ts * 1000), seq, metrics)
        rng = self._rng
        if fault is Fault.FUTURE_TIMESTAMP:
            ts = max(ts, self.clock.wall()) + rng.uniform(_HOUR, 2 * _DAY)
        elif fault is Fault.STALE_TIMESTAMP:
            ts = min(ts, self.clock.wall()) - rng.uniform(31 * _DAY, 400 * _DAY)
        elif fault is Fault.OUT_OF_RANGE:
            metric = rng.choice(self.kind.metrics)
            high = metric.maximum + abs(metric.maximum) + 1.0
            low = metric.minimum - abs(metric.minimum) - 1.0
            metrics[metric.name] = rng.choice((high, low))
        elif fault is Fault.NOT_FINITE:
            metric = rng.choice(self.kind.metrics)
            metrics[metric.name] = rng.choice((math.nan, math.inf, -math.inf))
        elif fault is Fault.UNKNOWN_METRIC:
            metrics[rng.choice(_UNKNOWN_METRICS)] = round(rng.uniform(0, 10), 2)
        return Reading(round(ts * 1000), seq, metrics, fault)

    def _message(self, reading: Reading) -> Outgoing:
        payload = reading_json(reading.ts_ms, reading.seq, reading.metrics)
        fault = reading.fault
        if fault is None or fault not in _MESSAGE_FAULTS:
            return Outgoing(self.topic, payload, [reading], fault)
        name = self.device.device_id
        if fault is Fault.MALFORMED_JSON:
            payload = payload[: len(payload) // 2]  # cut off mid-message, as a lost packet would
        elif fault is Fault.OVERSIZE:
            # A firmware bug that pads its buffer: valid JSON, but beyond 64 KiB.
            payload = payload[:-1] + b" " * (MAX_PAYLOAD_BYTES + 1) + b"}"
        elif fault is Fault.WRONG_TOPIC:
            variant = self._rng.randrange(3)
            if variant == 0:
                where = topic(_FOREIGN_TENANT, name)
            elif variant == 1:
                where = topic(self.device.tenant, name.upper())
            else:
                where = topic(self.device.tenant, f"{name}-ghost")
            return Outgoing(where, payload, [reading], fault)
        elif fault is Fault.DUPLICATE:
            return Outgoing(self.topic, payload, [reading], fault, copies=2)
        return Outgoing(self.topic, payload, [reading], fault)

    def _backlog_batches(self) -> list[Outgoing]:
        held = list(self.backlog)
        self.backlog.clear()
        encoded = [reading_json(r.ts_ms, r.seq, r.metrics) for r in held]
        return [
            Outgoing(self.topic, payload, held[start:end])
            for start, end, payload in batches(encoded)
        ]


def _unknown_id(payload: bytes) -> str:
    """The id of a command we could not read, if its JSON got that far; else "unknown"."""
    try:
        value = orjson.loads(payload).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return "unknown"
    return value if isinstance(value, str) and 0 < len(value) <= 64 else "unknown"
