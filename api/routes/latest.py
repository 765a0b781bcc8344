"""The newest reading and status of every device: `/v1/latest`, for maps and the dashboard."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import Reader
from api.deps import InfluxDep, RegistryDep
from api.live import live_states
from api.schemas import LatestOut, PointGeometry
from api.timefmt import format_ns, now_ns
from devices.topics import TENANT_PATTERN

router = APIRouter(prefix="/v1/latest", tags=["latest"])


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
    now = now_ns()
    states = await live_states(influx, devices, now, just_these=False)
    out = []
    for device in devices:
        state = states[device.device_id]
        out.append(
            LatestOut(
                device_id=device.device_id,
                tenant=device.tenant,
                kind=device.kind,
                name=device.name,
                location=PointGeometry(coordinates=(device.longitude, device.latitude)),
                status=state.status,
                ts=format_ns(state.last_seen_ns) if state.last_seen_ns is not None else None,
                metrics=state.metrics,
            )
        )
    return out
