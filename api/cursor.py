"""Opaque cursors for pagination and the `Link` header that carries them."""

from __future__ import annotations

import base64
import binascii

import orjson
from fastapi import Request

from api.problems import BadRequest


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
        raise BadRequest(
            [{"name": "cursor", "in": "query", "reason": "not a cursor this API handed out"}]
        )
    return state


def next_link(request: Request, cursor: str) -> str:
    """The `Link` header value pointing at the next page."""
    url = request.url.include_query_params(cursor=cursor)
    return f'<{url}>; rel="next"'
