"""Liveness and readiness: `/v1/health`, `/v1/health/live`, `/v1/health/ready`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import InfluxDep, RegistryDep
from api.problems import problem
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


# A 503 is a problem document (NLGov ADR: every error answer is application/problem+json),
# with the checks as an extension member; api/problems.py gives it the Problem schema.
_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"description": "a dependency is down: a problem document with `checks`"}
}


@router.get("/ready", response_model=HealthOut, responses=_DOWN)
async def ready(registry: RegistryDep, influx: InfluxDep) -> HealthOut | JSONResponse:
    """Every dependency answers: 200, else 503 (problem+json) naming the one that does not."""
    checks = await _checks(registry, influx)
    if all(c.status == "up" for c in checks):
        return HealthOut(status="up", checks=checks)
    down = ", ".join(c.name for c in checks if c.status == "down")
    return problem(
        503,
        "Service unavailable",
        f"not ready: {down} down",
        checks=[c.model_dump(mode="json") for c in checks],
    )


@router.get("", response_model=HealthOut, responses=_DOWN)
async def health(registry: RegistryDep, influx: InfluxDep) -> HealthOut | JSONResponse:
    """The same as `/v1/health/ready`."""
    return await ready(registry, influx)


# Load balancers and monitors often probe with HEAD: the same status and headers, no body. Out of
# the OpenAPI document, which describes the GET operations; HEAD is GET without its body.
for _path, _endpoint in (("/live", live), ("/ready", ready), ("", health)):
    router.add_api_route(
        _path, _endpoint, methods=["HEAD"], response_model=HealthOut, include_in_schema=False
    )
