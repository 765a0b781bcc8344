"""Decode and validate: one MQTT message in, typed points and rejections out. Never raises."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Final

from pydantic import ValidationError

from devices import DEVICE_KINDS, MAX_PAYLOAD_BYTES, Device, Metric, TelemetryIn, parse_topic
from devices import topic as topic_of
from ingest.reasons import Reason
from timeseries.lineprotocol import Encoder, FieldValue, Point, Tags, series_key, tags
from timeseries.schema import REJECTIONS, raw_measurement

EXCERPT_BYTES: Final = 256
_NS: Final = 1_000_000_000
_LARGEST: Final = sys.float_info.max


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
    # Which message it came from (a hash of topic and payload): a message redelivered gets the
    # same rejections, and the sink stores them at the same times (see ingest.sink).
    message: int = 0


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What decoding needs of a registry device, prepared once per registry snapshot."""

    device: Device
    # metric name -> (the device kind holding it, the metric)
    metrics: Mapping[str, tuple[str, Metric]]
    # metric name -> (device kind, lowest, highest valid value), bounds clamped to finite
    # numbers so that one chained comparison also refuses infinities and NaN
    limits: Mapping[str, tuple[str, float, float]] = field(default_factory=dict)
    # the tags of the device's raw points, and device kind -> its raw measurement
    tags: Tags = ()
    measurements: Mapping[str, str] = field(default_factory=dict)
    # device kind -> the series key of its raw points (measurement and tags, encoded once)
    series: Mapping[str, str] = field(default_factory=dict)
    # metric name -> (lowest, highest valid value) of the device's own kind only, as in
    # `limits`: the one look-up per metric of the common case
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _KindsPart:
    """What KnownDevice takes from a device's kinds alone: one per set of kinds, shared."""

    metrics: Mapping[str, tuple[str, Metric]]
    limits: Mapping[str, tuple[str, float, float]]
    measurements: Mapping[str, str]
    bounds: Mapping[str, tuple[float, float]]


@cache
def _kinds_part(kind_names: tuple[str, ...]) -> _KindsPart:
    """The metrics, limits, measurements and own-kind bounds of a device of these kinds
    (its main kind first). Bounded by the catalogue: kinds are checked when registered."""
    metrics: dict[str, tuple[str, Metric]] = {}
    measurements: dict[str, str] = {}
    for kind_name in kind_names:
        kind = DEVICE_KINDS.get(kind_name)
        if kind is None:
            continue
        measurements[kind.name] = raw_measurement(kind.name)
        for metric in kind.metrics:
            metrics.setdefault(metric.name, (kind.name, metric))  # the device's own kind wins
    limits = {
        name: (kind, max(metric.minimum, -_LARGEST), min(metric.maximum, _LARGEST))
        for name, (kind, metric) in metrics.items()
    }
    bounds = {
        name: (low, high) for name, (owner, low, high) in limits.items() if owner == kind_names[0]
    }
    return _KindsPart(metrics, limits, measurements, bounds)


@cache
def _tenant_tag(tenant: str) -> tuple[str, str]:
    """The tenant's tag pair, one per tenant."""
    return ("tenant", tenant)


def prepare(devices: Iterable[Device]) -> dict[str, KnownDevice]:
    """Index the registry's devices for decoding.

    Per device only its tags and series keys are its own; what follows from its kinds is
    shared by every device of the same kinds (a worker holds the whole fleet).
    """
    index: dict[str, KnownDevice] = {}
    for device in devices:
        part = _kinds_part((device.kind, *device.extra_kinds))
        # As tags() gives them (sorted by key), the tenant's pair shared.
        device_tags = (("device_id", device.device_id), _tenant_tag(device.tenant))
        index[device.device_id] = KnownDevice(
            device,
            part.metrics,
            part.limits,
            device_tags,
            part.measurements,
            {kind: series_key(name, device_tags) for kind, name in part.measurements.items()},
            part.bounds,
        )
    return index


@dataclass(slots=True)
class Decoded:
    """What decoding one or more messages produced."""

    points: list[Point] = field(default_factory=list)
    # the line protocol of each point, in the same order: encoded as the point is made
    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    stored_values: int = 0
    late_values: int = 0
    # (device kind, time in ns) of readings stored after their window's rollup was made
    late: list[tuple[str, int]] = field(default_factory=list)


# How far ahead of and behind its receive time a reading's timestamp may be (seconds); the
# settings' defaults too.
MAX_FUTURE_S: Final = 300.0
MAX_AGE_S: Final = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class TimeRules:
    """How far from the receive time a reading's timestamp may be (seconds)."""

    max_future_s: float = MAX_FUTURE_S
    max_age_s: float = MAX_AGE_S
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
        if moment.tzinfo is None or ("T" not in ts and "t" not in ts):
            return f"ts {ts[:40]!r} needs a date, a time and a zone"
        whole = int(moment.timestamp())
        return whole * _NS + moment.microsecond * 1000
    if not math.isfinite(ts):
        return "ts is not a finite number"
    if isinstance(ts, int):
        return ts * _NS
    return round(ts * 1e6) * 1000  # microsecond resolution, like RFC 3339 with six decimals


_BOTH_FORMS: Final = "give either metrics (with ts, seq) or readings"


def excerpt(payload: bytes) -> bytes:
    """The start of a payload, for the dead-letter."""
    return payload[:EXCERPT_BYTES]


def message_key(topic: str, payload: bytes) -> int:
    """What tells one message from another: the same for a redelivery of the same message.

    Python's own hash (64 bits, seeded per process): it is only compared within one worker's
    lifetime, and costs a fraction of a cryptographic one.
    """
    return hash((topic, payload))


def _rejecter(
    out: Decoded, topic_name: str, payload: bytes, received_ns: int
) -> Callable[..., None]:
    """`reject(reason, detail, tenant="", device_id="")`: set this whole message aside.

    Made only once a message is refused: a closure per message costs more than it is worth.
    """

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
                message=message_key(topic_name, payload),
            )
        )

    return reject


# TelemetryIn.model_validate_json without its Python wrapper (the same validator).
_validate_telemetry: Final = TelemetryIn.__pydantic_validator__.validate_json


class Decoder:
    """Turns telemetry messages into points, against a registry snapshot.

    Readings without `ts` are stored at their receive time, made unique per device: several
    messages of one socket read share a receive time, and points of one series and time replace
    each other. So each such reading gets a nanosecond time of its own on this worker's `lane`
    (time modulo LANES equals the lane, so workers never pick the same one), later than the
    last one given to that device. `assigned` (device id -> last time given) is carried over
    from the decoder of the previous registry snapshot.
    """

    def __init__(
        self,
        devices: Mapping[str, KnownDevice],
        rules: TimeRules | None = None,
        *,
        lane: int = 0,
        assigned: dict[str, int] | None = None,
    ) -> None:
        # Changed in place by `apply` as the registry changes.
        self.devices: dict[str, KnownDevice] = (
            devices if isinstance(devices, dict) else dict(devices)
        )
        self.rules = rules or TimeRules()
        self.lane = lane % LANES
        self.assigned: dict[str, int] = {} if assigned is None else assigned
        self._max_future_ns = round(self.rules.max_future_s * _NS)
        self._max_age_ns = round(self.rules.max_age_s * _NS)
        self._late_after_ns = round(self.rules.late_after_s * _NS)
        # telemetry topic -> its device, for topics that passed every check against this
        # snapshot. Bounded by the registry: each device has exactly one telemetry topic.
        self._routes: dict[str, KnownDevice] = {}
        self._encode = Encoder().line_in

    def apply(self, changed: Mapping[str, KnownDevice]) -> None:
        """Take devices added or changed in a newer registry revision (see `prepare`).

        Costs what changed, not the fleet: the other devices keep their routes. Call it
        between messages (the worker decodes and applies on one event loop), so a message is
        decoded against the devices wholly before or wholly after the change.
        """
        for device_id, known in changed.items():
            old = self.devices.get(device_id)
            if old is not None:
                # Its route (if any) was checked against the old tenant and retirement.
                self._routes.pop(topic_of(old.device.tenant, device_id), None)
            self.devices[device_id] = known

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
                    message=message_key(topic, payload),
                )
            )

    def _decode(self, topic_name: str, payload: bytes, received_ns: int, out: Decoded) -> None:
        known = self._routes.get(topic_name)
        if known is None:
            known = self._route(topic_name, payload, received_ns, out)
            if known is None:
                return
        device = known.device
        tenant, device_id = device.tenant, device.device_id
        if len(payload) > MAX_PAYLOAD_BYTES:
            _rejecter(out, topic_name, payload, received_ns)(
                Reason.PAYLOAD_TOO_LARGE,
                f"payload is {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}",
                tenant,
                device_id,
            )
            return
        try:
            message: TelemetryIn = _validate_telemetry(payload)
        except ValidationError as exc:
            reject = _rejecter(out, topic_name, payload, received_ns)
            first = exc.errors(include_url=False)[0]
            if first["type"].startswith("json"):
                reject(Reason.BAD_JSON, f"not JSON: {first['msg']}", tenant, device_id)
            else:
                where = ".".join(str(p) for p in first["loc"])
                reject(Reason.SCHEMA, f"{where}: {first['msg']}"[:200], tenant, device_id)
            return
        # The two forms of TelemetryIn.all_readings, without building a ReadingIn per message
        # (that validates the metrics a second time and costs as much as parsing the JSON).
        readings = message.readings
        if readings is not None:
            if message.metrics is not None or message.ts is not None or message.seq is not None:
                _rejecter(out, topic_name, payload, received_ns)(
                    Reason.SCHEMA, _BOTH_FORMS, tenant, device_id
                )
                return
            for reading in readings:
                self._reading(
                    reading.ts, reading.seq, reading.metrics, known, topic_name, payload,
                    received_ns, out,
                )  # fmt: skip
        elif message.metrics:
            self._reading(
                message.ts, message.seq, message.metrics, known, topic_name, payload,
                received_ns, out,
            )  # fmt: skip
        else:
            _rejecter(out, topic_name, payload, received_ns)(
                Reason.SCHEMA, _BOTH_FORMS, tenant, device_id
            )

    def _route(
        self, topic_name: str, payload: bytes, received_ns: int, out: Decoded
    ) -> KnownDevice | None:
        """The device a telemetry topic belongs to, or None (and a rejection) when refused."""

        reject = _rejecter(out, topic_name, payload, received_ns)

        parsed = parse_topic(topic_name)
        if parsed is None or parsed.channel != "telemetry":
            reject(Reason.TOPIC_INVALID, "topic is not lantaarn/v1/{tenant}/{deviceId}/telemetry")
            return None
        tenant, device_id = parsed.tenant, parsed.device_id
        known = self.devices.get(device_id)
        if known is None:
            # No tenant tag: an unregistered sender could otherwise mint series without bound.
            reject(Reason.UNKNOWN_DEVICE, f"device {device_id!r} is not registered", "", device_id)
            return None
        if known.device.tenant != tenant:
            reject(
                Reason.TENANT_MISMATCH,
                f"device {device_id!r} belongs to another tenant than {tenant!r}",
                known.device.tenant,
                device_id,
            )
            return None
        if known.device.retired:
            reject(Reason.DEVICE_RETIRED, f"device {device_id!r} is retired", tenant, device_id)
            return None
        self._routes[topic_name] = known
        return known

    def _reading(
        self,
        ts_given: str | float | None,
        seq: int | None,
        metrics: Mapping[str, float],
        known: KnownDevice,
        topic_name: str,
        payload: bytes,
        received_ns: int,
        out: Decoded,
    ) -> None:
        device = known.device
        ts = _timestamp_ns(ts_given)
        detail = ""
        reason: Reason | None = None
        if isinstance(ts, str):
            reason, detail = Reason.TIMESTAMP_INVALID, ts
        elif ts is not None and ts > received_ns + self._max_future_ns:
            reason, detail = Reason.TIMESTAMP_IN_FUTURE, "ts is ahead of the receive time"
        elif ts is not None and ts < received_ns - self._max_age_ns:
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
                    count=len(metrics),
                    message=message_key(topic_name, payload),
                )
            )
            return
        bounds = known.bounds
        limits = known.limits
        main = device.kind
        values: dict[str, FieldValue] = {}  # the device's own kind's metrics
        others: dict[str, dict[str, FieldValue]] | None = None  # those of its extra kinds
        for name, value in metrics.items():
            bound = bounds.get(name)
            if bound is not None:
                number = float(value)
                # The bounds are finite, so this also refuses NaN and the infinities.
                if bound[0] <= number <= bound[1]:
                    values[name] = number
                    continue
            # Another kind's metric, an unknown one, or a value out of range.
            entry = limits.get(name)
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
                        message=message_key(topic_name, payload),
                    )
                )
                continue
            kind, lowest, highest = entry
            number = float(value)
            if lowest <= number <= highest:
                if others is None:
                    others = {kind: {name: number}}
                else:
                    others.setdefault(kind, {})[name] = number
                continue
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
                        message=message_key(topic_name, payload),
                    )
                )
                continue
            metric = known.metrics[name][1]
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
                    message=message_key(topic_name, payload),
                )
            )
        if others is None and not values:
            return
        if ts is None:
            at = self._assign(device.device_id, received_ns)
        elif isinstance(ts, str):
            return  # not reached: an unreadable ts was rejected above
        else:
            at = ts
        if others is None:
            # The common case, one point of the device's own kind, without the general
            # path's dict of kinds and its loop: this runs for nearly every message.
            count = len(values)
            if seq is not None:
                values["seq"] = seq
            if ts is None:
                values["ts_assigned"] = True
            point = Point(known.measurements[main], known.tags, values, at)
            out.points.append(point)
            out.lines.append(self._encode(known.series[main], point))
            out.stored_values += count
            if at < received_ns - self._late_after_ns:
                out.late_values += count
                out.late.append((main, at))
            return
        fields = {main: values, **others} if values else others
        late = at < received_ns - self._late_after_ns
        points = out.points
        lines = out.lines
        encode = self._encode
        measurements = known.measurements
        series = known.series
        for kind, kind_values in fields.items():
            count = len(kind_values)
            if seq is not None:
                kind_values["seq"] = seq
            if ts is None:
                kind_values["ts_assigned"] = True
            point = Point(measurements[kind], known.tags, kind_values, at)
            points.append(point)
            lines.append(encode(series[kind], point))
            out.stored_values += count
            if late:
                out.late_values += count
                out.late.append((kind, at))

    def _assign(self, device_id: str, received_ns: int) -> int:
        """A time for a reading without `ts`: its receive time, unique (see the class)."""
        at = received_ns - received_ns % LANES + self.lane
        last = self.assigned.get(device_id)
        if last is not None and at <= last:
            at = last + LANES
        self.assigned[device_id] = at
        return at


# Workers giving receive times to readings without `ts` keep to their own residue modulo this
# (at most 64 workers, see IngestSettings.workers): 64 ns of resolution traded for uniqueness.
LANES: Final = 64


def rejection_point(rejection: Rejection, at_ns: int, worker: str) -> Point:
    """The dead-letter point of a rejection at `at_ns`, tagged with the worker that wrote it.

    Points of one series and time replace each other: the sink gives every rejection its own
    time (see InfluxSink) and each worker its own series.
    """
    fields: dict[str, FieldValue] = {
        "device_id": rejection.device_id,
        "topic": rejection.topic,
        "detail": rejection.detail,
        "excerpt": rejection.excerpt.decode("utf-8", "replace"),
        "values": rejection.count,
    }
    if rejection.metric:
        fields["metric"] = rejection.metric
    return Point(
        REJECTIONS,
        tags(reason=rejection.reason.value, tenant=rejection.tenant, worker=worker),
        fields,
        at_ns,
    )
