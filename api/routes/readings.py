"""Raw readings of one device: `/v1/devices/{deviceId}/readings` as JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from api import cursor
from api.deps import ConfigDep, InfluxDep, RegistryDep
from api.open_access import (
    OPEN_DATA_OPERATION,
    OpenReader,
    licence_links,
    open_data_of,
    readable_device,
)
from api.problems import BadRequest
from api.routes.devices import DeviceIdPath
from api.schemas import ReadingOut, ReadingPage
from api.timefmt import Moment, format_ns, now_ns, to_ns
from devices import DEVICE_KINDS
from timeseries import InfluxClient
from timeseries.queries import RawReading, raw_readings
from timeseries.schema import raw_measurement

router = APIRouter(prefix="/v1/devices", tags=["readings"])

_DAY_NS = 86400 * 1_000_000_000


@router.get(
    "/{deviceId}/readings",
    openapi_extra=OPEN_DATA_OPERATION,
    response_model=ReadingPage,
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no such device"}},
)
async def readings(
    request: Request,
    device_id: DeviceIdPath,
    registry: RegistryDep,
    influx: InfluxDep,
    config: ConfigDep,
    principal: OpenReader,
    metric: Annotated[
        str | None,
        Query(
            max_length=400,
            description=("Comma-separated metric names; only readings with one of them"),
        ),
    ] = None,
    start: Annotated[
        Moment | None, Query(description="Inclusive, RFC 3339; default 24 hours before end")
    ] = None,
    end: Annotated[Moment | None, Query(description="Exclusive, RFC 3339; default now")] = None,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=10_000,
            description="readings per page: default 1000 for JSON; CSV without a limit streams "
            "the whole range",
        ),
    ] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="oldest or newest first")] = "asc",
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
) -> Response | ReadingPage:
    """Raw readings of one device in a time range, with cursor pagination (`Link` header).

    Without an API key: of an open-data device, its licence and attribution in `Link`.
    """
    device = await readable_device(request, registry, principal, device_id)
    licence: list[str] = []
    if principal.open_data_only:
        terms = (await open_data_of(request)).terms(device)
        licence = licence_links([terms] if terms else [])
    problems: list[dict[str, str]] = []
    kinds = [DEVICE_KINDS[k] for k in (device.kind, *device.extra_kinds) if k in DEVICE_KINDS]
    known = {m.name for k in kinds for m in k.metrics}
    metrics = [m.strip() for m in metric.split(",") if m.strip()] if metric else None
    problems.extend(
        {
            "name": "metric",
            "in": "query",
            "reason": f"{device.kind} devices have no metric {name!r}",
        }
        for name in metrics or []
        if name not in known
    )
    if problems:
        raise BadRequest(problems)
    end_ns = to_ns(end) if end else now_ns()
    start_ns = to_ns(start) if start else end_ns - _DAY_NS
    if start_ns >= end_ns:
        problems.append({"name": "start", "in": "query", "reason": "start must be before end"})
    if end_ns - start_ns > timedelta(days=config.max_range_days).total_seconds() * 1e9:
        problems.append(
            {
                "name": "start",
                "in": "query",
                "reason": f"the range may span at most {config.max_range_days:g} days",
            }
        )
    if problems:
        raise BadRequest(problems)
    descending = order == "desc"
    measurements = [raw_measurement(k.name) for k in kinds]
    wants_csv = "text/csv" in request.headers.get("accept", "")
    columns = metrics or [m.name for k in kinds for m in k.metrics]
    if wants_csv and limit is None and page_cursor is None:
        # The whole range, a page at a time: a year of one device never sits in memory.
        return StreamingResponse(
            _csv_stream(influx, measurements, device_id, start_ns, end_ns, descending, metrics,
                        columns),
            media_type="text/csv; charset=utf-8",
            headers={"Link": ", ".join(licence)} if licence else None,
        )  # fmt: skip
    limit = limit or 1000
    if page_cursor is not None:
        state = cursor.decode(page_cursor)
        after = cursor.timestamp(state, "t")
        if after is None or state.get("o") != order:
            raise BadRequest(
                [{"name": "cursor", "in": "query", "reason": "the cursor belongs to another query"}]
            )
        if descending:
            end_ns = min(end_ns, after)
        else:
            start_ns = max(start_ns, after + 1)
    found = await raw_readings(
        influx,
        measurements,
        device_id,
        start_ns,
        end_ns,
        limit=limit + 1,
        descending=descending,
        metrics=metrics,
    )
    more = len(found) > limit
    found = found[:limit]
    next_cursor = cursor.encode({"t": found[-1].ts_ns, "o": order}) if more else None
    links = [cursor.next_link(request, next_cursor)] if next_cursor else []
    headers = {"Link": ", ".join(links + licence)} if links or licence else {}
    if wants_csv:
        body = _csv_header(columns) + _csv_rows(found, columns)
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    page = ReadingPage(
        device_id=device_id,
        next=next_cursor,
        items=[
            ReadingOut(
                ts=format_ns(r.ts_ns), seq=r.seq, ts_assigned=r.ts_assigned, metrics=r.metrics
            )
            for r in found
        ],
    )
    return Response(
        page.model_dump_json(by_alias=True), media_type="application/json", headers=headers
    )


CSV_PAGE = 10_000


def _csv_header(columns: list[str]) -> str:
    return ",".join(["ts", "seq", *columns]) + "\n"


def _csv_rows(found: list[RawReading], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for r in found:
        writer.writerow(
            [
                format_ns(r.ts_ns),
                "" if r.seq is None else r.seq,
                *(repr(r.metrics[c]) if c in r.metrics else "" for c in columns),
            ]
        )
    return buffer.getvalue()


async def _csv_stream(
    influx: InfluxClient,
    measurements: list[str],
    device_id: str,
    start_ns: int,
    end_ns: int,
    descending: bool,
    metrics: list[str] | None,
    columns: list[str],
) -> AsyncIterator[str]:
    """The CSV of a whole range, fetched and sent `CSV_PAGE` readings at a time."""
    yield _csv_header(columns)
    while start_ns < end_ns:
        page = await raw_readings(
            influx, measurements, device_id, start_ns, end_ns, limit=CSV_PAGE,
            descending=descending, metrics=metrics,
        )  # fmt: skip
        if not page:
            return
        yield _csv_rows(page, columns)
        if len(page) < CSV_PAGE:
            return
        # A full page: more may follow after its last reading.
        if descending:
            end_ns = page[-1].ts_ns
        else:
            start_ns = page[-1].ts_ns + 1
