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
from sqlalchemy import case, select

from api.auth import Reader
from api.etag import answer, weak_etag
from api.timefmt import now_ns
from devices import Registry
from devices.registry.device_state import _offline, _silent, device_state
from devices.registry.rows import DeviceRow
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
    offline = _offline()
    status = case((offline, 1), (_silent(now_ns()), 2), else_=0)
    query = (
        select(
            DeviceRow.device_id,
            DeviceRow.name,
            DeviceRow.tenant,
            DeviceRow.kind,
            DeviceRow.longitude,
            DeviceRow.latitude,
            status,
        )
        .outerjoin(device_state, device_state.c.device_id == DeviceRow.device_id)
        .where(DeviceRow.retired_at.is_(None))
        .order_by(DeviceRow.device_id)
    )
    if tenants is not None:
        query = query.where(DeviceRow.tenant.in_(list(tenants)))
    ids: list[str] = []
    names: list[str] = []
    lon: list[float] = []
    lat: list[float] = []
    tenant_of: list[int] = []
    kind_of: list[int] = []
    status_of: list[int] = []
    tenant_index: dict[str, int] = {}
    kind_index: dict[str, int] = {}
    # The registry offers no projection of this shape yet: one read-only query in its session.
    with registry._session() as session:  # noqa: SLF001
        for device_id, name, tenant, kind, x, y, code in session.execute(query):
            ids.append(device_id)
            names.append(name)
            lon.append(round(x, 6))
            lat.append(round(y, 6))
            tenant_of.append(tenant_index.setdefault(tenant, len(tenant_index)))
            kind_of.append(kind_index.setdefault(kind, len(kind_index)))
            status_of.append(int(code))
    out: dict[str, Any] = {
        "statuses": STATUSES,
        "tenants": list(tenant_index),
        "kinds": list(kind_index),
        "ids": ids,
        "names": names,
        "lon": lon,
        "lat": lat,
        "tenant": tenant_of,
        "kind": kind_of,
        "status": status_of,
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
