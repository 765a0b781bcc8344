"""Dimming schedules in the registry's database, their groups of lamps, and what was sent.

A schedule belongs to one tenant and is assigned to a group of that tenant's lampposts: the
whole tenant (`{}`), the lamps inside a box (`{"bbox": ...}`), a list of lamps
(`{"deviceIds": [...]}`), or both (the listed lamps inside the box); no group: not assigned.
A lamp that two schedules reach follows the more specific one (a list before a box before the
whole tenant), then the one changed last.

Sending (see `dispatch`): for every lamp, the step in force now (devices.schedules) is compared
with the one recorded as sent (`schedule_progress`). Where they differ, a `set_dim_level`
command is stored in the command outbox (devices.command_history) and the progress row is
written in the same transaction, fenced by the scheduler's lease: a crash commits both or
neither, so a step is never sent twice, and a scheduler that was down sends the level that
applies now, once. Two schedulers never both send: the lease row is updated, by its holder only,
in every sending transaction, and a scheduler whose lease another took over gets `LeaseLost`.

Tables from the registry's Alembic migration s0005, on the registry's metadata.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from devices.command_history import CommandState, command_events, commands
from devices.errors import InvalidDevice, NotFound, Problem
from devices.model import BoundingBox, Device
from devices.registry import Registry
from devices.registry.rows import Base, stored_utc
from devices.registry.store import Database
from devices.schedules import Schedule, Step, latest_occurrence, schedule_problems

log = logging.getLogger(__name__)

SCHEDULED_KIND: Final = "lamppost"
SCHEDULER_ROLE: Final = "scheduler"
_LEASE_NAME: Final = "scheduler"
_CHUNK: Final = 500

metadata = Base.metadata

schedules = Table(
    "schedules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(32), ForeignKey("tenants.code"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("steps", Text, nullable=False),  # JSON list of {"at": "sunset", "level": 100}
    Column("lamp_group", Text, nullable=True),  # JSON object; NULL: not assigned
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_schedules_tenant", "tenant"),
)

# What the scheduler last sent each lamp: the step (schedule, when it fell, level).
schedule_progress = Table(
    "schedule_progress",
    metadata,
    Column("device_id", String(63), ForeignKey("devices.device_id"), primary_key=True),
    Column("schedule_id", String(36), nullable=False),
    Column("step_at", DateTime(timezone=True), nullable=False),
    Column("level", Integer, nullable=False),
    Column("command_id", String(36), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
)

scheduler_lease = Table(
    "scheduler_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
)


class LeaseLost(RuntimeError):
    """Another scheduler holds the lease now: this one must not send."""


@dataclass(frozen=True, slots=True)
class LampGroup:
    """The lamps of a schedule's tenant it applies to: all, those in a box, those listed."""

    bbox: str | None = None  # minLon,minLat,maxLon,maxLat
    device_ids: tuple[str, ...] | None = None

    @property
    def specificity(self) -> int:
        """How narrow the group is: a list 2, a box 1, the whole tenant 0."""
        return 2 if self.device_ids is not None else 1 if self.bbox is not None else 0

    def problems(self) -> list[Problem]:
        """What is wrong with the group (empty when fine)."""
        found = []
        if self.bbox is not None:
            try:
                BoundingBox.parse(self.bbox)
            except ValueError as exc:
                found.append(Problem("group.bbox", str(exc)))
        if self.device_ids is not None and not self.device_ids:
            found.append(Problem("group.deviceIds", "name at least one device"))
        return found

    def holds(self, device: Device) -> bool:
        """Whether the group takes in `device` (of the schedule's tenant)."""
        if self.device_ids is not None and device.device_id not in self.device_ids:
            return False
        if self.bbox is not None:
            box = BoundingBox.parse(self.bbox)
            return box.min_lat <= device.latitude <= box.max_lat and (
                box.min_lon <= device.longitude <= box.max_lon
                if box.min_lon <= box.max_lon
                else device.longitude >= box.min_lon or device.longitude <= box.max_lon
            )
        return True

    def to_json(self) -> dict[str, Any]:
        """The group as the API shows it."""
        out: dict[str, Any] = {}
        if self.bbox is not None:
            out["bbox"] = self.bbox
        if self.device_ids is not None:
            out["deviceIds"] = list(self.device_ids)
        return out

    @classmethod
    def of_json(cls, value: Mapping[str, Any]) -> LampGroup:
        """The group from its JSON form."""
        ids = value.get("deviceIds")
        return cls(value.get("bbox"), None if ids is None else tuple(sorted(set(ids))))


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule of a tenant, with the group it is assigned to (None: not assigned)."""

    schedule: Schedule
    tenant: str
    group: LampGroup | None
    created_at: datetime
    updated_at: datetime

    @property
    def id(self) -> str:
        """The schedule's id."""
        return self.schedule.schedule_id


def _steps_json(steps: Sequence[Step]) -> str:
    return json.dumps([{"at": s.when, "level": s.level} for s in steps])


def _stored(row: RowMapping) -> StoredSchedule:
    steps = tuple(Step.parse(s["at"], int(s["level"])) for s in json.loads(row["steps"]))
    group = None if row["lamp_group"] is None else LampGroup.of_json(json.loads(row["lamp_group"]))
    return StoredSchedule(
        Schedule(row["id"], row["name"], steps),
        row["tenant"],
        group,
        stored_utc(row["created_at"]),
        stored_utc(row["updated_at"]),
    )


@dataclass(frozen=True, slots=True)
class DueStep:
    """A lamp whose step in force differs from what it was last sent."""

    device: Device
    schedule_id: str
    step_at: datetime
    level: int


@dataclass(slots=True)
class DispatchResult:
    """What one round of the scheduler did."""

    held: bool = False  # whether this scheduler held the lease
    sent: int = 0  # commands stored for the outbox
    command_ids: list[str] = field(default_factory=list)


class ScheduleStore(Database):
    """Schedules, their groups and the scheduler's progress and lease; a context manager."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._registry: Registry | None = None

    def open(self) -> None:
        """Open the registry (which brings the schema up to date) and connect."""
        self._registry = Registry(self.url)
        self._registry.open()
        try:
            super().open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the connections."""
        super().close()
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    @property
    def registry(self) -> Registry:
        """The registry of devices the schedules apply to."""
        if self._registry is None:
            raise RuntimeError("the schedule store is not open")
        return self._registry

    # -- schedules -------------------------------------------------------------------------------

    @staticmethod
    def check(schedule: Schedule, group: LampGroup | None) -> None:
        """InvalidDevice naming every problem of the schedule and its group."""
        found = [*schedule_problems(schedule), *(group.problems() if group else [])]
        if found:
            raise InvalidDevice.of(found)

    def create(
        self,
        tenant: str,
        name: str,
        steps: Sequence[Step],
        group: LampGroup | None,
        now: datetime | None = None,
    ) -> StoredSchedule:
        """Store a new schedule of `tenant` (checked first); its id is new."""
        now = now or datetime.now(UTC)
        schedule = Schedule(str(uuid.uuid4()), name, tuple(steps))
        self.check(schedule, group)
        with self._begin() as conn:
            conn.execute(
                insert(schedules).values(
                    id=schedule.schedule_id,
                    tenant=tenant,
                    name=name,
                    steps=_steps_json(steps),
                    lamp_group=None if group is None else json.dumps(group.to_json()),
                    created_at=now,
                    updated_at=now,
                )
            )
        return StoredSchedule(schedule, tenant, group, now, now)

    def get(self, schedule_id: str) -> StoredSchedule:
        """One schedule; NotFound if there is none."""
        with self._begin() as conn:
            row = conn.execute(select(schedules).where(schedules.c.id == schedule_id)).mappings()
            found = row.first()
        if found is None:
            raise NotFound("schedule", schedule_id)
        return _stored(found)

    def schedules(self, tenants: Sequence[str] | None = None) -> list[StoredSchedule]:
        """Schedules, of the tenants given (all when None), by name."""
        query = select(schedules).order_by(schedules.c.name, schedules.c.id)
        if tenants is not None:
            query = query.where(schedules.c.tenant.in_(list(tenants)))
        with self._begin() as conn:
            return [_stored(r) for r in conn.execute(query).mappings()]

    def change(
        self,
        schedule_id: str,
        *,
        name: str | None = None,
        steps: Sequence[Step] | None = None,
        group: LampGroup | None = None,
        unassign: bool = False,
        now: datetime | None = None,
    ) -> StoredSchedule:
        """Change a schedule's name, steps or group (`unassign`: no group); checked first."""
        now = now or datetime.now(UTC)
        old = self.get(schedule_id)
        new_group = None if unassign else (group if group is not None else old.group)
        schedule = Schedule(
            schedule_id,
            name if name is not None else old.schedule.name,
            tuple(steps) if steps is not None else old.schedule.steps,
        )
        self.check(schedule, new_group)
        with self._begin() as conn:
            conn.execute(
                update(schedules)
                .where(schedules.c.id == schedule_id)
                .values(
                    name=schedule.name,
                    steps=_steps_json(schedule.steps),
                    lamp_group=None if new_group is None else json.dumps(new_group.to_json()),
                    updated_at=now,
                )
            )
        return StoredSchedule(schedule, old.tenant, new_group, old.created_at, now)

    def remove(self, schedule_id: str) -> None:
        """Remove a schedule; its lamps keep the level last sent. NotFound if there is none."""
        with self._begin() as conn:
            if not conn.execute(delete(schedules).where(schedules.c.id == schedule_id)).rowcount:
                raise NotFound("schedule", schedule_id)

    # -- the lease -----------------------------------------------------------------------------

    def take_lease(self, holder: str, lease_s: float, now: datetime | None = None) -> bool:
        """Take or renew the one scheduler lease for `lease_s`; False when another holds it."""
        now = now or datetime.now(UTC)
        until = now + timedelta(seconds=lease_s)
        with self._begin() as conn:
            taken = conn.execute(
                update(scheduler_lease)
                .where(
                    scheduler_lease.c.name == _LEASE_NAME,
                    (scheduler_lease.c.holder == holder) | (scheduler_lease.c.until <= now),
                )
                .values(holder=holder, until=until)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(
                select(scheduler_lease.c.name).where(scheduler_lease.c.name == _LEASE_NAME)
            ).first()
            if exists is not None:
                return False
        try:
            with self._begin() as conn:
                conn.execute(
                    insert(scheduler_lease).values(name=_LEASE_NAME, holder=holder, until=until)
                )
        except IntegrityError:
            return False  # another scheduler inserted it first
        return True

    def release_lease(self, holder: str) -> None:
        """Give the lease up at a clean stop, so another scheduler need not wait it out."""
        with self._begin() as conn:
            conn.execute(
                delete(scheduler_lease).where(
                    scheduler_lease.c.name == _LEASE_NAME, scheduler_lease.c.holder == holder
                )
            )

    @staticmethod
    def _fence(conn: Connection, holder: str, lease_s: float, now: datetime) -> None:
        """Inside a sending transaction: renew the lease, or LeaseLost (rolls it back).

        On PostgreSQL the UPDATE locks the lease row until commit, so sending transactions of
        two schedulers never overlap; the second then finds the holder changed.
        """
        renewed = conn.execute(
            update(scheduler_lease)
            .where(
                scheduler_lease.c.name == _LEASE_NAME,
                scheduler_lease.c.holder == holder,
                scheduler_lease.c.until > now,
            )
            .values(until=now + timedelta(seconds=lease_s))
        ).rowcount
        if not renewed:
            raise LeaseLost(f"scheduler {holder!r} no longer holds the lease")

    # -- what is due ---------------------------------------------------------------------------

    def for_lamp(self, lamp: Device) -> StoredSchedule | None:
        """The schedule a lamp follows (the rule of `assignments`), or None."""
        if lamp.kind != SCHEDULED_KIND or lamp.retired:
            return None
        reaching = [
            s for s in self.schedules([lamp.tenant]) if s.group is not None and s.group.holds(lamp)
        ]
        return max(
            reaching,
            key=lambda s: (s.group.specificity, s.updated_at, s.id),  # type: ignore[union-attr]
            default=None,
        )

    def assignments(self) -> dict[str, tuple[StoredSchedule, Device]]:
        """Per lamp (device id): the schedule it follows and the lamp, for assigned schedules."""
        chosen: dict[str, tuple[StoredSchedule, Device]] = {}
        assigned = [s for s in self.schedules() if s.group is not None]
        by_tenant: dict[str, list[StoredSchedule]] = {}
        for stored in assigned:
            by_tenant.setdefault(stored.tenant, []).append(stored)
        for tenant, items in by_tenant.items():
            lamps = self.registry.devices(
                tenants=[tenant], kind=SCHEDULED_KIND, include_retired=False
            )
            # The most specific group wins, then the schedule changed last.
            items.sort(key=lambda s: (s.group.specificity, s.updated_at, s.id))  # type: ignore[union-attr]
            for stored in items:
                assert stored.group is not None
                for lamp in lamps:
                    if stored.group.holds(lamp):
                        chosen[lamp.device_id] = (stored, lamp)
        return chosen

    def due(self, now: datetime) -> list[DueStep]:
        """Lamps whose step in force at `now` is not the one last sent to them."""
        chosen = self.assignments()
        with self._begin() as conn:
            sent = {
                r["device_id"]: (r["schedule_id"], stored_utc(r["step_at"]), int(r["level"]))
                for r in conn.execute(select(schedule_progress)).mappings()
            }
        found = []
        for device_id in sorted(chosen):
            stored, lamp = chosen[device_id]
            current = latest_occurrence(stored.schedule, now, lamp.latitude, lamp.longitude)
            if current is None:
                continue
            at, step = current
            if sent.get(device_id) != (stored.id, at, step.level):
                found.append(DueStep(lamp, stored.id, at, step.level))
        return found

    # -- sending -------------------------------------------------------------------------------

    def dispatch(
        self,
        holder: str,
        *,
        lease_s: float,
        deadline_s: float,
        now: datetime | None = None,
        chunk: int = _CHUNK,
        after_chunk: Any = None,
    ) -> DispatchResult:
        """Store a `set_dim_level` command for every lamp whose step fell; see the module.

        Each chunk of lamps is one transaction: commands, their `created` events and the
        progress rows, fenced by the lease. `after_chunk(result)` runs after each commit (for
        tests that stop a scheduler halfway).
        """
        now = now or datetime.now(UTC)
        result = DispatchResult()
        if not self.take_lease(holder, lease_s, now):
            return result
        result.held = True
        due = self.due(now)
        expires = now + timedelta(seconds=deadline_s)
        for start in range(0, len(due), chunk):
            part = due[start : start + chunk]
            ids = [str(uuid.uuid4()) for _ in part]
            with self._begin() as conn:
                self._fence(conn, holder, lease_s, now)
                conn.execute(
                    insert(commands),
                    [
                        {
                            "id": command_id,
                            "group_id": None,
                            "tenant": item.device.tenant,
                            "device_id": item.device.device_id,
                            "name": "set_dim_level",
                            "args": json.dumps({"level": item.level}),
                            "state": CommandState.CREATED.value,
                            "detail": f"schedule {item.schedule_id}, step of "
                            f"{item.step_at.isoformat()}",
                            "issued_by": f"schedule:{item.schedule_id}",
                            "issued_role": SCHEDULER_ROLE,
                            "created_at": now,
                            "expires_at": expires,
                            "sent_at": None,
                            "finished_at": None,
                        }
                        for command_id, item in zip(ids, part, strict=True)
                    ],
                )
                conn.execute(
                    insert(command_events),
                    [
                        {"command_id": i, "state": CommandState.CREATED.value, "at": now}
                        for i in ids
                    ],
                )
                lamp_ids = [item.device.device_id for item in part]
                conn.execute(
                    delete(schedule_progress).where(schedule_progress.c.device_id.in_(lamp_ids))
                )
                conn.execute(
                    insert(schedule_progress),
                    [
                        {
                            "device_id": item.device.device_id,
                            "schedule_id": item.schedule_id,
                            "step_at": item.step_at,
                            "level": item.level,
                            "command_id": command_id,
                            "sent_at": now,
                        }
                        for command_id, item in zip(ids, part, strict=True)
                    ],
                )
            result.sent += len(part)
            result.command_ids.extend(ids)
            if after_chunk is not None:
                after_chunk(result)
        return result

    def progress(self, device_id: str) -> tuple[str, datetime, int] | None:
        """What the scheduler last sent a lamp: (schedule id, when the step fell, level)."""
        with self._begin() as conn:
            row = (
                conn.execute(
                    select(schedule_progress).where(schedule_progress.c.device_id == device_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return row["schedule_id"], stored_utc(row["step_at"]), int(row["level"])
