"""The metric catalogue: `/v1/device-kinds`."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import DeviceKindOut, kinds_out

router = APIRouter(prefix="/v1/device-kinds", tags=["catalogue"])


@router.get("", response_model=list[DeviceKindOut])
async def device_kinds() -> list[DeviceKindOut]:
    """Every device kind with its metrics, UCUM units, valid ranges and aggregation kinds."""
    return kinds_out()
