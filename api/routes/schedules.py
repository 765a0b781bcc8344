"""Dimming schedules: create, read, change, assign to a group of lamps, remove.

Operators and admins of a schedule's tenant change it; whoever may read the tenant reads it;
another tenant's schedule answers 404. The scheduler (devices/scheduler.py) sends the steps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from api.auth import Operator, Principal, Reader, ensure_visible
from api.deps import RegistryDep
from api.problems import BadRequest
from api.routes.devices import DeviceIdPath, registry_call
from api.schedule_schemas import (
    GroupIn,
    LampScheduleOut,
    ScheduleIn,
    ScheduleList,
    ScheduleOut,
    SchedulePatch,
    StepAt,
    StepIn,
)
from api.urls import public
from devices import NotFound, Registry
from devices.schedule_store import SCHEDULED_KIND, LampGroup, ScheduleStore, StoredSchedule
from devices.schedules import Step, latest_occurrence, next_occurrence
from devices.topics import TENANT_PATTERN

router = APIRouter(tags=["schedules"])

ScheduleIdPath = Annotated[str, Path(alias="scheduleId", pattern=r"^[0-9a-f-]{36}$")]
_NO_SCHEDULE: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such schedule, or another tenant's"}
}


def _store(request: Request) -> ScheduleStore:
    store: ScheduleStore = request.app.state.schedules
    return store


def _steps(steps: list[StepIn]) -> list[Step]:
    found, problems = [], []
    for index, step in enumerate(steps):
        try:
            found.append(Step.parse(step.at, step.level))
        except ValueError as exc:
            problems.append({"name": f"steps[{index}].at", "in": "body", "reason": str(exc)})
    if problems:
        raise BadRequest(problems)
    return found


async def _group(registry: Registry, tenant: str, group: GroupIn | None) -> LampGroup | None:
    """The group, its listed lamps checked: active lampposts of the schedule's tenant."""
    if group is None:
        return None
    lamp_group = group.group()
    if lamp_group.device_ids is not None:
        lamps = await asyncio.to_thread(
            registry.devices, tenants=[tenant], kind=SCHEDULED_KIND, include_retired=False
        )
        missing = sorted(set(lamp_group.device_ids) - {d.device_id for d in lamps})
        if missing:
            shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
            reason = f"not an active lamppost of {tenant}: {shown}"
            raise BadRequest([{"name": "group.deviceIds", "in": "body", "reason": reason}])
    return lamp_group


async def _visible(request: Request, principal: Principal, schedule_id: str) -> StoredSchedule:
    stored = await asyncio.to_thread(_store(request).get, schedule_id)
    if not principal.sees(stored.tenant):
        raise NotFound("schedule", schedule_id)
    return stored


@router.get("/v1/schedules", response_model=ScheduleList)
async def list_schedules(
    request: Request,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
) -> ScheduleList:
    """Schedules of the tenants the key sees, by name."""
    found = await asyncio.to_thread(_store(request).schedules, principal.allowed_tenants(tenant))
    return ScheduleList(items=[ScheduleOut.of(s) for s in found])


@router.post(
    "/v1/schedules",
    response_model=ScheduleOut,
    status_code=status.HTTP_201_CREATED,
    responses={400: {"description": "a step or the group does not fit"}},
)
async def create_schedule(
    body: ScheduleIn,
    request: Request,
    response: Response,
    registry: RegistryDep,
    principal: Operator,
) -> ScheduleOut:
    """A new schedule; with a group it applies from the scheduler's next round."""
    tenant = body.tenant
    if tenant is None:
        if principal.tenants is None or len(principal.tenants) != 1:
            reason = "name the tenant the schedule belongs to"
            raise BadRequest([{"name": "tenant", "in": "body", "reason": reason}])
        (tenant,) = principal.tenants
    principal.allowed_tenants(tenant)  # 403 outside the key
    try:
        await asyncio.to_thread(registry.tenant, tenant)
    except NotFound:
        reason = f"tenant {tenant!r} does not exist"
        raise BadRequest([{"name": "tenant", "in": "body", "reason": reason}]) from None
    steps = _steps(body.steps)
    group = await _group(registry, tenant, body.group)
    stored = await registry_call(_store(request).create, tenant, body.name, steps, group)
    response.headers["Location"] = public(
        request, request.url_for("get_schedule", scheduleId=stored.id)
    )
    return ScheduleOut.of(stored)


@router.get("/v1/schedules/{scheduleId}", response_model=ScheduleOut, responses=_NO_SCHEDULE)
async def get_schedule(
    schedule_id: ScheduleIdPath, request: Request, principal: Reader
) -> ScheduleOut:
    """One schedule."""
    return ScheduleOut.of(await _visible(request, principal, schedule_id))


@router.patch("/v1/schedules/{scheduleId}", response_model=ScheduleOut, responses=_NO_SCHEDULE)
async def change_schedule(
    schedule_id: ScheduleIdPath,
    body: SchedulePatch,
    request: Request,
    registry: RegistryDep,
    principal: Operator,
) -> ScheduleOut:
    """Change the name, steps or group (merge patch; `"group": null` unassigns)."""
    stored = await _visible(request, principal, schedule_id)
    given = body.model_fields_set
    steps = _steps(body.steps) if body.steps is not None else None
    group = await _group(registry, stored.tenant, body.group)
    changed = await registry_call(
        _store(request).change,
        schedule_id,
        name=body.name,
        steps=steps,
        group=group,
        unassign="group" in given and body.group is None,
    )
    return ScheduleOut.of(changed)


@router.put("/v1/schedules/{scheduleId}/group", response_model=ScheduleOut, responses=_NO_SCHEDULE)
async def assign_schedule(
    schedule_id: ScheduleIdPath,
    body: GroupIn,
    request: Request,
    registry: RegistryDep,
    principal: Operator,
) -> ScheduleOut:
    """Assign the schedule to a group of its tenant's lampposts (`{}`: all of them)."""
    stored = await _visible(request, principal, schedule_id)
    group = await _group(registry, stored.tenant, body)
    changed = await registry_call(_store(request).change, schedule_id, group=group)
    return ScheduleOut.of(changed)


@router.delete(
    "/v1/schedules/{scheduleId}/group", response_model=ScheduleOut, responses=_NO_SCHEDULE
)
async def unassign_schedule(
    schedule_id: ScheduleIdPath, request: Request, principal: Operator
) -> ScheduleOut:
    """Unassign the schedule: its lamps keep the level they were last sent."""
    await _visible(request, principal, schedule_id)
    changed = await registry_call(_store(request).change, schedule_id, unassign=True)
    return ScheduleOut.of(changed)


@router.delete(
    "/v1/schedules/{scheduleId}", status_code=status.HTTP_204_NO_CONTENT, responses=_NO_SCHEDULE
)
async def delete_schedule(
    schedule_id: ScheduleIdPath, request: Request, principal: Operator
) -> Response:
    """Remove the schedule: its lamps keep the level they were last sent."""
    await _visible(request, principal, schedule_id)
    await asyncio.to_thread(_store(request).remove, schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/devices/{deviceId}/schedule", response_model=LampScheduleOut)
async def lamp_schedule(
    device_id: DeviceIdPath, request: Request, registry: RegistryDep, principal: Reader
) -> LampScheduleOut:
    """The schedule a lamppost follows, the step in force now and the next, at its place."""
    lamp = await registry_call(registry.device, device_id)
    ensure_visible(principal, device_id, lamp.tenant)
    stored = await asyncio.to_thread(_store(request).for_lamp, lamp)
    if stored is None:
        return LampScheduleOut(device_id=device_id, schedule=None, in_force=None, next=None)
    now = datetime.now(UTC)
    in_force, coming = (
        None if found is None else StepAt(at=found[1].when, level=found[1].level, moment=found[0])
        for found in (
            latest_occurrence(stored.schedule, now, lamp.latitude, lamp.longitude),
            next_occurrence(stored.schedule, now, lamp.latitude, lamp.longitude),
        )
    )
    return LampScheduleOut(
        device_id=device_id, schedule=ScheduleOut.of(stored), in_force=in_force, next=coming
    )
