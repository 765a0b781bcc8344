"""Every device of the caller's tenants as a point for the dashboard's map: `/v1/map/points`.

The map clusters in the browser (supercluster), which needs every position once; `/v1/latest`
would send each device's metrics and a full object per device (45 MB for 150,000 devices). This
answer is columnar: one array per field, with tenants, kinds and statuses as indexes into short
lists, so 150,000 devices cost a few MB before compression. It is built by one query over the
devices and their state (status decided in SQL, as the summary's counts are) and kept for
`MAX_AGE_S` per set of tenants, with a weak ETag of its bytes so that a dashboard asking again
with `If-None-Match` gets 304 while nothing moved.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Query, Request, Response

from api.auth import Reader
from api.etag import answer, weak_etag
from api.timefmt import now_ns
from devices import Registry
from devices.topics import TENANT_PATTERN

router = APIRouter(prefix="/v1/map", tags=["latest"])

MAX_AGE_S: Final = 3.0
STATUSES: Final = ("online", "offline", "silent")
_REMEMBERED: Final = 64
# (registry, tenants) -> (built at, body, etag); the registry too: tests run several apps.
_built: OrderedDict[tuple[int, tuple[str, ...] | None], tuple[float, bytes, str]] = OrderedDict()
_lock = asyncio.Lock()


def _points(registry: Registry, tenants: Sequence[str] | None) -> bytes:
    """The columnar JSON of the active devices of `tenants` (None: every tenant), by id."""
    found = registry.positions(tenants, now_ns())
    tenant_index: dict[str, int] = {}
    kind_index: dict[str, int] = {}
    status_index = {status: n for n, status in enumerate(STATUSES)}
    tenant_of = [tenant_index.setdefault(t, len(tenant_index)) for t in found.tenants]
    kind_of = [kind_index.setdefault(k, len(kind_index)) for k in found.kinds]
    out: dict[str, Any] = {
        "statuses": STATUSES,
        "tenants": list(tenant_index),
        "kinds": list(kind_index),
        "ids": found.device_ids,
        "names": found.names,
        "lon": [round(x, 6) for x in found.longitudes],
        "lat": [round(y, 6) for y in found.latitudes],
        "tenant": tenant_of,
        "kind": kind_of,
        "status": [status_index[status] for status in found.statuses],
    }
    return orjson.dumps(out)


async def points_of(registry: Registry, tenants: Sequence[str] | None) -> tuple[bytes, str]:
    """The answer for a set of tenants and its ETag, built at most every `MAX_AGE_S`."""
    key = (id(registry), tuple(sorted(tenants)) if tenants is not None else None)
    async with _lock:
        kept = _built.get(key)
        if kept is not None and time.monotonic() - kept[0] < MAX_AGE_S:
            return kept[1], kept[2]
        body = await asyncio.to_thread(_points, registry, tenants)
        etag = weak_etag(body)
        _built[key] = (time.monotonic(), body, etag)
        _built.move_to_end(key)
        while len(_built) > _REMEMBERED:
            _built.popitem(last=False)
        return body, etag


@router.get(
    "/points",
    responses={
        200: {
            "description": "columnar JSON: `ids`, `names`, `lon`, `lat` (WGS84 degrees) and "
            "`tenant`, `kind`, `status` as indexes into `tenants`, `kinds`, `statuses`; "
            "one entry per active device, by id; a weak `ETag`",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        304: {"description": "unchanged since the `ETag` given in `If-None-Match`"},
    },
)
async def map_points(
    request: Request,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
) -> Response:
    """Every active device of the caller's tenants as a position with its status and kind, for
    a map that clusters in the browser. At most a few seconds old."""
    tenants = principal.allowed_tenants(tenant)
    registry: Registry = request.app.state.registry
    body, etag = await points_of(registry, tenants)
    return answer(request, body, "application/json", etag=etag)
