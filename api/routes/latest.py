"""The newest reading and status of every device: `/v1/latest`, for maps and the dashboard."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from api.auth import Reader
from api.deps import FleetDep, InfluxDep
from api.live import live_states
from api.schemas import LatestOut, PointGeometry
from api.timefmt import format_ns, now_ns
from devices.topics import TENANT_PATTERN
from timeseries.selection import Selection

router = APIRouter(prefix="/v1/latest", tags=["latest"])


GEOJSON = "application/geo+json"


@router.get(
    "",
    response_model=list[LatestOut],
    responses={200: {"content": {GEOJSON: {"description": "a FeatureCollection in CRS84"}}}},
)
async def latest(
    request: Request,
    fleet: FleetDep,
    influx: InfluxDep,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> list[LatestOut] | Response:
    """The latest reading of every active device (of the last two days) with its status.

    As GeoJSON (`Accept: application/geo+json`) for a map: one Point feature per device.
    """
    tenants = principal.allowed_tenants(tenant)
    devices = await fleet.devices(tenants=tenants, kind=kind, include_retired=False)
    now = now_ns()
    # Every device of the tenants: named by the tenants, a short query whatever their number.
    states = await live_states(influx, devices, now, Selection.of_tenants(tenants))
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
    if GEOJSON in request.headers.get("accept", ""):
        collection = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": item.device_id,
                    "geometry": item.location.model_dump(),
                    "properties": item.model_dump(exclude={"location"}),
                }
                for item in out
            ],
        }
        return Response(orjson.dumps(collection), media_type=GEOJSON)
    return out
