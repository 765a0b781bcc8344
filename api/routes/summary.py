"""The fleet of the caller's tenants at a glance: `/v1/summary`, for the dashboard's overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.auth import Reader
from api.etag import answer
from api.summary import SummaryCache, SummaryOut
from devices.topics import TENANT_PATTERN

router = APIRouter(prefix="/v1/summary", tags=["summary"])


def summaries(request: Request) -> SummaryCache:
    """The API's summary cache (made by the lifespan)."""
    cache: SummaryCache = request.app.state.summaries
    return cache


@router.get(
    "",
    response_model=SummaryOut,
    responses={304: {"description": "unchanged since the `ETag` given in `If-None-Match`"}},
)
async def summary(
    request: Request,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
) -> Response:
    """Devices by tenant, kind and status; readings and rejections per minute over the last
    hour; the longest silent devices; open alerts. At most a few seconds old, with a weak
    `ETag` that ignores the clock (`generatedAt`, `silentForS`)."""
    found = await summaries(request).get(principal.allowed_tenants(tenant))
    return answer(request, found.body, "application/json", etag=found.etag)
