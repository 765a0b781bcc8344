"""The ground truth of a simulation: what was sent, with which fault, and what ingest must do.

Every reading published is recorded with the message that carried it. `expected_outcome()`
applies the platform's documented rules (topic scheme, registry, 64 KiB, time limits, the
catalogue's metrics and ranges) in the order ingest applies them, so a test can reconcile
published = stored + rejected by reason, reading by reading and metric by metric.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from devices import DEVICE_KINDS, MAX_PAYLOAD_BYTES, Device, parse_topic
from simulators.faults import Fault

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Sent:
    """One published reading: device, timestamp (ns), sequence number, the values sent."""

    device_id: str
    tenant: str
    ts_ns: int
    seq: int
    metrics: dict[str, float]
    fault: str | None = None  # the fault injected on purpose, if any
    message: int = -1  # the number of the message that carried it


@dataclass(frozen=True, slots=True)
class Message:
    """One telemetry message as published: where, how big, when (wall clock, ns), how often."""

    number: int
    topic: str
    size: int  # bytes
    sent_ns: int
    readings: tuple[int, ...]  # indices into Ledger.sent
    fault: str | None = None
    copies: int = 1  # a duplicated message was published twice


@dataclass(frozen=True, slots=True)
class TimeLimits:
    """The platform's limits on timestamps (seconds), as ingest's defaults."""

    max_future_s: float = 300.0
    max_age_s: float = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Rejected:
    """One dead-letter record ingest must write: reason, device, metric, values it stands for."""

    reason: str
    device_id: str
    metric: str
    values: int


@dataclass(slots=True)
class Outcome:
    """What ingest must make of everything published.

    `stored_values` and `rejected` count metric values the way the worker counts them (a
    duplicated message counts twice; a rejected message counts 1). `points` is what InfluxDB
    keeps: (kind, device id, ts ns) -> the metrics stored (duplicates collapse). `records` counts
    the dead-letter records by what they say.
    """

    stored_values: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    points: dict[tuple[str, str, int], dict[str, float]] = field(default_factory=dict)
    records: Counter[Rejected] = field(default_factory=Counter)

    @property
    def rejected_values(self) -> int:
        """Metric values rejected, all reasons."""
        return sum(self.rejected.values())


@dataclass(slots=True)
class Ledger:
    """Thread-safe record of every reading and message a simulator published."""

    sent: list[Sent] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: Sent) -> int:
        """Record one published reading; returns its index."""
        with self._lock:
            self.sent.append(entry)
            return len(self.sent) - 1

    def add_message(
        self,
        topic: str,
        size: int,
        sent_ns: int,
        readings: list[Sent],
        fault: str | None = None,
        copies: int = 1,
    ) -> None:
        """Record a message and the readings it carried."""
        with self._lock:
            number = len(self.messages)
            first = len(self.sent)
            self.sent.extend(
                Sent(r.device_id, r.tenant, r.ts_ns, r.seq, r.metrics, r.fault, number)
                for r in readings
            )
            indices = tuple(range(first, len(self.sent)))
            self.messages.append(Message(number, topic, size, sent_ns, indices, fault, copies))

    def by_device(self) -> dict[str, list[Sent]]:
        """The readings sent, per device, in the order sent."""
        out: dict[str, list[Sent]] = {}
        with self._lock:
            for entry in self.sent:
                out.setdefault(entry.device_id, []).append(entry)
        return out

    def faults(self) -> Counter[str]:
        """How many readings each fault hit."""
        with self._lock:
            return Counter(s.fault for s in self.sent if s.fault is not None)

    def __len__(self) -> int:
        with self._lock:
            return len(self.sent)

    def expected_outcome(
        self, registered: Mapping[str, Device], limits: TimeLimits | None = None
    ) -> Outcome:
        """What ingest must store and reject, given the registry's devices (by id)."""
        limits = limits or TimeLimits()
        out = Outcome()
        with self._lock:
            for message in self.messages:
                _classify(message, self.sent, registered, limits, out)
        return out


def _classify(
    message: Message,
    sent: list[Sent],
    registered: Mapping[str, Device],
    limits: TimeLimits,
    out: Outcome,
) -> None:
    copies = message.copies

    def whole(reason: str, device_id: str = "") -> None:
        # A message rejected whole is one dead-letter record that stands for one value.
        out.rejected[reason] += copies
        out.records[Rejected(reason, device_id, "", 1)] += copies

    parsed = parse_topic(message.topic)
    if parsed is None or parsed.channel != "telemetry":
        whole("topic_invalid")
        return
    device = registered.get(parsed.device_id)
    if device is None:
        whole("unknown_device", parsed.device_id)
        return
    if device.tenant != parsed.tenant:
        whole("tenant_mismatch", device.device_id)
        return
    if device.retired:
        whole("device_retired", device.device_id)
        return
    if message.size > MAX_PAYLOAD_BYTES:
        whole("payload_too_large", device.device_id)
        return
    if message.fault == Fault.MALFORMED_JSON:
        whole("bad_json", device.device_id)
        return
    kind = DEVICE_KINDS[device.kind]
    ranges = {m.name: (m.minimum, m.maximum) for m in kind.metrics}
    newest = message.sent_ns + int(limits.max_future_s * _NS)
    oldest = message.sent_ns - int(limits.max_age_s * _NS)
    for index in message.readings:
        reading = sent[index]
        reason = ""
        if reading.ts_ns > newest:
            reason = "timestamp_in_future"
        elif reading.ts_ns < oldest:
            reason = "timestamp_too_old"
        if reason:
            out.rejected[reason] += len(reading.metrics) * copies
            out.records[Rejected(reason, device.device_id, "", len(reading.metrics))] += copies
            continue
        stored: dict[str, float] = {}
        for name, value in reading.metrics.items():
            bounds = ranges.get(name)
            if bounds is None:
                reason = "unknown_metric"
            elif not math.isfinite(value):
                reason = "not_finite"
            elif not bounds[0] <= value <= bounds[1]:
                reason = "out_of_range"
            else:
                stored[name] = float(value)
                continue
            out.rejected[reason] += copies
            out.records[Rejected(reason, device.device_id, name, 1)] += copies
        if stored:
            out.stored_values += len(stored) * copies
            key = (kind.name, device.device_id, reading.ts_ns)
            out.points.setdefault(key, {}).update(stored)
