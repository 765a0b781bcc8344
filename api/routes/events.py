"""Changes pushed to open dashboards: `/v1/events`, server-sent events (text/event-stream).

Events of one stream, only of the caller's tenants (an API key's, or the dashboard session's):

- `summary`: the `/v1/summary` JSON, first on connecting and then whenever it changed (looked at
  every `TICK_S` seconds; the summary itself is shared by every stream of the same tenants);
- `devices`: `{"devices": [...]}`, the devices whose state changed since the last such event,
  each as an item of `/v1/latest`; its `id` lets a reconnecting browser (`Last-Event-ID`) carry
  on where it left off;
- a comment line (`: keep-alive`) when nothing was sent for `HEARTBEAT_S` seconds.

A change is sent once it is `SETTLE_S` old: writers stamp a change before their transaction
commits, and reading only settled changes in (time, device) order never skips one that
committed late.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import Reader
from api.live import LiveState, latest_item
from api.problems import BadRequest
from api.routes.summary import summaries
from api.timefmt import now_ns
from devices import Device, Registry
from devices.registry import DeviceState, live_status
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN

router = APIRouter(prefix="/v1/events", tags=["events"])
log = logging.getLogger(__name__)

TICK_S: Final = 2.0
HEARTBEAT_S: Final = 15.0
SETTLE_S: Final = 3.0
BATCH: Final = 2_000  # devices per `devices` event
BATCHES_PER_TICK: Final = 5
_NS: Final = 1_000_000_000
_EVENT_ID = re.compile(rf"(\d{{1,19}})\.({DEVICE_ID_PATTERN})")


def _start(last_event_id: str | None) -> tuple[int, str]:
    """Where a stream starts: after the last event a reconnecting browser saw, else now."""
    if last_event_id is None:
        return now_ns() - int(SETTLE_S * _NS), ""
    found = _EVENT_ID.fullmatch(last_event_id)
    if found is None:
        raise BadRequest(
            [{"name": "Last-Event-ID", "in": "header", "reason": "not an event id of ours"}]
        )
    return int(found[1]), found[2]


def _item(device: Device, state: DeviceState, now: int) -> dict[str, Any]:
    live = LiveState(live_status(device, state, now), state.last_ns, dict(state.metrics or {}))
    item = latest_item(device, live)
    del item["openData"]  # events go to key holders and sessions only
    return item


def _event(name: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + data + b"\n\n"


async def _stream(
    request: Request, registry: Registry, tenants: Sequence[str] | None, after: tuple[int, str]
) -> AsyncIterator[bytes]:
    cache = summaries(request)
    shown: str | None = None
    quiet_since = time.monotonic()
    yield b"retry: 5000\n\n"
    while True:
        sent = False
        try:
            summary = await cache.get(tenants)
            if summary.etag != shown:
                shown = summary.etag
                yield _event("summary", summary.body)
                sent = True
            for _ in range(BATCHES_PER_TICK):
                now = now_ns()
                changed = await asyncio.to_thread(
                    registry.changed_states, tenants, after, now - int(SETTLE_S * _NS), BATCH
                )
                if not changed:
                    break
                last_device, last_state = changed[-1]
                after = (last_state.changed_ns, last_device.device_id)
                body = orjson.dumps({"devices": [_item(d, s, now) for d, s in changed]})
                yield _event("devices", body, f"{after[0]}.{after[1]}")
                sent = True
                if len(changed) < BATCH:
                    break
        except Exception as exc:  # noqa: BLE001 - the registry away: the stream waits, not dies
            log.warning("event stream: could not read the device state: %s", exc)
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_S:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
        if await request.is_disconnected():
            return
        await asyncio.sleep(TICK_S)


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "server-sent events: `summary` (the /v1/summary JSON) and `devices` "
            '(`{"devices": [items of /v1/latest]}`), with keep-alive comments',
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def events(
    request: Request,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100)] = None,
) -> StreamingResponse:
    """A stream of the fleet's changes for an open dashboard, of the caller's tenants only."""
    tenants = principal.allowed_tenants(tenant)
    registry: Registry = request.app.state.registry
    after = _start(last_event_id)
    return StreamingResponse(
        _stream(request, registry, tenants, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
