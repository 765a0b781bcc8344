"""Decode and validate: one MQTT message in, line protocol and rejections out. Never raises."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pydantic import ValidationError

from devices import DEVICE_KINDS, MAX_PAYLOAD_BYTES, Device, Metric, TelemetryIn, parse_topic
from devices.payload import ReadingIn
from ingest.reasons import Reason
from timeseries.lineprotocol import escape_key, series_key, string_field
from timeseries.schema import REJECTIONS, raw_measurement

EXCERPT_BYTES: Final = 256
_NS: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Rejection:
    """One thing set aside: a whole message, a reading, or one metric of a reading."""

    reason: Reason
    topic: str
    detail: str
    received_ns: int
    tenant: str = ""
    device_id: str = ""
    metric: str = ""
    excerpt: bytes = b""
    count: int = 1  # how many metric values it stands for (1 when unknown)


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What decoding needs of a registry device, prepared once per registry snapshot."""

    device: Device
    # metric name -> (series key of its measurement, the metric)
    metrics: Mapping[str, tuple[str, Metric]]


def prepare(devices: Iterable[Device]) -> dict[str, KnownDevice]:
    """Index the registry's devices for decoding."""
    index: dict[str, KnownDevice] = {}
    for device in devices:
        metrics: dict[str, tuple[str, Metric]] = {}
        for kind_name in (device.kind, *device.extra_kinds):
            kind = DEVICE_KINDS.get(kind_name)
            if kind is None:
                continue
            key = series_key(
                raw_measurement(kind.name), {"tenant": device.tenant, "device_id": device.device_id}
            )
            for metric in kind.metrics:
                metrics.setdefault(metric.name, (key, metric))  # the device's own kind wins
        index[device.device_id] = KnownDevice(device, metrics)
    return index


@dataclass(slots=True)
class Decoded:
    """What decoding one or more messages produced."""

    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    stored_values: int = 0
    late_values: int = 0
    # device id -> newest receive time (ns) of a stored reading, for device status
    seen: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TimeRules:
    """How far from the receive time a reading's timestamp may be (seconds)."""

    max_future_s: float = 300.0
    max_age_s: float = 30 * 86400.0
    # Older than this at arrival, a reading misses the rollup of its window (grace + a minute).
    late_after_s: float = 180.0


def _timestamp_ns(ts: str | float | int | None) -> int | str | None:
    """Nanoseconds since the epoch; None when absent; a message when unreadable."""
    if ts is None:
        return None
    if isinstance(ts, str):
        try:
            moment = datetime.fromisoformat(ts)
        except ValueError:
            return f"ts {ts[:40]!r} is not RFC 3339"
        if moment.tzinfo is None or "T" not in ts.upper():
            return f"ts {ts[:40]!r} needs a date, a time and a zone"
        whole = int(moment.timestamp())
        return whole * _NS + moment.microsecond * 1000
    if not math.isfinite(ts):
        return "ts is not a finite number"
    if isinstance(ts, int):
        return ts * _NS
    return round(ts * 1e6) * 1000  # microsecond resolution, like RFC 3339 with six decimals


def excerpt(payload: bytes) -> bytes:
    """The start of a payload, for the dead-letter."""
    return payload[:EXCERPT_BYTES]


class Decoder:
    """Turns telemetry messages into line protocol, against a registry snapshot."""

    def __init__(self, devices: Mapping[str, KnownDevice], rules: TimeRules | None = None) -> None:
        self.devices = devices
        self.rules = rules or TimeRules()

    def decode(self, topic: str, payload: bytes, received_ns: int, out: Decoded) -> None:
        """Add what one telemetry message yields to `out`."""
        try:
            self._decode(topic, payload, received_ns, out)
        except Exception as exc:  # noqa: BLE001 - a device must never crash the worker
            out.rejections.append(
                Rejection(
                    Reason.SCHEMA,
                    topic[:256],
                    f"undecodable: {type(exc).__name__}",
                    received_ns,
                    excerpt=excerpt(payload),
                )
            )

    def _decode(self, topic_name: str, payload: bytes, received_ns: int, out: Decoded) -> None:
        def reject(reason: Reason, detail: str, tenant: str = "", device_id: str = "") -> None:
            out.rejections.append(
                Rejection(
                    reason,
                    topic_name[:256],
                    detail,
                    received_ns,
                    tenant,
                    device_id,
                    excerpt=excerpt(payload),
                )
            )

        parsed = parse_topic(topic_name)
        if parsed is None or parsed.channel != "telemetry":
            reject(Reason.TOPIC_INVALID, "topic is not lantaarn/v1/{tenant}/{deviceId}/telemetry")
            return
        tenant, device_id = parsed.tenant, parsed.device_id
        known = self.devices.get(device_id)
        if known is None:
            # No tenant tag: an unregistered sender could otherwise mint series without bound.
            reject(Reason.UNKNOWN_DEVICE, f"device {device_id!r} is not registered", "", device_id)
            return
        if known.device.tenant != tenant:
            reject(
                Reason.TENANT_MISMATCH,
                f"device {device_id!r} belongs to another tenant than {tenant!r}",
                known.device.tenant,
                device_id,
            )
            return
        if known.device.retired:
            reject(Reason.DEVICE_RETIRED, f"device {device_id!r} is retired", tenant, device_id)
            return
        if len(payload) > MAX_PAYLOAD_BYTES:
            reject(
                Reason.PAYLOAD_TOO_LARGE,
                f"payload is {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}",
                tenant,
                device_id,
            )
            return
        try:
            message = TelemetryIn.model_validate_json(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["type"].startswith("json"):
                reject(Reason.BAD_JSON, f"not JSON: {first['msg']}", tenant, device_id)
            else:
                where = ".".join(str(p) for p in first["loc"])
                reject(Reason.SCHEMA, f"{where}: {first['msg']}"[:200], tenant, device_id)
            return
        readings = message.all_readings()
        if readings is None:
            reject(
                Reason.SCHEMA, "give either metrics (with ts, seq) or readings", tenant, device_id
            )
            return
        for reading in readings:
            self._reading(reading, known, topic_name, payload, received_ns, out)

    def _reading(
        self,
        reading: ReadingIn,
        known: KnownDevice,
        topic_name: str,
        payload: bytes,
        received_ns: int,
        out: Decoded,
    ) -> None:
        device = known.device
        ts = _timestamp_ns(reading.ts)
        detail = ""
        reason: Reason | None = None
        if isinstance(ts, str):
            reason, detail = Reason.TIMESTAMP_INVALID, ts
        elif ts is not None and ts > received_ns + self.rules.max_future_s * _NS:
            reason, detail = Reason.TIMESTAMP_IN_FUTURE, "ts is ahead of the receive time"
        elif ts is not None and ts < received_ns - self.rules.max_age_s * _NS:
            reason, detail = Reason.TIMESTAMP_TOO_OLD, "ts is older than the platform accepts"
        if reason is not None:
            out.rejections.append(
                Rejection(
                    reason,
                    topic_name[:256],
                    detail,
                    received_ns,
                    device.tenant,
                    device.device_id,
                    excerpt=excerpt(payload),
                    count=len(reading.metrics),
                )
            )
            return
        stamped = ts is None
        at = received_ns if ts is None or isinstance(ts, str) else ts
        fields: dict[str, list[str]] = {}
        for name, value in reading.metrics.items():
            entry = known.metrics.get(name)
            if entry is None:
                out.rejections.append(
                    Rejection(
                        Reason.UNKNOWN_METRIC,
                        topic_name[:256],
                        f"{device.kind} devices have no metric {name[:64]!r}",
                        received_ns,
                        device.tenant,
                        device.device_id,
                        name[:64],
                        excerpt(payload),
                    )
                )
                continue
            key, metric = entry
            number = float(value)
            if not math.isfinite(number):
                out.rejections.append(
                    Rejection(
                        Reason.NOT_FINITE,
                        topic_name[:256],
                        f"{name} is {number}",
                        received_ns,
                        device.tenant,
                        device.device_id,
                        name,
                        excerpt(payload),
                    )
                )
                continue
            if not metric.minimum <= number <= metric.maximum:
                out.rejections.append(
                    Rejection(
                        Reason.OUT_OF_RANGE,
                        topic_name[:256],
                        f"{name}={number} outside {metric.minimum}..{metric.maximum} {metric.unit}",
                        received_ns,
                        device.tenant,
                        device.device_id,
                        name,
                        excerpt(payload),
                    )
                )
                continue
            fields.setdefault(key, []).append(f"{name}={number!r}")
        if not fields:
            return
        extra = []
        if reading.seq is not None:
            extra.append(f"seq={reading.seq}i")
        if stamped:
            extra.append("ts_assigned=true")
        for key, parts in fields.items():
            out.lines.append(f"{key} {','.join(parts + extra)} {at}")
            out.stored_values += len(parts)
            if at < received_ns - self.rules.late_after_s * _NS:
                out.late_values += len(parts)
        if received_ns > out.seen.get(device.device_id, 0):
            out.seen[device.device_id] = received_ns


def rejection_line(rejection: Rejection, sequence: int) -> str:
    """The dead-letter point of a rejection; `sequence` keeps same-nanosecond points apart."""
    tags = f"{REJECTIONS},reason={escape_key(rejection.reason.value)}"
    if rejection.tenant:
        tags += f",tenant={escape_key(rejection.tenant)}"
    fields = [
        f"device_id={string_field(rejection.device_id)}",
        f"topic={string_field(rejection.topic)}",
        f"detail={string_field(rejection.detail)}",
        f"excerpt={string_field(rejection.excerpt.decode('utf-8', 'replace'))}",
        f"values={rejection.count}i",
    ]
    if rejection.metric:
        fields.append(f"metric={string_field(rejection.metric)}")
    return f"{tags} {','.join(fields)} {rejection.received_ns + sequence}"
