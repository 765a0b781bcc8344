"""The SensorThings entities of lantaarn, built from the registry and the metric catalogue.

| entity | from | `@iot.id` |
| --- | --- | --- |
| Thing | a device | `{deviceId}` |
| Location, FeatureOfInterest | the device's position (devices do not move) | `{deviceId}` |
| HistoricalLocation | the device placed there (installed, else registered) | `{deviceId}` |
| Sensor | a device kind | `{kind}` |
| ObservedProperty | a metric of the catalogue | `{metric}` |
| Datastream | raw readings of one metric of one device | `{deviceId}:{metric}` |
| Datastream | a rollup statistic of them | `{deviceId}:{metric}:{stat}_{window}` |
| Observation | one value of a Datastream | `{datastreamId}:{time in ns}` |

Rollup Datastreams are how a client asks for aggregated views: each stored statistic of each
rollup window (`1m`, `1h`) is a Datastream of its own, e.g. `dev-1:pm25:mean_1h` or
`dev-9:laeq:energetic_mean_1h`; their Observations carry the window as phenomenonTime.
A Thing lists its raw Datastreams and the hourly one of each metric's main statistic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Final

from api.sta.errors import EntityNotFound
from api.sta.geometry import point
from api.sta.instant import Instant
from devices import DEVICE_KINDS, Aggregation, Device, DeviceKind, Metric
from timeseries.aggregate import STATS

ENTITY_SETS: Final = (
    "Things",
    "Locations",
    "HistoricalLocations",
    "Sensors",
    "ObservedProperties",
    "Datastreams",
    "Observations",
    "FeaturesOfInterest",
)
# Navigation properties of each entity set: name -> (target set, to-many).
NAVIGATION: Final[dict[str, dict[str, tuple[str, bool]]]] = {
    "Things": {
        "Locations": ("Locations", True),
        "HistoricalLocations": ("HistoricalLocations", True),
        "Datastreams": ("Datastreams", True),
    },
    "Locations": {
        "Things": ("Things", True),
        "HistoricalLocations": ("HistoricalLocations", True),
    },
    "HistoricalLocations": {"Thing": ("Things", False), "Locations": ("Locations", True)},
    "Sensors": {"Datastreams": ("Datastreams", True)},
    "ObservedProperties": {"Datastreams": ("Datastreams", True)},
    "Datastreams": {
        "Thing": ("Things", False),
        "Sensor": ("Sensors", False),
        "ObservedProperty": ("ObservedProperties", False),
        "Observations": ("Observations", True),
    },
    "Observations": {
        "Datastream": ("Datastreams", False),
        "FeatureOfInterest": ("FeaturesOfInterest", False),
    },
    "FeaturesOfInterest": {"Observations": ("Observations", True)},
}
ROLLUP_WINDOWS: Final = ("1m", "1h")
WINDOW_NS: Final = {"1m": 60 * 10**9, "1h": 3600 * 10**9}
MAIN_STAT: Final = {
    Aggregation.GAUGE: "mean",
    Aggregation.LEVEL_DB: "energetic_mean",
    Aggregation.ANGLE: "circular_mean",
    Aggregation.COUNTER: "increase",
    Aggregation.STATE: "share_on",
}
OM_MEASUREMENT: Final = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEOJSON: Final = "application/geo+json"


@dataclass(slots=True)
class Entity:
    """One entity: its set, id, properties (times as Instant) and what it stands for."""

    set: str
    id: str
    props: dict[str, Any]
    device: Device | None = None
    kind: DeviceKind | None = None
    metric: Metric | None = None
    stream: Stream | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stream:
    """What a Datastream reads: a device's metric, raw (`stat` None) or a rollup statistic."""

    device: Device
    kind: DeviceKind
    metric: Metric
    stat: str | None = None
    window: str | None = None

    @property
    def id(self) -> str:
        """The Datastream's `@iot.id`."""
        base = f"{self.device.device_id}:{self.metric.name}"
        return base if self.stat is None else f"{base}:{self.stat}_{self.window}"

    @property
    def field(self) -> str:
        """The InfluxDB field holding its values."""
        return self.metric.name if self.stat is None else f"{self.metric.name}_{self.stat}"


def kinds_of(device: Device) -> list[DeviceKind]:
    """The catalogue kinds of a device, main kind first."""
    return [DEVICE_KINDS[k] for k in (device.kind, *device.extra_kinds) if k in DEVICE_KINDS]


def streams_of(device: Device) -> list[Stream]:
    """The Datastreams a Thing lists: raw per metric, and the hourly main statistic."""
    out: list[Stream] = []
    for kind in kinds_of(device):
        for metric in kind.metrics:
            out.append(Stream(device, kind, metric))
            out.append(Stream(device, kind, metric, MAIN_STAT[metric.aggregation], "1h"))
    return out


def parse_stream_id(text: str, devices: dict[str, Device]) -> Stream:
    """The Stream of a Datastream id; EntityNotFound when there is none (or it is not visible)."""
    parts = text.split(":")
    device = devices.get(parts[0])
    if device is None or len(parts) not in (2, 3):
        raise EntityNotFound(f"no Datastream {text!r}")
    for kind in kinds_of(device):
        metric = kind.metric(parts[1])
        if metric is None:
            continue
        if len(parts) == 2:
            return Stream(device, kind, metric)
        stat, _, window = parts[2].rpartition("_")
        if window in ROLLUP_WINDOWS and stat in STATS[metric.aggregation]:
            return Stream(device, kind, metric, stat, window)
    raise EntityNotFound(f"no Datastream {text!r}")


def _placed_at(device: Device) -> Instant | None:
    if device.installed_on is not None:
        return Instant.of(datetime.combine(device.installed_on, time(), UTC))
    if device.created_at is not None:
        return Instant.of(device.created_at.astimezone(UTC))
    return None


def thing(device: Device) -> Entity:
    """The Thing of a device."""
    properties: dict[str, Any] = {
        "tenant": device.tenant,
        "kind": device.kind,
        "extraKinds": list(device.extra_kinds),
        "status": "retired" if device.retired else "active",
    }
    for name, value in (
        ("firmware", device.firmware),
        ("owner", device.owner),
        ("observationGoal", device.observation_goal),
        ("installedOn", device.installed_on),
        ("reportingIntervalS", device.interval_s),
    ):
        if value is not None:
            properties[name] = value.isoformat() if isinstance(value, date) else value
    return Entity(
        "Things",
        device.device_id,
        {
            "name": device.name,
            "description": f"{_kind_label(device.kind)} {device.device_id} of {device.tenant}",
            "properties": properties,
        },
        device=device,
    )


def _kind_label(kind: str) -> str:
    return DEVICE_KINDS[kind].label if kind in DEVICE_KINDS else kind


def location(device: Device) -> Entity:
    """The Location of a device (its registered position)."""
    return Entity(
        "Locations",
        device.device_id,
        {
            "name": f"Position of {device.device_id}",
            "description": f"Where {device.name} stands",
            "encodingType": GEOJSON,
            "location": point(device.longitude, device.latitude).geojson(),
        },
        device=device,
    )


def historical_location(device: Device) -> Entity:
    """The HistoricalLocation of a device: placed at its position when installed or registered."""
    return Entity(
        "HistoricalLocations", device.device_id, {"time": _placed_at(device)}, device=device
    )


def feature_of_interest(device: Device) -> Entity:
    """The FeatureOfInterest of a device's Observations: the spot it measures."""
    return Entity(
        "FeaturesOfInterest",
        device.device_id,
        {
            "name": f"Surroundings of {device.device_id}",
            "description": f"The place {device.name} observes",
            "encodingType": GEOJSON,
            "feature": point(device.longitude, device.latitude).geojson(),
        },
        device=device,
    )


def sensor(kind: DeviceKind) -> Entity:
    """The Sensor of a device kind; its metadata lists what it measures."""
    return Entity(
        "Sensors",
        kind.name,
        {
            "name": kind.label,
            "description": kind.description,
            "encodingType": "application/json",
            "metadata": {
                "deviceKind": kind.name,
                "reportingIntervalS": kind.interval_s,
                "metrics": [
                    {
                        "name": m.name,
                        "unit": m.unit,
                        "minimum": m.minimum,
                        "maximum": m.maximum,
                        "aggregation": m.aggregation.value,
                    }
                    for m in kind.metrics
                ],
            },
        },
        kind=kind,
    )


def observed_property(metric: Metric) -> Entity:
    """The ObservedProperty of a catalogue metric."""
    return Entity(
        "ObservedProperties",
        metric.name,
        {
            "name": metric.label,
            "definition": f"urn:lantaarn:metric:{metric.name}",
            "description": metric.description,
            "properties": {
                "unit": metric.unit,
                "minimum": metric.minimum,
                "maximum": metric.maximum,
                "aggregation": metric.aggregation.value,
            },
        },
        metric=metric,
    )


def datastream(stream: Stream) -> Entity:
    """The Datastream of a stream; phenomenonTime and observedArea are filled from the data."""
    metric, device = stream.metric, stream.device
    unit = metric.unit
    name = f"{metric.label} at {device.device_id}"
    description = f"{metric.description}, as measured by {device.name}"
    properties: dict[str, Any] = {"aggregation": metric.aggregation.value}
    if stream.stat is not None:
        name = f"{metric.label} at {device.device_id}, {stream.stat} per {stream.window}"
        description += f"; {stream.stat} of each {stream.window} window (rollup)"
        properties |= {"statistic": stream.stat, "window": stream.window}
        if stream.stat in ("count", "share_on"):
            unit = "1"
        elif stream.stat == "covered_s":
            unit = "s"
    return Entity(
        "Datastreams",
        stream.id,
        {
            "name": name,
            "description": description,
            "observationType": OM_MEASUREMENT,
            "unitOfMeasurement": {
                "name": metric.label if unit == metric.unit else unit,
                "symbol": unit,
                "definition": f"http://unitsofmeasure.org/ucum.html#{unit}",
            },
            "observedArea": None,
            "phenomenonTime": None,
            "resultTime": None,
            "properties": properties,
        },
        device=device,
        kind=stream.kind,
        metric=metric,
        stream=stream,
    )


def all_kinds() -> list[DeviceKind]:
    """Every device kind of the catalogue, by name."""
    return [DEVICE_KINDS[name] for name in sorted(DEVICE_KINDS)]


def all_metrics() -> list[Metric]:
    """Every metric of the catalogue once, by name."""
    seen: dict[str, Metric] = {}
    for kind in DEVICE_KINDS.values():
        for metric in kind.metrics:
            seen.setdefault(metric.name, metric)
    return [seen[name] for name in sorted(seen)]
