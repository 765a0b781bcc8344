"""Intake per minute: `/v1/fleet/activity`, for the operators' overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import Reader
from api.deps import InfluxDep
from api.schemas import ActivityMinute, ActivityOut
from api.timefmt import format_ns, now_ns
from devices.topics import TENANT_PATTERN
from timeseries.queries import activity

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])

_MINUTE_NS = 60 * 1_000_000_000


@router.get("/activity", response_model=ActivityOut)
async def fleet_activity(
    influx: InfluxDep,
    principal: Reader,
    minutes: Annotated[int, Query(ge=1, le=1440)] = 60,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
) -> ActivityOut:
    """Readings stored and rejections by reason, per minute, for the last `minutes` minutes.

    Readings and messages are counted for the whole platform, so they are given only to keys
    that see every tenant, when no tenant is asked for; rejections are per tenant.
    """
    end = now_ns()
    start = end - end % _MINUTE_NS - (minutes - 1) * _MINUTE_NS
    rows = await activity(influx, start, end, principal.allowed_tenants(tenant))
    # The workers count for the whole platform: a key limited to some tenants (or a question
    # about one tenant) gets only what is per tenant, the rejections.
    platform_wide = principal.tenants is None and tenant is None
    return ActivityOut(
        items=[
            ActivityMinute(
                minute=format_ns(r.minute_ns),
                readings=r.values_stored if platform_wide else None,
                messages=r.messages if platform_wide else None,
                rejections=r.rejections,
            )
            for r in rows
        ]
    )
