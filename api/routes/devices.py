"""Devices of the registry: `/v1/devices` (list, create), `/v1/devices/{deviceId}`, imports.

A device is never deleted: `POST /v1/devices/{deviceId}/retire` marks it retired, which keeps
its history readable and drops its broker login. The routes take no authentication themselves;
it is added as a router dependency where the app is built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Literal, ParamSpec, TypeVar

from fastapi import APIRouter, Body, Path, Query, Request, Response, status

from api import cursor
from api.auth import Operator, Principal, ensure_visible
from api.deps import ConfigDep, FleetDep, InfluxDep, RegistryDep
from api.live import live_states_if_available
from api.open_access import (
    OPEN_DATA_OPERATION,
    OpenReader,
    licence_links,
    open_data_of,
    open_devices,
    readable_device,
    terms_of,
    terms_out,
)
from api.problems import ApiProblem, BadRequest, taken
from api.registry_schemas import (
    BrokerLoginOut,
    DeviceCreatedOut,
    DeviceIn,
    DevicePatch,
    ImportOut,
    RetireIn,
)
from api.routes.completeness import recent_completeness
from api.schemas import DeviceOut, DevicePage
from api.spelling import public_name
from api.timefmt import now_ns
from api.urls import public
from broker.pki import revoke_retired
from devices import BoundingBox, Device, InvalidDevice
from devices.provisioning import issue_credentials, provision
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN
from devices.transfer import Format, export, import_devices

# Paths are written out in full: the bulk import is its own resource, /v1/device-imports, since
# /v1/devices/import would be a device whose id is "import".
router = APIRouter(tags=["devices"])

DeviceIdPath = Annotated[
    str, Path(alias="deviceId", pattern=f"^{DEVICE_ID_PATTERN}$", description="The device's id")
]

CSV = "text/csv"
GEOJSON = "application/geo+json"
MAX_IMPORT_BYTES = 32 * 1024 * 1024

P = ParamSpec("P")
T = TypeVar("T")


async def registry_call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking registry call off the event loop; its problems become one 400 list.

    The app's own InvalidDevice handler names only the first property, so every problem (each
    bad row of an import, each broken rule of a device) is listed here instead.
    """
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except InvalidDevice as exc:
        raise BadRequest(
            [
                {"name": public_name(p.field), "in": "body", "reason": taken(str(p))}
                for p in exc.problems
            ]
        ) from exc
    except RecursionError:
        # A JSON document nested deeper than the parser's stack (an attack, never a device list).
        raise BadRequest(
            [{"name": "body", "in": "body", "reason": "the document is nested too deeply"}]
        ) from None


def bbox_param(text: str | None) -> BoundingBox | None:
    """The `bbox` query parameter as a box; 400 when it is not one."""
    if text is None:
        return None
    try:
        return BoundingBox.parse(text)
    except ValueError as exc:
        raise BadRequest([{"name": "bbox", "in": "query", "reason": str(exc)}]) from None


@router.get(
    "/v1/devices",
    openapi_extra=OPEN_DATA_OPERATION,
    response_model=DevicePage,
    responses={
        200: {"content": {CSV: {}, GEOJSON: {}}},
        400: {"description": "invalid filter or cursor"},
    },
)
async def list_devices(
    request: Request,
    response: Response,
    registry: RegistryDep,
    fleet: FleetDep,
    influx: InfluxDep,
    principal: OpenReader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    kind: Annotated[str | None, Query(max_length=32, description="the main kind")] = None,
    device_status: Annotated[
        Literal["active", "retired"] | None,
        Query(alias="status", description="active or retired; default both"),
    ] = None,
    bbox: Annotated[
        str | None,
        Query(
            max_length=200,
            description="minLon,minLat,maxLon,maxLat in WGS84 degrees (edges included)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
) -> Response | DevicePage:
    """Devices ordered by id, filtered; cursor pagination. CSV or GeoJSON by `Accept`.

    Without an API key: the devices published as open data, with their licence.
    """
    box = bbox_param(bbox)
    after = None
    if page_cursor is not None:
        after = str(cursor.decode(page_cursor).get("after", ""))
    if principal.open_data_only:
        opened = await open_devices(
            request,
            fleet,
            tenant=tenant,
            kind=kind,
            include_retired=device_status != "active",
            bbox=box,
        )
        found = [
            d
            for d in opened
            if (after is None or d.device_id > after) and (device_status != "retired" or d.retired)
        ][: limit + 1]
    else:
        found = await registry_call(
            registry.devices,
            tenants=principal.allowed_tenants(tenant),
            kind=kind,
            status=device_status,
            bbox=box,
            after=after,
            limit=limit + 1,
        )
    next_cursor = (
        cursor.encode({"after": found[limit - 1].device_id}) if len(found) > limit else None
    )
    found = found[:limit]
    links = [cursor.next_link(request, next_cursor)] if next_cursor is not None else []
    open_data = await open_data_of(request) if principal.open_data_only else None
    if open_data is not None:
        links += licence_links(terms_of(found, open_data))
    if links:
        response.headers["Link"] = ", ".join(links)
    accept = request.headers.get("accept", "")
    for media_type, fmt in ((CSV, Format.CSV), (GEOJSON, Format.GEOJSON)):
        if media_type in accept:
            return Response(
                export(found, fmt),
                media_type=f"{media_type}; charset=utf-8",
                headers=dict(response.headers),
            )
    states = await live_states_if_available(influx, found, now_ns())
    items = [DeviceOut.of(d).live(states.get(d.device_id)) for d in found]
    if open_data is not None:
        items = [
            i.model_copy(update={"open_data": terms_out(open_data.terms(d))})
            for i, d in zip(items, found, strict=True)
        ]
    return DevicePage(items=items, next=next_cursor)


@router.post(
    "/v1/devices",
    response_model=DeviceCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses={400: {"description": "invalid device"}, 409: {"description": "id taken"}},
)
async def create_device(
    body: DeviceIn,
    request: Request,
    response: Response,
    registry: RegistryDep,
    principal: Operator,
) -> DeviceCreatedOut:
    """Register a device; the answer carries its broker password, which is not shown again."""
    device = body.device()
    principal.allowed_tenants(device.tenant)  # 403 for another tenant's device
    credentials = issue_credentials(device)
    stored: Device = await registry_call(
        registry.add_device, device, password_hash=credentials.password_hash
    )
    response.headers["Location"] = public(
        request, request.url_for("get_device", deviceId=stored.device_id)
    )
    return DeviceCreatedOut(
        **DeviceOut.of(stored).model_dump(), broker_login=BrokerLoginOut.of(credentials)
    )


@router.post(
    "/v1/device-imports",
    response_model=ImportOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {CSV: {"schema": {"type": "string"}}, GEOJSON: {"schema": {}}},
        }
    },
    responses={
        400: {"description": "bad rows, each with its line or feature; nothing stored"},
        413: {"description": "the file is too large"},
        415: {"description": "neither CSV nor GeoJSON"},
    },
)
async def import_file(
    request: Request,
    registry: RegistryDep,
    principal: Operator,
    logins: Annotated[bool, Query(description="issue broker logins (shown once)")] = True,
) -> ImportOut:
    """Import a CSV or GeoJSON file of devices (by Content-Type): all rows or none."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == CSV:
        fmt = Format.CSV
    elif content_type in (GEOJSON, "application/json"):
        fmt = Format.GEOJSON
    else:
        raise ApiProblem(
            415, "Unsupported media type", f"send {CSV} or {GEOJSON}, not {content_type!r}"
        )
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise ApiProblem(413, "Content too large", f"import at most {MAX_IMPORT_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            [{"name": "body", "in": "body", "reason": f"not UTF-8 at byte {exc.start}"}]
        ) from None
    result = await registry_call(
        import_devices,
        registry,
        text,
        fmt,
        issue_logins=logins,
        allowed_tenants=None if principal.tenants is None else set(principal.tenants),
    )
    return ImportOut(
        imported=len(result.devices),
        broker_logins=[BrokerLoginOut.of(c) for c in result.credentials],
    )


@router.get(
    "/v1/devices/{deviceId}",
    openapi_extra=OPEN_DATA_OPERATION,
    response_model=DeviceOut,
    responses={404: {"description": "no such device"}},
)
async def get_device(
    device_id: DeviceIdPath,
    request: Request,
    response: Response,
    registry: RegistryDep,
    influx: InfluxDep,
    principal: OpenReader,
) -> DeviceOut:
    """One device (without an API key: an open-data device, with its licence)."""
    device = await readable_device(request, registry, principal, device_id)
    states = await live_states_if_available(influx, [device], now_ns())
    out = DeviceOut.of(device).live(states.get(device_id))
    out = out.model_copy(update={"completeness": await recent_completeness(influx, device_id)})
    if principal.open_data_only:
        terms = (await open_data_of(request)).terms(device)
        response.headers["Link"] = ", ".join(licence_links([terms] if terms else []))
        out = out.model_copy(update={"open_data": terms_out(terms)})
    return out


async def _own_device(registry: RegistryDep, principal: Principal, device_id: str) -> Device:
    """The device, if the caller's key covers its tenant; 404 as if missing otherwise."""
    device: Device = await registry_call(registry.device, device_id)
    ensure_visible(principal, device_id, device.tenant)
    return device


@router.patch(
    "/v1/devices/{deviceId}",
    response_model=DeviceOut,
    responses={400: {"description": "invalid change"}, 404: {"description": "no such device"}},
)
async def update_device(
    device_id: DeviceIdPath,
    registry: RegistryDep,
    principal: Operator,
    body: Annotated[DevicePatch, Body(media_type="application/merge-patch+json")],
) -> DeviceOut:
    """Change some of a device's properties (merge patch); its id and tenant stay."""
    await _own_device(registry, principal, device_id)
    if cleared := body.cleared_required():
        raise BadRequest(
            [{"name": n, "in": "body", "reason": f"{n} cannot be null"} for n in cleared]
        )
    return DeviceOut.of(await registry_call(registry.update, device_id, body.changes()))


@router.post(
    "/v1/devices/{deviceId}/retire",
    response_model=DeviceOut,
    responses={400: {"description": "invalid time"}, 404: {"description": "no such device"}},
)
async def retire_device(
    device_id: DeviceIdPath,
    registry: RegistryDep,
    config: ConfigDep,
    principal: Operator,
    body: RetireIn | None = None,
) -> DeviceOut:
    """Retire a device: it keeps its history, loses its broker login and certificates."""
    await _own_device(registry, principal, device_id)
    when = body.retired_at if body is not None else None
    if when is not None and when.tzinfo is None:
        raise BadRequest(
            [{"name": "retiredAt", "in": "body", "reason": "give a time zone (Z or an offset)"}]
        )
    retired = await registry_call(registry.retire, device_id, when)
    await asyncio.to_thread(revoke_retired, config.pki_dir, f"{retired.tenant}/{device_id}")
    return DeviceOut.of(retired)


@router.post(
    "/v1/devices/{deviceId}/broker-login",
    response_model=BrokerLoginOut,
    responses={400: {"description": "retired device"}, 404: {"description": "no such device"}},
)
async def new_broker_login(
    device_id: DeviceIdPath, registry: RegistryDep, principal: Operator
) -> BrokerLoginOut:
    """Give a device a new broker password (shown once); the broker takes it on its next reload."""
    await _own_device(registry, principal, device_id)
    return BrokerLoginOut.of(await registry_call(provision, registry, device_id))
