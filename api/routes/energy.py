"""The energy figure of a group of lampposts per day: measured against full light.

A group is the lampposts of a tenant (or of every tenant the key sees), narrowed to a box,
or the lamps that follow a schedule. A day is a calendar day in Europe/Amsterdam (23 or 25
hours at the summer-time changes). See timeseries/energy.py for how the figure is built.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.auth import Reader
from api.deps import FleetDep, InfluxDep
from api.problems import BadRequest
from api.schemas import Out
from api.timefmt import format_ns, to_ns
from devices import BoundingBox, Device, NotFound
from devices.schedule_store import ScheduleStore
from devices.schedules import LOCAL_ZONE
from devices.topics import TENANT_PATTERN
from timeseries.energy import KIND, group_energy
from timeseries.selection import Selection

router = APIRouter(tags=["energy"])

_HOUR_NS = 3600 * 1_000_000_000
# Telemetry is kept 90 days by default, rollups longer; before 1970 there is none to read.
_FIRST_DAY = date(1970, 1, 1)
_LAST_DAY = date(2200, 1, 1)


class EnergyOut(Out):
    """Energy of a group of lampposts over one local day (kWh)."""

    day: date
    start: str
    end: str
    tenant: str | None
    bbox: str | None
    schedule_id: str | None
    lamps: int  # lampposts in the group
    lamps_reporting: int  # of which readings came that day
    measured_kwh: float
    full_kwh: float  # what the same burning hours would have used at 100 %
    saved_kwh: float
    saved_share: float | None
    source: str  # rollup, raw or rollup+raw


def _box(bbox: str | None) -> BoundingBox | None:
    if bbox is None:
        return None
    try:
        return BoundingBox.parse(bbox)
    except ValueError as exc:
        raise BadRequest([{"name": "bbox", "in": "query", "reason": str(exc)}]) from None


def _inside(box: BoundingBox, lamp: Device) -> bool:
    if not box.min_lat <= lamp.latitude <= box.max_lat:
        return False
    if box.min_lon <= box.max_lon:
        return box.min_lon <= lamp.longitude <= box.max_lon
    return lamp.longitude >= box.min_lon or lamp.longitude <= box.max_lon


def _day_span(day: date) -> tuple[int, int]:
    """The local day's start and end (ns, UTC); 400 when it is not made of whole UTC hours
    (Amsterdam kept local mean time, UTC+0:19:32, until 1937) or is out of reach."""
    reason = None
    if not _FIRST_DAY <= day < _LAST_DAY:
        reason = f"a day from {_FIRST_DAY} to before {_LAST_DAY}"
    else:
        start = datetime.combine(day, time(), tzinfo=LOCAL_ZONE)
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=LOCAL_ZONE)
        start_ns, end_ns = to_ns(start), to_ns(end)
        if start_ns % _HOUR_NS == 0 and end_ns % _HOUR_NS == 0:
            return start_ns, end_ns
        reason = f"{day} in Europe/Amsterdam is not made of whole hours"
    raise BadRequest([{"name": "day", "in": "query", "reason": reason}])


@router.get(
    "/v1/energy",
    response_model=EnergyOut,
    responses={404: {"description": "no such schedule, or another tenant's"}},
)
async def energy(
    request: Request,
    fleet: FleetDep,
    influx: InfluxDep,
    principal: Reader,
    day: Annotated[date, Query(description="a calendar day in Europe/Amsterdam")],
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    bbox: Annotated[
        str | None, Query(max_length=100, description="minLon,minLat,maxLon,maxLat (WGS84)")
    ] = None,
    schedule_id: Annotated[
        str | None, Query(alias="scheduleId", pattern=r"^[0-9a-f-]{36}$")
    ] = None,
) -> EnergyOut:
    """Measured energy of the group's lampposts that day against full light, in kWh."""
    box = _box(bbox)
    tenants = principal.allowed_tenants(tenant)
    lamps = await fleet.devices(tenants=tenants, kind=KIND, include_retired=False)
    if box is not None:
        lamps = [lamp for lamp in lamps if _inside(box, lamp)]
    if schedule_id is not None:
        store: ScheduleStore = request.app.state.schedules
        stored = await asyncio.to_thread(store.get, schedule_id)
        if not principal.sees(stored.tenant):
            raise NotFound("schedule", schedule_id)
        chosen = await asyncio.to_thread(store.assignments)
        following = {d for d, (s, _) in chosen.items() if s.id == schedule_id}
        lamps = [lamp for lamp in lamps if lamp.device_id in following]
    # Whole tenants are named by their tag (a short query whatever their size); else by id.
    if box is None and schedule_id is None:
        selection = Selection.of_tenants(tenants)
    else:
        selection = Selection.of_devices(lamp.device_id for lamp in lamps)
    start_ns, end_ns = _day_span(day)
    figure = await group_energy(influx, selection, start_ns, end_ns)
    return EnergyOut(
        day=day,
        start=format_ns(start_ns),
        end=format_ns(end_ns),
        tenant=tenant,
        bbox=bbox,
        schedule_id=schedule_id,
        lamps=len(lamps),
        lamps_reporting=figure.lamps_reporting,
        measured_kwh=figure.measured_kwh,
        full_kwh=figure.full_kwh,
        saved_kwh=figure.saved_kwh,
        saved_share=figure.saved_share,
        source=figure.source,
    )
