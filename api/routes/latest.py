"""The newest reading and status of every device: `/v1/latest`, for maps and the dashboard."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.auth import Reader
from api.deps import InfluxDep, RegistryDep
from api.schemas import LatestOut, PointGeometry
from api.timefmt import format_ns, now_ns
from devices import DEVICE_KINDS, Device
from devices.topics import TENANT_PATTERN
from timeseries.queries import last_status, latest_readings
from timeseries.schema import raw_measurement

router = APIRouter(prefix="/v1/latest", tags=["latest"])

_NS = 1_000_000_000
LOOKBACK_NS = 2 * 86400 * _NS
SILENT_AFTER_INTERVALS = 3


def device_status(
    device: Device, last_reading_ns: int | None, status: tuple[int, str] | None, now: int
) -> Literal["online", "offline", "silent"]:
    """online, offline (its last will said so after its last reading) or silent (3 intervals)."""
    if (
        status is not None
        and status[1] == "offline"
        and (last_reading_ns is None or status[0] >= last_reading_ns)
    ):
        return "offline"
    interval = device.interval_s or DEVICE_KINDS[device.kind].interval_s
    if last_reading_ns is None or now - last_reading_ns > SILENT_AFTER_INTERVALS * interval * _NS:
        return "silent"
    return "online"


@router.get("", response_model=list[LatestOut])
async def latest(
    registry: RegistryDep,
    influx: InfluxDep,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> list[LatestOut]:
    """The latest reading of every active device (of the last two days) with its status."""
    devices = await asyncio.to_thread(
        registry.devices,
        tenants=principal.allowed_tenants(tenant),
        kind=kind,
        include_retired=False,
    )
    kinds = sorted({k for d in devices for k in (d.kind, *d.extra_kinds) if k in DEVICE_KINDS})
    now = now_ns()
    readings, statuses = await asyncio.gather(
        latest_readings(influx, [raw_measurement(k) for k in kinds], now - LOOKBACK_NS),
        last_status(influx, now - LOOKBACK_NS),
    )
    out = []
    for device in devices:
        reading = readings.get(device.device_id)
        ts = reading.ts_ns if reading else None
        out.append(
            LatestOut(
                device_id=device.device_id,
                tenant=device.tenant,
                kind=device.kind,
                name=device.name,
                location=PointGeometry(coordinates=(device.longitude, device.latitude)),
                status=device_status(device, ts, statuses.get(device.device_id), now),
                ts=format_ns(ts) if ts is not None else None,
                metrics=reading.metrics if reading else {},
            )
        )
    return out
