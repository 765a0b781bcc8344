"""Opaque cursors for pagination and the `Link` header that carries them."""

from __future__ import annotations

import base64
import binascii

import orjson
from fastapi import Request

from api.problems import BadRequest
from api.urls import public

# What InfluxDB can store, in ns since the epoch (64-bit, 1677-09-21 to 2262-04-11), less a
# margin so that one more nanosecond either way stays in range.
MIN_NS = -(2**63) + 1
MAX_NS = 2**63 - 2


def _refused(reason: str = "not a cursor this API handed out") -> BadRequest:
    return BadRequest([{"name": "cursor", "in": "query", "reason": reason}])


def encode(state: dict[str, object]) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def decode(cursor: str) -> dict[str, object]:
    """The state behind a cursor; 400 when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        state = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        state = None
    if not isinstance(state, dict):
        raise _refused()
    return state


def timestamp(state: dict[str, object], name: str) -> int | None:
    """The ns timestamp `name` of a cursor's state; None when absent, 400 when out of range.

    A forged cursor may carry any number; one InfluxDB cannot store would fail the query (502).
    """
    value = state.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_NS <= value <= MAX_NS:
        raise _refused()
    return value


def next_link(request: Request, cursor: str) -> str:
    """The `Link` header value pointing at the next page."""
    url = request.url.include_query_params(cursor=cursor)
    return f'<{public(request, url)}>; rel="next"'
