"""What the schedule routes accept and return."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, field_serializer

from api.command_schemas import MAX_GROUP_IDS
from api.registry_schemas import In
from api.schemas import Out
from devices.command_messages import utc_text
from devices.schedule_store import LampGroup, StoredSchedule
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN

MAX_STEPS = 48


class StepIn(In):
    """A step: when (`HH:MM` local time in Europe/Amsterdam, `sunset`, `sunrise-30`) and the
    dim level it sets (%, 0 is off)."""

    at: Annotated[str, Field(max_length=16, examples=["sunset", "23:00", "sunrise-30"])]
    level: Annotated[int, Field(ge=0, le=100, description="dim level, % (0: off)")]


class GroupIn(In):
    """The lampposts of the schedule's tenant it applies to: all (`{}`), those inside `bbox`,
    those listed, or the listed ones inside the box."""

    bbox: Annotated[
        str | None, Field(max_length=200, description="minLon,minLat,maxLon,maxLat (WGS84)")
    ] = None
    device_ids: (
        Annotated[
            list[Annotated[str, Field(pattern=f"^{DEVICE_ID_PATTERN}$")]],
            Field(min_length=1, max_length=MAX_GROUP_IDS),
        ]
        | None
    ) = None

    def group(self) -> LampGroup:
        """The domain group."""
        ids = None if self.device_ids is None else tuple(sorted(set(self.device_ids)))
        return LampGroup(self.bbox, ids)


Steps = Annotated[list[StepIn], Field(min_length=1, max_length=MAX_STEPS)]


class ScheduleIn(In):
    """A new schedule; without `tenant`, the API key's only tenant."""

    tenant: Annotated[str | None, Field(pattern=f"^{TENANT_PATTERN}$")] = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    steps: Steps
    group: GroupIn | None = Field(None, description="the lamps it applies to; none: unassigned")


class SchedulePatch(In):
    """A merge patch: what is given changes; `"group": null` unassigns the schedule."""

    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    steps: Steps | None = None
    group: GroupIn | None = None


class StepOut(Out):
    """A step as stored."""

    at: str
    level: int


class ScheduleOut(Out):
    """A schedule with the group it is assigned to (null: not assigned)."""

    id: str
    tenant: str
    name: str
    steps: list[StepOut]
    group: dict[str, object] | None
    created_at: datetime
    updated_at: datetime

    @field_serializer("created_at", "updated_at")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)

    @classmethod
    def of(cls, stored: StoredSchedule) -> ScheduleOut:
        """The API view of a stored schedule."""
        return cls(
            id=stored.id,
            tenant=stored.tenant,
            name=stored.schedule.name,
            steps=[StepOut(at=s.when, level=s.level) for s in stored.schedule.steps],
            group=None if stored.group is None else stored.group.to_json(),
            created_at=stored.created_at,
            updated_at=stored.updated_at,
        )


class ScheduleList(Out):
    """Schedules by name."""

    items: list[ScheduleOut]


class StepAt(Out):
    """A step of a lamp's schedule and the moment it falls (or fell) there."""

    at: str
    level: int
    moment: datetime

    @field_serializer("moment")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)


class LampScheduleOut(Out):
    """The schedule a lamp follows (null: none), the step in force and the next one there."""

    device_id: str
    schedule: ScheduleOut | None
    in_force: StepAt | None
    next: StepAt | None
