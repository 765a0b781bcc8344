"""What ingest set aside: `/v1/rejections`, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api import cursor
from api.auth import Reader
from api.deps import InfluxDep
from api.problems import BadRequest
from api.schemas import RejectionOut, RejectionPage
from api.timefmt import Moment, format_ns, now_ns, to_ns
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN
from timeseries.queries import rejections as stored_rejections

router = APIRouter(prefix="/v1/rejections", tags=["rejections"])

_DAY_NS = 86400 * 1_000_000_000
REASONS = (
    "bad_json", "schema", "unknown_device", "unknown_metric", "out_of_range", "not_finite",
    "timestamp_in_future", "timestamp_too_old", "timestamp_invalid", "payload_too_large",
    "topic_invalid", "tenant_mismatch", "device_retired", "storage_refused",
)  # fmt: skip


@router.get("", response_model=RejectionPage)
async def list_rejections(
    request: Request,
    influx: InfluxDep,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    device_id: Annotated[
        str | None, Query(alias="deviceId", pattern=f"^{DEVICE_ID_PATTERN}$")
    ] = None,
    reason: Annotated[str | None, Query(description=", ".join(REASONS))] = None,
    start: Annotated[Moment | None, Query(description="default: 24 hours before end")] = None,
    end: Annotated[Moment | None, Query(description="default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
) -> Response:
    """Rejected messages, readings and metric values with their reason, newest first."""
    problems = []
    if reason is not None and reason not in REASONS:
        problems.append({"name": "reason", "in": "query", "reason": f"one of {', '.join(REASONS)}"})
    if problems:
        raise BadRequest(problems)
    tenants = principal.allowed_tenants(tenant)
    end_ns = to_ns(end) if end else now_ns()
    start_ns = to_ns(start) if start else end_ns - _DAY_NS
    if page_cursor is not None:
        before = cursor.timestamp(cursor.decode(page_cursor), "before")
        if before is None:
            raise BadRequest([{"name": "cursor", "in": "query", "reason": "not a cursor of ours"}])
        end_ns = min(end_ns, before)
    found = await stored_rejections(
        influx,
        start_ns=start_ns,
        end_ns=end_ns,
        limit=limit + 1,
        tenants=tenants,
        device_id=device_id,
        reason=reason,
    )
    page = RejectionPage(
        items=[
            RejectionOut(
                ts=format_ns(r.ts_ns),
                reason=r.reason,
                tenant=r.tenant or None,
                device_id=r.device_id or None,
                topic=r.topic,
                metric=r.metric or None,
                detail=r.detail,
                excerpt=r.excerpt,
                values=r.values,
            )
            for r in found[:limit]
        ]
    )
    headers = {}
    if len(found) > limit:
        page.next = cursor.encode({"before": found[limit - 1].ts_ns})
        headers["Link"] = cursor.next_link(request, page.next)
    return Response(page.model_dump_json(), media_type="application/json", headers=headers)
