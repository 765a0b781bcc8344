"""What the API returns and accepts: camelCase pydantic models, one per resource shape."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.live import LiveState
from api.timefmt import format_ns
from devices import DEVICE_KINDS, Device
from devices.commands_catalogue import Argument, CommandSpec, commands_of


class Out(BaseModel):
    """Base of the API's answers: camelCase properties."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class PointGeometry(Out):
    """A GeoJSON point in CRS84: [longitude, latitude]."""

    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float]


class MetricOut(Out):
    """A metric of the catalogue."""

    name: str
    label: str
    unit: str = Field(description="UCUM code")
    minimum: float
    maximum: float
    aggregation: str
    description: str


class ArgumentOut(Out):
    """An argument of a command: its JSON type and, for numbers, the range (edges included)."""

    name: str
    type: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    unit: str | None = Field(None, description="UCUM code")

    @classmethod
    def of(cls, argument: Argument) -> ArgumentOut:
        """The API view of an argument."""
        return cls(
            name=argument.name,
            type=argument.type.value,
            description=argument.description,
            minimum=argument.minimum,
            maximum=argument.maximum,
            pattern=argument.pattern,
            unit=argument.unit,
        )


class CommandSpecOut(Out):
    """A command a device kind understands; every argument is required."""

    name: str
    description: str
    arguments: list[ArgumentOut]

    @classmethod
    def of(cls, spec: CommandSpec) -> CommandSpecOut:
        """The API view of a catalogue command."""
        return cls(
            name=spec.name,
            description=spec.description,
            arguments=[ArgumentOut.of(a) for a in spec.arguments],
        )


class DeviceKindOut(Out):
    """A device kind of the catalogue."""

    name: str
    label: str
    description: str
    interval_seconds: float
    personal_data: bool = Field(description="its readings tell about people: never open data")
    metrics: list[MetricOut]
    commands: list[CommandSpecOut] = Field(description="what a device of this kind can be told")


def kinds_out() -> list[DeviceKindOut]:
    """The whole catalogue."""
    return [
        DeviceKindOut(
            name=k.name,
            label=k.label,
            description=k.description,
            interval_seconds=k.interval_s,
            personal_data=k.personal_data,
            metrics=[
                MetricOut(
                    name=m.name,
                    label=m.label,
                    unit=m.unit,
                    minimum=m.minimum,
                    maximum=m.maximum,
                    aggregation=m.aggregation.value,
                    description=m.description,
                )
                for m in k.metrics
            ],
            commands=[CommandSpecOut.of(c) for c in commands_of(k.name)],
        )
        for k in DEVICE_KINDS.values()
    ]


class CompletenessOut(Out):
    """Readings received / expected from the devices' `seq` (see /v1/completeness)."""

    received: int
    expected: int
    missing: int
    ratio: float | None = Field(description="received / expected; null when none expected")


class OpenDataOut(Out):
    """The terms of a device that its tenant publishes as open data."""

    licence: str = Field(description="SPDX identifier: CC0-1.0 or CC-BY-4.0")
    licence_url: str
    attribution: str = Field(description="name the source so when using the data")


class DeviceOut(Out):
    """A device of the registry."""

    device_id: str
    tenant: str
    kind: str
    extra_kinds: list[str]
    name: str
    location: PointGeometry
    ipv6_address: str | None
    interval_seconds: float
    firmware: str | None
    installed_on: date | None
    retired_at: datetime | None
    owner: str | None
    observation_goal: str | None
    legal_ground: str | None
    personal_data: bool
    active_until: date | None
    status: Literal["online", "offline", "silent"] | None = Field(
        None, description="silent: no reading for three reporting intervals"
    )
    last_seen: str | None = Field(None, description="time of the newest reading (UTC)")
    latest: dict[str, float] | None = Field(None, description="the newest value of each metric")
    completeness: CompletenessOut | None = Field(
        None, description="readings received / expected from seq over the last hour"
    )
    open_data: OpenDataOut | None = Field(
        None, description="licence and attribution, in answers to callers without a key"
    )

    def live(self, state: LiveState | None) -> DeviceOut:
        """This device with its live state filled in."""
        if state is None:
            return self
        seen = format_ns(state.last_seen_ns) if state.last_seen_ns is not None else None
        return self.model_copy(
            update={"status": state.status, "last_seen": seen, "latest": state.metrics}
        )

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        """The API view of a registry device."""
        return cls(
            device_id=device.device_id,
            tenant=device.tenant,
            kind=device.kind,
            extra_kinds=list(device.extra_kinds),
            name=device.name,
            location=PointGeometry(coordinates=(device.longitude, device.latitude)),
            ipv6_address=device.ipv6_address,
            interval_seconds=device.interval_s or DEVICE_KINDS[device.kind].interval_s,
            firmware=device.firmware,
            installed_on=device.installed_on,
            retired_at=device.retired_at,
            owner=device.owner,
            observation_goal=device.observation_goal,
            legal_ground=device.legal_ground,
            personal_data=device.personal_data,
            active_until=device.active_until,
        )


class DevicePage(Out):
    """A page of devices; `next` is the cursor of the following page."""

    items: list[DeviceOut]
    next: str | None = None


class ReadingOut(Out):
    """One stored reading."""

    ts: str = Field(description="UTC, RFC 3339 with Z")
    seq: int | None = None
    ts_assigned: bool = Field(False, description="true when the platform stamped the time")
    metrics: dict[str, float]


class ReadingPage(Out):
    """A page of readings of one device, oldest or newest first."""

    device_id: str
    items: list[ReadingOut]
    next: str | None = None


class LatestOut(Out):
    """The newest reading of one device and its status."""

    device_id: str
    tenant: str
    kind: str
    name: str
    location: PointGeometry
    status: Literal["online", "offline", "silent"]
    ts: str | None
    metrics: dict[str, float]
    open_data: OpenDataOut | None = Field(
        None, description="licence and attribution, in answers to callers without a key"
    )


class CheckOut(Out):
    """One dependency's health."""

    name: str
    status: Literal["up", "down"]
    detail: str | None = None


class HealthOut(Out):
    """The health of the API and what it depends on."""

    status: Literal["up", "down"]
    checks: list[CheckOut] = []


class RejectionOut(Out):
    """One thing ingest set aside: a message, a reading or a metric value, and why."""

    ts: str = Field(description="when it was received (UTC)")
    reason: str
    tenant: str | None
    device_id: str | None
    topic: str
    metric: str | None
    detail: str
    excerpt: str = Field(description="the start of the raw payload")
    values: int = Field(description="how many metric values it stands for")


class RejectionPage(Out):
    """A page of rejections, newest first."""

    items: list[RejectionOut]
    next: str | None = None


class ActivityMinute(Out):
    """What the platform took in during one minute."""

    minute: str
    readings: int | None = Field(
        description="metric values stored, all tenants; null for a key limited to some tenants"
    )
    messages: int | None = Field(description="messages taken in; null as for readings")
    rejections: dict[str, int] = Field(description="rejected values by reason")


class ActivityOut(Out):
    """Intake per minute, oldest first."""

    items: list[ActivityMinute]


class AggregateOut(Out):
    """Aggregates of one metric per interval."""

    device_id: str | None = None
    kind: str
    metric: str
    unit: str
    aggregation: str
    interval: str
    time_zone: str
    source: Literal["rollup", "raw", "rollup+raw"] = Field(
        description="stored rollups, raw readings, or rollups and the newest raw readings"
    )
    devices: int = Field(1, description="how many devices the figures combine")
    items: list[dict[str, float | str | None]]
