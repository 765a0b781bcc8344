"""What the alert routes accept and return: alert rules, alerts, acknowledgements."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer

from api.registry_schemas import In
from api.schemas import Out
from devices.alert_channels import AlertChannel, ChannelType
from devices.alert_rules import (
    COMMAND_WINDOWS,
    Alert,
    AlertEvent,
    AlertRule,
    AlertState,
    Delivery,
    Direction,
    RuleType,
)
from devices.command_messages import utc_text
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN

Clock = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["23:00"])]
Window = Annotated[
    str,
    Field(
        pattern=f"^({'|'.join(COMMAND_WINDOWS)})$",
        examples=["1h"],
        description="1m, 5m, 15m or 1h; a commands rule also 6h or 24h",
    ),
]
DeviceIds = Annotated[
    list[Annotated[str, Field(pattern=f"^{DEVICE_ID_PATTERN}$")]],
    Field(min_length=1, max_length=2000),
]
Bbox = Annotated[
    str, Field(max_length=200, description="minLon,minLat,maxLon,maxLat in WGS84 degrees")
]

# Property of the schemas → attribute of devices.alert_rules.AlertRule (where they differ).
ATTRIBUTE = {"for_seconds": "for_s", "margin_seconds": "margin_s"}


class RuleSettings(In):
    """The settings of a rule that a PATCH may change (all optional)."""

    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    kind: Annotated[str | None, Field(max_length=32, examples=["air_quality"])] = None
    metric: Annotated[str | None, Field(max_length=64, examples=["pm25"])] = None
    statistic: Annotated[str | None, Field(max_length=32, examples=["mean"])] = None
    window: Window | None = None
    direction: Direction | None = None
    fire_at: float | None = Field(None, description="fires beyond this value (metric's unit)")
    resolve_at: float | None = Field(
        None, description="resolves only back beyond this value (hysteresis); default fireAt"
    )
    for_seconds: Annotated[float | None, Field(ge=0, le=7 * 86400)] = Field(
        None, description="how long the condition must hold before the alert fires (s)"
    )
    active_from: Clock | None = None
    active_until: Clock | None = None
    zone: Annotated[str | None, Field(max_length=64, examples=["Europe/Amsterdam"])] = None
    bbox: Bbox | None = None
    device_ids: DeviceIds | None = None
    factor: float | None = Field(None, description="silence: reporting intervals without data")
    group_share: float | None = Field(None, description="silence: share silent at once (0..1]")
    group_minimum: int | None = Field(None, description="silence: smallest group alerted as one")
    max_share: float | None = Field(None, description="quality: share of rejections tolerated")
    margin_seconds: float | None = Field(
        None, description="lamp: seconds around sunrise and sunset when lit or dark is fine"
    )
    power_tolerance: float | None = Field(
        None, description="lamp: tolerated deviation of power per dim level from the lamp's usual"
    )
    max_failures: int | None = Field(
        None, description="commands: refused, failed or unanswered commands in the window"
    )
    enabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The properties given, by AlertRule attribute name (bbox still as text)."""
        out: dict[str, Any] = {}
        for name in sorted(self.model_fields_set & set(RuleSettings.model_fields)):
            value = getattr(self, name)
            attribute = ATTRIBUTE.get(name, name)
            if name == "device_ids" and value is not None:
                value = tuple(value)
            out[attribute] = value
        return out


class RuleIn(RuleSettings):
    """A new rule of a tenant: a built-in switched on (`builtin`), or the tenant's own."""

    tenant: Annotated[str, Field(pattern=f"^{TENANT_PATTERN}$")]
    builtin: Annotated[str | None, Field(max_length=64, examples=["pm25-who"])] = None
    type: RuleType | None = None


class EventOut(Out):
    """A change of an alert's state."""

    state: AlertState
    at: datetime
    note: str | None = None
    by: str | None = None

    @field_serializer("at")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)

    @classmethod
    def of(cls, event: AlertEvent) -> EventOut:
        """The API view of an event."""
        return cls(state=event.state, at=event.at, note=event.note, by=event.by)


class DeliveryOut(Out):
    """A notification of an alert on one channel, and how sending it went."""

    channel: str
    event: str
    state: str
    attempts: int
    last_error: str | None = None
    next_attempt_at: str | None = None
    updated_at: str

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        """The API view of a delivery."""
        return cls(
            channel=delivery.channel,
            event=delivery.event,
            state=delivery.state,
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            next_attempt_at=None if delivery.next_at is None else utc_text(delivery.next_at),
            updated_at=utc_text(delivery.updated_at),
        )


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else utc_text(moment)


class RuleOut(Out):
    """A stored rule."""

    id: str
    tenant: str
    name: str
    type: RuleType
    builtin: str | None
    enabled: bool
    kind: str | None
    metric: str | None
    statistic: str | None
    window: str
    direction: Direction
    fire_at: float | None
    resolve_at: float | None
    for_seconds: float
    active_from: str | None
    active_until: str | None
    zone: str
    bbox: str | None
    device_ids: list[str] | None
    factor: float
    group_share: float
    group_minimum: int
    max_share: float
    margin_seconds: float
    power_tolerance: float
    max_failures: int
    revision: int
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, rule: AlertRule) -> RuleOut:
        """The API view of a rule."""
        box = rule.bbox
        return cls(
            id=rule.id,
            tenant=rule.tenant,
            name=rule.name,
            type=rule.type,
            builtin=rule.builtin,
            enabled=rule.enabled,
            kind=rule.kind,
            metric=rule.metric,
            statistic=rule.statistic,
            window=rule.window,
            direction=rule.direction,
            fire_at=rule.fire_at,
            resolve_at=rule.resolve_at,
            for_seconds=rule.for_s,
            active_from=rule.active_from,
            active_until=rule.active_until,
            zone=rule.zone,
            bbox=None
            if box is None
            else f"{box.min_lon:g},{box.min_lat:g},{box.max_lon:g},{box.max_lat:g}",
            device_ids=None if rule.device_ids is None else list(rule.device_ids),
            factor=rule.factor,
            group_share=rule.group_share,
            group_minimum=rule.group_minimum,
            max_share=rule.max_share,
            margin_seconds=rule.margin_s,
            power_tolerance=rule.power_tolerance,
            max_failures=rule.max_failures,
            revision=rule.revision,
            created_at=_text(rule.created_at),
            updated_at=_text(rule.updated_at),
        )


class RuleList(Out):
    """Rules of the tenants the caller sees."""

    items: list[RuleOut]


class AlertOut(Out):
    """An alert; `events` and `deliveries` only when one alert is asked for."""

    id: str
    rule_id: str
    rule_name: str
    tenant: str
    subject: str
    device_id: str | None
    state: AlertState
    value: float | None
    summary: str
    started_at: str
    fired_at: str | None
    acknowledged_at: str | None
    resolved_at: str | None
    note: str | None
    events: list[EventOut] | None = None
    deliveries: list[DeliveryOut] | None = None

    @classmethod
    def of(cls, alert: Alert, *, detail: bool = False) -> AlertOut:
        """The API view of an alert."""
        value = alert.value
        return cls(
            id=alert.id,
            rule_id=alert.rule_id,
            rule_name=alert.rule_name,
            tenant=alert.tenant,
            subject=alert.subject,
            device_id=alert.device_id,
            state=alert.state,
            value=None if value is None or not math.isfinite(value) else value,
            summary=alert.summary,
            started_at=utc_text(alert.started_at),
            fired_at=_text(alert.fired_at),
            acknowledged_at=_text(alert.acknowledged_at),
            resolved_at=_text(alert.resolved_at),
            note=alert.note,
            events=[EventOut.of(e) for e in alert.events] if detail else None,
            deliveries=[DeliveryOut.of(d) for d in alert.deliveries] if detail else None,
        )


class AlertPage(Out):
    """A page of alerts, newest first; `next` continues (also in the Link header)."""

    items: list[AlertOut]
    next: str | None = None


class AcknowledgeIn(In):
    """An operator takes a firing alert."""

    note: Annotated[str, Field(min_length=1, max_length=2000, examples=["crew on the way"])]


Recipient = Annotated[str, Field(min_length=3, max_length=254, examples=["storing@amsterdam.nl"])]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")]


class ChannelSettings(In):
    """The settings of a tenant's notification channel that a PATCH may change."""

    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    url: Annotated[str | None, Field(max_length=2000)] = Field(
        None,
        description="webhook: where each notification is POSTed (https://...; public addresses)",
        examples=["https://meldingen.example.nl/lantaarn"],
    )
    recipients: Annotated[list[Recipient] | None, Field(min_length=1, max_length=50)] = Field(
        None, description="email: who receives the alerts"
    )
    language: Literal["nl", "en"] | None = Field(None, description="email: the messages' language")
    labels: Annotated[dict[LabelName, str] | None, Field(max_length=20)] = Field(
        None,
        description="alertmanager: routing labels added to this tenant's alerts",
        examples=[{"team": "openbare-verlichting", "severity": "critical"}],
    )
    enabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The properties given, by AlertChannel attribute name."""
        out: dict[str, Any] = {}
        for name in sorted(self.model_fields_set & set(ChannelSettings.model_fields)):
            value = getattr(self, name)
            if name == "recipients" and value is not None:
                value = tuple(value)
            elif name == "labels" and value is not None:
                value = tuple(sorted(value.items()))
            out[name] = value
        return out


class ChannelIn(ChannelSettings):
    """A new notification channel of a tenant."""

    tenant: Annotated[str, Field(pattern=f"^{TENANT_PATTERN}$")]
    type: ChannelType
    name: Annotated[str, Field(min_length=1, max_length=200)]


class ChannelOut(Out):
    """A tenant's notification channel; a webhook's signing key only by its last characters."""

    id: str
    tenant: str
    type: ChannelType
    name: str
    url: str | None
    recipients: list[str] | None
    language: str
    labels: dict[str, str] | None
    enabled: bool
    secret_hint: str | None = Field(description="webhook: the signing key's last characters")
    revision: int
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, channel: AlertChannel) -> ChannelOut:
        """The API view of a channel (never its key)."""
        return cls(
            id=channel.id,
            tenant=channel.tenant,
            type=channel.type,
            name=channel.name,
            url=channel.url,
            recipients=list(channel.recipients) or None,
            language=channel.language,
            labels=dict(channel.labels) or None,
            enabled=channel.enabled,
            secret_hint=channel.secret_hint,
            revision=channel.revision,
            created_at=_text(channel.created_at),
            updated_at=_text(channel.updated_at),
        )


class ChannelCreated(ChannelOut):
    """A channel as just made, or with a new key: the webhook's signing key, this once."""

    secret: str | None = Field(
        description=(
            "webhook: the HMAC-SHA256 key of the X-Lantaarn-Signature header; shown only now"
        )
    )

    @classmethod
    def made(cls, channel: AlertChannel) -> ChannelCreated:
        """The view of a channel with its key."""
        return cls(**ChannelOut.of(channel).model_dump(), secret=channel.secret)


class ChannelList(Out):
    """A tenant's notification channels."""

    items: list[ChannelOut]
