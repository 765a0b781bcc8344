"""Alert rules and alerts, as the domain knows them (stored by devices.registry.alerts).

A rule says when something deserves an operator's attention:
- `threshold`: a statistic of one metric over a sliding window (e.g. the 1-hour mean of `pm25`)
  crosses `fire_at`; it resolves only once it is back beyond `resolve_at` (hysteresis), so a
  value hovering around the threshold does not flap. Optionally only between two local clock
  times (`active_from`/`active_until`, e.g. 23:00-07:00 in the tenant's zone).
- `silence`: a device is offline (its last will) or sent nothing for `factor` times its
  reporting interval. When at least `group_share` of a tenant's (or a kind's) selected devices
  are silent at once, that is one alert for the group, not one per device.
- `quality`: a device's rejected messages exceed `max_share` of its messages over the window.
- `lamp`: a lamppost's latest reading against the sun at the lamp (devices.sun): burning in
  daylight, dark at night, lit without drawing power, reporting a lamp failure, or drawing power
  out of line (by more than `power_tolerance`) with the lamp's own usual power for its dim level.
  `margin_s` around sunrise and sunset is left alone (photocells and schedules differ there).
- `commands`: a device that keeps refusing commands: at least `max_failures` of its commands
  were refused, failed or expired (no answer) within the window, the latest of them after its
  last obeyed one (the registry's command history). It resolves once the device obeys a
  command again, or the failures pass out of the window.

Every condition must hold for `for_s` seconds (state pending) before the alert fires.
Built-in rules (`BUILTINS`) are templates a tenant switches on; they become ordinary rules of
that tenant, marked with the built-in's name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devices.catalogue import DEVICE_KINDS, Aggregation
from devices.errors import Conflict, DeviceError, Problem
from devices.model import BoundingBox
from devices.topics import DEVICE_ID_RE, TENANT_RE

# Sliding windows a threshold rule may use, in seconds (whole minutes: 1-minute rollups).
WINDOWS: Final = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
# A command rule reads the registry's command history, not rollups: longer windows too, since
# a lamp may get only a few commands a night.
COMMAND_WINDOWS: Final = {**WINDOWS, "6h": 6 * 3600, "24h": 24 * 3600}
# What each aggregation kind offers to compare (the aggregates' own statistic names).
STATISTICS: Final[Mapping[Aggregation, tuple[str, ...]]] = {
    Aggregation.GAUGE: ("mean", "min", "max", "last"),
    Aggregation.LEVEL_DB: ("energetic_mean", "min", "max", "last"),
    Aggregation.ANGLE: ("circular_mean",),
    Aggregation.COUNTER: ("increase",),
    Aggregation.STATE: ("share_on", "last"),
}
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_NAME_LIMIT: Final = 200


class RuleType(StrEnum):
    """What a rule watches."""

    THRESHOLD = "threshold"
    SILENCE = "silence"
    QUALITY = "quality"
    LAMP = "lamp"
    COMMANDS = "commands"


class Direction(StrEnum):
    """Whether a threshold fires when the value rises above or falls below it."""

    ABOVE = "above"
    BELOW = "below"


class AlertState(StrEnum):
    """Where an alert is in its life: pending → firing → acknowledged → resolved."""

    PENDING = "pending"  # the condition holds, its "for" duration has not passed
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"  # an operator took it, with a note; still active
    RESOLVED = "resolved"

    @property
    def active(self) -> bool:
        """Whether the alert is still open."""
        return self is not AlertState.RESOLVED


ACTIVE_STATES: Final = (
    AlertState.PENDING.value,
    AlertState.FIRING.value,
    AlertState.ACKNOWLEDGED.value,
)


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A rule of one tenant. Selection: its `kind`, optionally a box and/or device ids."""

    tenant: str
    name: str
    type: RuleType
    kind: str | None = None  # None: every kind (silence and quality rules only)
    metric: str | None = None
    statistic: str | None = None
    window: str = "15m"
    direction: Direction = Direction.ABOVE
    fire_at: float | None = None  # threshold: fires beyond this
    resolve_at: float | None = None  # threshold: resolves back beyond this (default fire_at)
    for_s: float = 0.0
    active_from: str | None = None  # local clock "HH:MM"; with active_until
    active_until: str | None = None
    zone: str = "Europe/Amsterdam"
    bbox: BoundingBox | None = None
    device_ids: tuple[str, ...] | None = None
    factor: float = 3.0  # silence: intervals without a reading before a device counts silent
    group_share: float = 0.5  # silence: share of a group silent at once that makes one alert
    group_minimum: int = 10  # silence: smallest group that is alerted as a group
    max_share: float = 0.1  # quality: share of rejected messages tolerated
    margin_s: float = 1800.0  # lamp: seconds around sunrise/sunset when either state is fine
    power_tolerance: float = 0.5  # lamp: tolerated deviation of W per % dim from its own usual
    max_failures: int = 3  # commands: refused, failed or expired commands in the window
    enabled: bool = True
    builtin: str | None = None
    id: str = ""
    revision: int = 0
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def resolve_threshold(self) -> float | None:
        """Where the alert resolves (the firing threshold when no hysteresis is set)."""
        return self.fire_at if self.resolve_at is None else self.resolve_at

    @property
    def window_s(self) -> int:
        """The sliding window in seconds."""
        return COMMAND_WINDOWS[self.window]

    def fires(self, value: float) -> bool:
        """Whether `value` is beyond the firing threshold."""
        assert self.fire_at is not None
        if self.direction is Direction.ABOVE:
            return value > self.fire_at
        return value < self.fire_at

    def resolves(self, value: float) -> bool:
        """Whether `value` is back beyond the resolving threshold (hysteresis)."""
        limit = self.resolve_threshold
        assert limit is not None
        if self.direction is Direction.ABOVE:
            return value < limit
        return value > limit

    def active_at(self, moment: datetime) -> bool:
        """Whether the rule applies at `moment` (its local clock hours; always without them)."""
        if self.active_from is None or self.active_until is None:
            return True
        local = moment.astimezone(ZoneInfo(self.zone)).time()
        start, end = _clock(self.active_from), _clock(self.active_until)
        if start <= end:
            return start <= local < end
        return local >= start or local < end  # across midnight, e.g. 23:00-07:00


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def rule_problems(rule: AlertRule) -> list[Problem]:
    """Every rule the alert rule breaks (empty when it is fine); fields by attribute name."""
    found: list[Problem] = []
    if not TENANT_RE.fullmatch(rule.tenant):
        found.append(Problem("tenant", f"tenant code {rule.tenant!r} is not valid"))
    if not rule.name.strip() or len(rule.name) > _NAME_LIMIT:
        found.append(Problem("name", f"the name must be 1..{_NAME_LIMIT} characters"))
    kind = None
    if rule.kind is not None:
        kind = DEVICE_KINDS.get(rule.kind)
        if kind is None:
            found.append(Problem("kind", f"unknown device kind {rule.kind!r}"))
    windows = COMMAND_WINDOWS if rule.type is RuleType.COMMANDS else WINDOWS
    if rule.window not in windows:
        found.append(Problem("window", f"window must be one of {', '.join(windows)}"))
    if not (math.isfinite(rule.for_s) and 0 <= rule.for_s <= 7 * 86400):
        found.append(Problem("for_s", "the for duration must be 0..604800 s"))
    if rule.type is RuleType.THRESHOLD:
        found += _threshold_problems(rule, kind is not None)
    elif rule.type is RuleType.LAMP and rule.kind != "lamppost":
        found.append(Problem("kind", "a lamp rule watches the kind lamppost"))
    # Every setting is checked whatever the type: a rule's type may not use it now, but what
    # is stored must be a number the API can answer with (never NaN or infinity).
    if not (math.isfinite(rule.factor) and 1.0 <= rule.factor <= 1000.0):
        found.append(Problem("factor", "factor must be 1..1000 reporting intervals"))
    if not 0.0 < rule.group_share <= 1.0:
        found.append(Problem("group_share", "group share must be in (0, 1]"))
    if rule.group_minimum < 2:
        found.append(Problem("group_minimum", "a group has at least 2 devices"))
    if not 0.0 <= rule.max_share < 1.0:
        found.append(Problem("max_share", "the tolerated share must be in [0, 1)"))
    if not 0.0 <= rule.margin_s <= 4 * 3600:
        found.append(Problem("margin_s", "the margin must be 0..14400 s"))
    if not 1 <= rule.max_failures <= 1000:
        found.append(Problem("max_failures", "max failures must be 1..1000 commands"))
    if not 0.0 < rule.power_tolerance <= 10.0:
        found.append(Problem("power_tolerance", "the power tolerance must be in (0, 10]"))
    if (rule.active_from is None) != (rule.active_until is None):
        found.append(Problem("active_from", "give both activeFrom and activeUntil, or neither"))
    for name in ("active_from", "active_until"):
        value = getattr(rule, name)
        if value is not None and not _CLOCK.fullmatch(value):
            found.append(Problem(name, f"{value!r} is not a clock time HH:MM"))
    try:
        ZoneInfo(rule.zone)
    except (ZoneInfoNotFoundError, ValueError):
        found.append(Problem("zone", f"unknown time zone {rule.zone!r}"))
    if rule.bbox is not None:
        found += [Problem("bbox", p) for p in rule.bbox.problems()]
    if rule.device_ids is not None:
        if not rule.device_ids or len(rule.device_ids) > 10_000:
            found.append(Problem("device_ids", "name 1..10000 devices"))
        bad = [d for d in rule.device_ids if not DEVICE_ID_RE.fullmatch(d)]
        if bad:
            found.append(Problem("device_ids", f"not device ids: {', '.join(bad[:5])}"))
    return found


def _threshold_problems(rule: AlertRule, known_kind: bool) -> list[Problem]:
    found: list[Problem] = []
    if rule.kind is None:
        return [Problem("kind", "a threshold rule names a device kind")]
    if not known_kind:
        return found
    metric = DEVICE_KINDS[rule.kind].metric(rule.metric or "")
    if metric is None:
        found.append(Problem("metric", f"kind {rule.kind!r} has no metric {rule.metric!r}"))
    else:
        offered = STATISTICS[metric.aggregation]
        if rule.statistic not in offered:
            found.append(
                Problem(
                    "statistic",
                    f"{metric.name} ({metric.aggregation}) offers {', '.join(offered)}",
                )
            )
    if rule.fire_at is None or not math.isfinite(rule.fire_at):
        found.append(Problem("fire_at", "a threshold rule needs a finite fireAt"))
    elif rule.resolve_at is not None:
        if not math.isfinite(rule.resolve_at):
            found.append(Problem("resolve_at", "resolveAt must be finite"))
        elif rule.direction is Direction.ABOVE and rule.resolve_at > rule.fire_at:
            found.append(Problem("resolve_at", "resolveAt must not be above fireAt"))
        elif rule.direction is Direction.BELOW and rule.resolve_at < rule.fire_at:
            found.append(Problem("resolve_at", "resolveAt must not be below fireAt"))
    return found


# Built-in rules per kind; a tenant switches one on by name (POST /v1/alert-rules {"builtin"}).
_BUILTIN_LIST: Final = (
    AlertRule(
        "_",
        "PM2.5 1-hour mean above the WHO 24-hour guideline",
        RuleType.THRESHOLD,
        kind="air_quality",
        metric="pm25",
        statistic="mean",
        window="1h",
        fire_at=25.0,
        resolve_at=20.0,
        for_s=600,
        builtin="pm25-who",
    ),
    AlertRule(
        "_",
        "Night noise: LAeq energetic mean above 55 dB between 23:00 and 07:00",
        RuleType.THRESHOLD,
        kind="noise",
        metric="laeq",
        statistic="energetic_mean",
        window="15m",
        fire_at=55.0,
        resolve_at=52.0,
        for_s=300,
        active_from="23:00",
        active_until="07:00",
        builtin="night-noise",
    ),
    AlertRule(
        "_",
        "Water level above 1.5 m NAP",
        RuleType.THRESHOLD,
        kind="water_level",
        metric="level",
        statistic="last",
        window="15m",
        fire_at=1.5,
        resolve_at=1.4,
        builtin="high-water",
    ),
    AlertRule("_", "Devices silent", RuleType.SILENCE, factor=3.0, builtin="silence"),
    AlertRule(
        "_",
        "Lamp faults: burning by day, dark at night, no power, power out of line",
        RuleType.LAMP,
        kind="lamppost",
        window="15m",
        for_s=600,
        builtin="lamp-faults",
    ),
    AlertRule(
        "_",
        "Lamp refusing commands: 3 refused, failed or unanswered in 6 hours",
        RuleType.COMMANDS,
        kind="lamppost",
        window="6h",
        max_failures=3,
        builtin="lamp-refusing",
    ),
    AlertRule(
        "_",
        "Devices sending rejected messages",
        RuleType.QUALITY,
        window="15m",
        max_share=0.2,
        for_s=300,
        builtin="data-quality",
    ),
)
BUILTINS: Final[Mapping[str, AlertRule]] = {r.builtin or "": r for r in _BUILTIN_LIST}


def builtin_for(name: str, tenant: str) -> AlertRule | None:
    """The built-in rule `name` as a rule of `tenant` (None when there is no such built-in)."""
    template = BUILTINS.get(name)
    return None if template is None else replace(template, tenant=tenant)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One change of an alert's state, with its time (UTC), who made it and a note."""

    state: AlertState
    at: datetime
    note: str | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A notification of one alert transition on one channel, and how sending it went."""

    channel: str  # webhook, email, alertmanager
    event: str  # firing or resolved
    state: str  # pending, delivered, failed
    attempts: int
    last_error: str | None
    next_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of a rule about one subject: a device (`device_id`) or a group (`group`)."""

    id: str
    rule_id: str
    rule_name: str
    tenant: str
    subject: str  # the device id, or e.g. "tenant:GM0363" / "kind:GM0363/noise" for a group
    device_id: str | None
    state: AlertState
    value: float | None
    summary: str
    started_at: datetime
    fired_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    note: str | None
    events: tuple[AlertEvent, ...] = field(default=(), compare=False)
    deliveries: tuple[Delivery, ...] = field(default=(), compare=False)


class AlertConflict(Conflict):
    """An alert transition its current state does not allow (answered 409)."""

    def __init__(self, alert_id: str, reason: str) -> None:
        DeviceError.__init__(self, f"alert {alert_id!r} {reason}")
        self.what = "alert"
        self.key = alert_id


@dataclass(frozen=True, slots=True)
class Change:
    """What the evaluator decided about one subject of one rule, to store at once.

    `alert_id` None opens a new alert (state pending or firing); otherwise the alert moves to
    `state` (firing or resolved) or, with the same state, only its value and summary change.
    """

    rule: AlertRule
    subject: str
    device_id: str | None
    state: AlertState
    value: float | None
    summary: str
    alert_id: str | None = None
    note: str | None = None
