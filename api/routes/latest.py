"""The newest reading and status of every device: `/v1/latest`, for maps and the dashboard."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from api.deps import FleetDep, InfluxDep
from api.live import live_states
from api.open_access import (
    OPEN_DATA_OPERATION,
    OpenReader,
    fleet_selection,
    licence_links,
    open_data_of,
    terms_of,
    terms_out,
)
from api.schemas import LatestOut, PointGeometry
from api.timefmt import format_ns, now_ns
from devices.topics import TENANT_PATTERN

router = APIRouter(prefix="/v1/latest", tags=["latest"])


GEOJSON = "application/geo+json"


@router.get(
    "",
    openapi_extra=OPEN_DATA_OPERATION,
    response_model=list[LatestOut],
    responses={
        200: {
            "description": "JSON, or a GeoJSON FeatureCollection in CRS84 by `Accept`",
            "content": {
                GEOJSON: {"schema": {"type": "object", "description": "a FeatureCollection"}}
            },
        }
    },
)
async def latest(
    request: Request,
    response: Response,
    fleet: FleetDep,
    influx: InfluxDep,
    principal: OpenReader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> list[LatestOut] | Response:
    """The latest reading of every active device (of the last two days) with its status.

    As GeoJSON (`Accept: application/geo+json`) for a map: one Point feature per device.
    Without an API key: the open-data devices only, each with its licence and attribution.
    """
    # Every device of the tenants: named by the tenants, a short query whatever their number.
    devices, asked = await fleet_selection(
        request, fleet, principal, tenant=tenant, kind=kind, include_retired=False
    )
    now = now_ns()
    states = await live_states(influx, devices, now, asked) if devices else {}
    open_data = await open_data_of(request) if principal.open_data_only else None
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
                open_data=terms_out(open_data.terms(device)) if open_data else None,
            )
        )
    headers = {}
    if open_data is not None and (links := licence_links(terms_of(devices, open_data))):
        headers["Link"] = ", ".join(links)
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
        return Response(orjson.dumps(collection), media_type=GEOJSON, headers=headers)
    response.headers.update(headers)
    return out
