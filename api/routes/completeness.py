"""Data completeness: readings received / expected from the devices' `seq`, per device or tenant.

Answered from the `completeness` rows (whole minutes, see timeseries.completeness): a minute
appears some 10-70 s after it closed, and is counted again with its 1-minute rollup.
"Expected" is the readings between a device's first and last `seq` in the period (restarts and
reordering allowed for): a device that stopped sending is not incomplete here but `silent`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from api.auth import Reader, ensure_visible
from api.deps import InfluxDep, RegistryDep
from api.problems import BadRequest
from api.schemas import CompletenessOut, Out
from api.timefmt import Moment, format_ns, now_ns, to_ns
from devices import DEVICE_KINDS
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN
from timeseries import InfluxClient, InfluxError
from timeseries.completeness import Figure, read_figures

router = APIRouter(tags=["completeness"])

Interval = Literal["1m", "15m", "1h", "1d"]
INTERVAL_S = {"1m": 60, "15m": 900, "1h": 3600, "1d": 86400}
MAX_INTERVALS = 10_000
MAX_DAYS = 400
_HOUR_NS = 3600 * 1_000_000_000
_DAY_NS = 24 * _HOUR_NS

DeviceIdPath = Annotated[
    str, Path(alias="deviceId", pattern=f"^{DEVICE_ID_PATTERN}$", description="The device's id")
]


class IntervalCompleteness(CompletenessOut):
    """Received and expected readings in one interval (starting at `start`)."""

    start: str


class DeviceCompletenessOut(CompletenessOut):
    """A device's completeness over a period, in total and per interval."""

    device_id: str
    tenant: str
    start: str
    end: str
    interval: str | None
    intervals: list[IntervalCompleteness]


class TenantCompleteness(CompletenessOut):
    """A tenant's completeness over a period, for one device kind."""

    tenant: str
    kind: str


class FleetCompletenessOut(Out):
    """Completeness of each tenant and kind the caller may see, over a period."""

    start: str
    end: str
    items: list[TenantCompleteness]


def figure(received: int, expected: int) -> dict[str, int | float | None]:
    """The fields of CompletenessOut from two counts."""
    return {
        "received": received,
        "expected": expected,
        "missing": expected - received,
        "ratio": round(received / expected, 6) if expected else None,
    }


def _range(start: datetime | None, end: datetime | None, interval: str | None) -> tuple[int, int]:
    end_ns = to_ns(end) if end else now_ns()
    start_ns = to_ns(start) if start else end_ns - _HOUR_NS
    reason = None
    if start_ns >= end_ns:
        reason = "start must be before end"
    elif end_ns - start_ns > MAX_DAYS * _DAY_NS:
        reason = f"the range may span at most {MAX_DAYS} days"
    elif interval and (end_ns - start_ns) // (INTERVAL_S[interval] * 10**9) > MAX_INTERVALS:
        reason = f"at most {MAX_INTERVALS} intervals per answer; choose a longer interval"
    if reason:
        raise BadRequest([{"name": "start", "in": "query", "reason": reason}])
    return start_ns, end_ns


async def recent_completeness(influx: InfluxClient, device_id: str) -> CompletenessOut | None:
    """A device's completeness over the last hour; None when it sent nothing with `seq`."""
    end = now_ns()
    try:
        rows = await read_figures(influx, end - _HOUR_NS, end, device_id=device_id)
    except InfluxError:
        return None  # the device itself is still worth answering with
    if not rows:
        return None
    return CompletenessOut(**figure(rows[0].received, rows[0].expected))


@router.get(
    "/v1/devices/{deviceId}/completeness",
    response_model=DeviceCompletenessOut,
    responses={400: {"description": "invalid range"}, 404: {"description": "no such device"}},
)
async def device_completeness(
    device_id: DeviceIdPath,
    registry: RegistryDep,
    influx: InfluxDep,
    principal: Reader,
    start: Annotated[Moment | None, Query(description="default: an hour before end")] = None,
    end: Annotated[Moment | None, Query(description="default: now")] = None,
    interval: Annotated[Interval | None, Query(description="also per interval (UTC)")] = None,
) -> DeviceCompletenessOut:
    """Readings received / expected from the device's `seq` over a period (whole minutes)."""
    device = await asyncio.to_thread(registry.device, device_id)
    ensure_visible(principal, device_id, device.tenant)
    start_ns, end_ns = _range(start, end, interval)
    whole = await read_figures(influx, start_ns, end_ns, device_id=device_id)
    parts: list[Figure] = []
    if interval:
        parts = await read_figures(
            influx, start_ns, end_ns, device_id=device_id, interval_s=INTERVAL_S[interval]
        )
    received = sum(f.received for f in whole)
    expected = sum(f.expected for f in whole)
    return DeviceCompletenessOut(
        device_id=device_id,
        tenant=device.tenant,
        start=format_ns(start_ns),
        end=format_ns(end_ns),
        interval=interval,
        intervals=[
            IntervalCompleteness(start=format_ns(f.start_ns), **figure(f.received, f.expected))
            for f in parts
        ],
        **figure(received, expected),
    )


@router.get(
    "/v1/completeness",
    response_model=FleetCompletenessOut,
    responses={
        400: {"description": "invalid filter or range"},
        403: {"description": "a tenant outside the key"},
    },
)
async def fleet_completeness(
    influx: InfluxDep,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    kind: Annotated[str | None, Query(description="a device kind")] = None,
    start: Annotated[Moment | None, Query(description="default: an hour before end")] = None,
    end: Annotated[Moment | None, Query(description="default: now")] = None,
) -> FleetCompletenessOut:
    """Readings received / expected per tenant and device kind over a period (whole minutes)."""
    if kind is not None and kind not in DEVICE_KINDS:
        raise BadRequest(
            [{"name": "kind", "in": "query", "reason": f"unknown device kind {kind[:40]!r}"}]
        )
    start_ns, end_ns = _range(start, end, None)
    rows = await read_figures(
        influx,
        start_ns,
        end_ns,
        tenants=principal.allowed_tenants(tenant),
        kind=kind,
        by=("tenant", "kind"),
    )
    return FleetCompletenessOut(
        start=format_ns(start_ns),
        end=format_ns(end_ns),
        items=[
            TenantCompleteness(
                tenant=f.tags.get("tenant", ""),
                kind=f.tags.get("kind", ""),
                **figure(f.received, f.expected),
            )
            for f in sorted(rows, key=lambda f: (f.tags.get("tenant", ""), f.tags.get("kind", "")))
        ],
    )
