"""Devices from the registry: `/v1/devices`, `/v1/devices/{deviceId}`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api import cursor
from api.deps import RegistryDep
from api.schemas import DeviceOut, DevicePage
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN

router = APIRouter(prefix="/v1/devices", tags=["devices"])

DeviceIdPath = Annotated[
    str, Path(alias="deviceId", pattern=f"^{DEVICE_ID_PATTERN}$", description="The device's id")
]


@router.get("", response_model=DevicePage)
async def list_devices(
    request: Request,
    response: Response,
    registry: RegistryDep,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
) -> DevicePage:
    """Devices ordered by id, filtered by tenant and kind; cursor pagination."""
    after = None
    if page_cursor is not None:
        after = str(cursor.decode(page_cursor).get("after", ""))
    found = await asyncio.to_thread(
        registry.devices,
        tenants=[tenant] if tenant else None,
        kind=kind,
        after=after,
        limit=limit + 1,
    )
    items = [DeviceOut.of(d) for d in found[:limit]]
    page = DevicePage(items=items)
    if len(found) > limit:
        page.next = cursor.encode({"after": found[limit - 1].device_id})
        response.headers["Link"] = cursor.next_link(request, page.next)
    return page


@router.get(
    "/{deviceId}", response_model=DeviceOut, responses={404: {"description": "no such device"}}
)
async def get_device(device_id: DeviceIdPath, registry: RegistryDep) -> DeviceOut:
    """One device."""
    return DeviceOut.of(await asyncio.to_thread(registry.device, device_id))
