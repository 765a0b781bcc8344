"""Liveness and readiness: `/v1/health`, `/v1/health/live`, `/v1/health/ready`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from api.deps import InfluxDep, RegistryDep
from api.schemas import CheckOut, HealthOut

router = APIRouter(prefix="/v1/health", tags=["health"])


@router.get("/live", response_model=HealthOut)
async def live() -> HealthOut:
    """The process answers."""
    return HealthOut(status="up")


async def _checks(registry: RegistryDep, influx: InfluxDep) -> list[CheckOut]:
    checks = []
    try:
        await influx.ping()
        checks.append(CheckOut(name="influxdb", status="up"))
    except Exception as exc:  # noqa: BLE001 - any failure is "down"
        checks.append(CheckOut(name="influxdb", status="down", detail=str(exc)[:200]))
    try:
        await asyncio.to_thread(registry.ping)
        checks.append(CheckOut(name="registry", status="up"))
    except Exception as exc:  # noqa: BLE001
        checks.append(CheckOut(name="registry", status="down", detail=type(exc).__name__))
    return checks


@router.get(
    "/ready",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "a dependency is down"}},
)
async def ready(registry: RegistryDep, influx: InfluxDep, response: Response) -> HealthOut:
    """Every dependency answers: 200, else 503 naming the one that does not."""
    checks = await _checks(registry, influx)
    up = all(c.status == "up" for c in checks)
    response.status_code = 200 if up else 503
    return HealthOut(status="up" if up else "down", checks=checks)


@router.get(
    "",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "a dependency is down"}},
)
async def health(registry: RegistryDep, influx: InfluxDep, response: Response) -> HealthOut:
    """The same as `/v1/health/ready`."""
    return await ready(registry, influx, response)
