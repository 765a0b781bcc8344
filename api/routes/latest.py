"""The newest reading and status of every device: `/v1/latest`, for maps and the dashboard.

Read from the device-state store (devices.registry.DeviceStates) a page at a time, so one
tenant's first page costs the same in a fleet of a thousand devices or a million.
"""

from __future__ import annotations

from typing import Annotated, Final

import orjson
from fastapi import APIRouter, Query, Request, Response

from api import cursor
from api.deps import InfluxDep, RegistryDep
from api.etag import answer
from api.live import LiveState, latest_item, page_states
from api.open_access import (
    OPEN_DATA_OPERATION,
    OpenReader,
    licence_links,
    open_data_of,
    public_view,
    terms_of,
    terms_out,
)
from api.problems import BadRequest
from api.routes.devices import bbox_param
from api.schemas import LatestOut
from devices import Device
from devices.topics import DEVICE_ID_RE, TENANT_PATTERN

router = APIRouter(prefix="/v1/latest", tags=["latest"])


GEOJSON = "application/geo+json"
MAX_PAGE: Final = 10_000  # also the default: a city's tenant usually fits on one page


def _after(page_cursor: str | None) -> str | None:
    """The device id a cursor continues after; 400 when it is not one of ours."""
    if page_cursor is None:
        return None
    after = cursor.decode(page_cursor).get("after")
    if not isinstance(after, str) or not DEVICE_ID_RE.fullmatch(after):
        raise BadRequest([{"name": "cursor", "in": "query", "reason": "not a cursor of ours"}])
    return after


@router.get(
    "",
    openapi_extra=OPEN_DATA_OPERATION,
    response_model=list[LatestOut],
    responses={
        200: {
            "description": "JSON, or a GeoJSON FeatureCollection in CRS84 by `Accept`; a `Link` "
            'header with rel="next" when another page follows; a weak `ETag`',
            "content": {
                GEOJSON: {"schema": {"type": "object", "description": "a FeatureCollection"}}
            },
        },
        304: {"description": "unchanged since the `ETag` given in `If-None-Match`"},
    },
)
async def latest(
    request: Request,
    registry: RegistryDep,
    influx: InfluxDep,
    principal: OpenReader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    bbox: Annotated[
        str | None,
        Query(
            max_length=200,
            description="only devices inside: minLon,minLat,maxLon,maxLat in WGS84 degrees "
            "(edges included), e.g. an area chosen on the dashboard's map",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
) -> Response:
    """The latest reading of every active device with its status, in pages by device id.

    As GeoJSON (`Accept: application/geo+json`) for a map: one Point feature per device.
    Without an API key: the open-data devices only, each with its licence and attribution.
    """
    after = _after(page_cursor)
    box = bbox_param(bbox)
    open_data = await open_data_of(request) if principal.open_data_only else None
    if open_data is not None:
        tenants: list[str] | None = open_data.tenants(tenant)
        admit = open_data.admits
    else:
        tenants, admit = principal.allowed_tenants(tenant), None
    found: list[tuple[Device, LiveState]] = []
    following = None
    if tenants != []:
        found, following = await page_states(
            registry,
            influx,
            tenants=tenants,
            kind=kind,
            after=after,
            limit=limit,
            admit=admit,
            bbox=box,
        )
    devices = [public_view(d) if open_data is not None else d for d, _ in found]
    out = [
        latest_item(device, state, terms_out(open_data.terms(device)) if open_data else None)
        for device, (_, state) in zip(devices, found, strict=True)
    ]
    links = []
    if following is not None:
        links.append(cursor.next_link(request, cursor.encode({"after": following})))
    if open_data is not None:
        links.extend(licence_links(terms_of(devices, open_data)))
    headers = {"Link": ", ".join(links)} if links else {}
    if GEOJSON in request.headers.get("accept", ""):
        collection = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": item["deviceId"],
                    "geometry": item.pop("location"),
                    "properties": item,
                }
                for item in out
            ],
        }
        return answer(request, orjson.dumps(collection), GEOJSON, headers, vary="Accept")
    body = orjson.dumps(out)
    return answer(request, body, "application/json", headers, vary="Accept")
