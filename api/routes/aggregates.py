"""Aggregates over intervals: one device, or many devices of a kind in a tenant or area."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query, Request, Response

from api.deps import ConfigDep, FleetDep, InfluxDep, RegistryDep
from api.open_access import (
    OPEN_DATA_OPERATION,
    OpenReader,
    fleet_selection,
    licence_links,
    open_data_of,
    readable_device,
    terms_of,
)
from api.problems import BadRequest
from api.routes.devices import DeviceIdPath
from api.schemas import AggregateOut
from api.timefmt import Moment, format_ns, now_ns, to_ns
from devices import DEVICE_KINDS, Aggregation, Device
from devices.topics import TENANT_PATTERN
from timeseries.aggregate import STATS
from timeseries.intervals import bucket_bounds, interval_aggregates, whole_hour_zone
from timeseries.selection import Selection

router = APIRouter(tags=["aggregates"])

MAX_INTERVALS = 10_000
_DAY_NS = 86400 * 1_000_000_000
# Statistic names on the API (camelCase).
PUBLIC = {
    "count": "count",
    "mean": "mean",
    "min": "min",
    "max": "max",
    "stddev": "stddev",
    "energetic_mean": "energeticMean",
    "circular_mean": "circularMean",
    "r": "resultantLength",
    "increase": "increase",
    "last": "last",
    "share_on": "shareOn",
    "covered_s": "coveredSeconds",
}
Interval = Literal["1m", "15m", "1h", "1d"]


def _functions(aggregation: Aggregation, asked: str | None) -> list[str]:
    available = {PUBLIC[s]: s for s in STATS[aggregation]}
    if not asked:
        return list(available.values())
    wanted = [f.strip() for f in asked.split(",") if f.strip()]
    problems = []
    for name in wanted:
        if name not in available:
            hint = " (decibels average energetically: energeticMean)" if name == "mean" else ""
            problems.append(
                {
                    "name": "functions",
                    "in": "query",
                    "reason": f"{name!r} does not fit a {aggregation.value} metric; "
                    f"choose from {', '.join(available)}{hint}",
                }
            )
    if problems:
        raise BadRequest(problems)
    return ["count", *(available[n] for n in wanted if available[n] != "count")]


def _range(
    start: datetime | None,
    end: datetime | None,
    interval: str,
    zone: ZoneInfo | None,
    max_days: float,
) -> tuple[int, int]:
    problems = []
    end_ns = to_ns(end) if end else now_ns()
    start_ns = to_ns(start) if start else end_ns - _DAY_NS
    if start_ns >= end_ns:
        problems.append({"name": "start", "in": "query", "reason": "start must be before end"})
    elif end_ns - start_ns > max_days * _DAY_NS:
        problems.append(
            {
                "name": "start",
                "in": "query",
                "reason": f"the range may span at most {max_days:g} days",
            }
        )
    elif bucket_bounds(start_ns, end_ns, interval, zone) > MAX_INTERVALS:
        problems.append(
            {
                "name": "interval",
                "in": "query",
                "reason": f"at most {MAX_INTERVALS} intervals per answer; choose a longer interval",
            }
        )
    if problems:
        raise BadRequest(problems)
    return start_ns, end_ns


def _zone(time_zone: str, interval: str) -> ZoneInfo | None:
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            [{"name": "timeZone", "in": "query", "reason": f"unknown time zone {time_zone!r}"}]
        ) from None
    if time_zone != "UTC" and interval != "1d":
        raise BadRequest(
            [{"name": "timeZone", "in": "query", "reason": "a time zone applies to 1d only"}]
        )
    return zone


async def _answer(
    influx: InfluxDep,
    devices: list[Device],
    kind: str,
    metric: str,
    start_ns: int,
    end_ns: int,
    interval: str,
    zone: ZoneInfo | None,
    functions: list[str],
    device_id: str | None,
    asked: Selection,
    *,
    fleet: bool = False,
) -> AggregateOut:
    found = DEVICE_KINDS[kind].metric(metric)
    assert found is not None
    if zone is not None and not whole_hour_zone(zone, start_ns, end_ns):
        reason = f"{zone.key} is not a whole number of hours from UTC; days are built of hours"
        raise BadRequest([{"name": "timeZone", "in": "query", "reason": reason}])
    rows = await interval_aggregates(
        influx, kind, metric, asked, start_ns, end_ns, interval, zone, fleet=fleet
    )
    items: list[dict[str, float | str | None]] = []
    for i, start in enumerate(rows.starts):
        item: dict[str, float | str | None] = {
            "start": format_ns(start),
            "end": format_ns(rows.ends[i]),
        }
        for name in functions:
            value = rows.stats[name][i]
            item[PUBLIC[name]] = None if math.isnan(value) else value
        items.append(item)
    return AggregateOut(
        device_id=device_id,
        kind=kind,
        metric=metric,
        unit=found.unit,
        aggregation=found.aggregation.value,
        interval=interval,
        time_zone=zone.key if zone else "UTC",
        source=rows.source,
        devices=len(devices),
        items=items,
    )


async def _licence(
    request: Request, response: Response, open_only: bool, devices: list[Device]
) -> None:
    """The licences of the open devices an answer to a caller without a key draws on."""
    if open_only:
        links = licence_links(terms_of(devices, await open_data_of(request)))
        if links:
            response.headers["Link"] = ", ".join(links)


@router.get(
    "/v1/devices/{deviceId}/aggregates",
    response_model=AggregateOut,
    openapi_extra=OPEN_DATA_OPERATION,
)
async def device_aggregates(
    device_id: DeviceIdPath,
    request: Request,
    response: Response,
    registry: RegistryDep,
    influx: InfluxDep,
    config: ConfigDep,
    principal: OpenReader,
    metric: Annotated[str, Query(max_length=64)],
    start: Annotated[Moment | None, Query(description="default: 24 hours before end")] = None,
    end: Annotated[Moment | None, Query(description="default: now")] = None,
    interval: Annotated[Interval, Query()] = "1h",
    functions: Annotated[
        str | None, Query(max_length=200, description="comma-separated; default all that fit")
    ] = None,
    time_zone: Annotated[
        str, Query(alias="timeZone", max_length=64, description="for calendar days (1d)")
    ] = "UTC",
) -> AggregateOut:
    """One device's metric per interval, with the statistics its aggregation kind allows.

    Without an API key: of an open-data device, its licence and attribution in `Link`.
    """
    device = await readable_device(request, registry, principal, device_id)
    await _licence(request, response, principal.open_data_only, [device])
    kind = next(
        (k for k in (device.kind, *device.extra_kinds) if DEVICE_KINDS[k].metric(metric)), None
    )
    if kind is None:
        raise BadRequest(
            [
                {
                    "name": "metric",
                    "in": "query",
                    "reason": f"{device.kind} devices have no {metric!r}",
                }
            ]
        )
    aggregation = DEVICE_KINDS[kind].metric(metric).aggregation  # type: ignore[union-attr]
    names = _functions(aggregation, functions)
    zone = _zone(time_zone, interval)
    start_ns, end_ns = _range(start, end, interval, zone, config.max_range_days)
    return await _answer(
        influx,
        [device],
        kind,
        metric,
        start_ns,
        end_ns,
        interval,
        zone,
        names,
        device_id,
        Selection.of_devices([device_id]),
    )


@router.get("/v1/aggregates", response_model=AggregateOut, openapi_extra=OPEN_DATA_OPERATION)
async def fleet_aggregates(
    request: Request,
    response: Response,
    fleet: FleetDep,
    influx: InfluxDep,
    config: ConfigDep,
    principal: OpenReader,
    kind: Annotated[str, Query(max_length=32)],
    metric: Annotated[str, Query(max_length=64)],
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    bbox: Annotated[
        str | None, Query(description="minLon,minLat,maxLon,maxLat (WGS84)", max_length=100)
    ] = None,
    start: Annotated[Moment | None, Query()] = None,
    end: Annotated[Moment | None, Query()] = None,
    interval: Annotated[Interval, Query()] = "1h",
    functions: Annotated[str | None, Query(max_length=200)] = None,
    time_zone: Annotated[str, Query(alias="timeZone", max_length=64)] = "UTC",
) -> AggregateOut:
    """A metric across all devices of a kind (in a tenant, in an area) per interval.

    Without an API key: across the open-data devices only, their licences in `Link`.
    """
    problems = []
    if kind not in DEVICE_KINDS:
        problems.append({"name": "kind", "in": "query", "reason": f"unknown kind {kind!r}"})
    elif DEVICE_KINDS[kind].metric(metric) is None:
        problems.append({"name": "metric", "in": "query", "reason": f"{kind} has no {metric!r}"})
    box: list[float] | None = None
    if bbox is not None:
        try:
            box = [float(p) for p in bbox.split(",")]
        except ValueError:
            box = None
        if (
            box is None
            or len(box) != 4
            or not (-180 <= box[0] <= box[2] <= 180 and -90 <= box[1] <= box[3] <= 90)
        ):
            problems.append(
                {"name": "bbox", "in": "query", "reason": "minLon,minLat,maxLon,maxLat in WGS84"}
            )
    if problems:
        raise BadRequest(problems)
    aggregation = DEVICE_KINDS[kind].metric(metric).aggregation  # type: ignore[union-attr]
    names = _functions(aggregation, functions)
    zone = _zone(time_zone, interval)
    start_ns, end_ns = _range(start, end, interval, zone, config.max_range_days)
    # Every device of some tenants is named by the tenants: a short query, whatever the count;
    # the devices of an area (and open data) by their ids.
    devices, asked = await fleet_selection(request, fleet, principal, tenant=tenant, kind=kind)
    if box is not None:
        devices = [
            d for d in devices if box[0] <= d.longitude <= box[2] and box[1] <= d.latitude <= box[3]
        ]
        asked = Selection.of_devices(d.device_id for d in devices)
    await _licence(request, response, principal.open_data_only, devices)
    # Whole tenants are answered from the fleet rollups (a row per tenant and window), which
    # hold every statistic but `last` (there is no "last device" to merge across devices).
    whole_tenants = asked.device_ids is None and "last" not in names
    return await _answer(
        influx,
        devices,
        kind,
        metric,
        start_ns,
        end_ns,
        interval,
        zone,
        names,
        None,
        asked,
        fleet=whole_tenants,
    )
