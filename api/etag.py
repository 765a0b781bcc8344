"""Weak entity tags for answers that dashboards poll: `ETag`, and 304 for `If-None-Match`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from fastapi import Request, Response


def weak_etag(*parts: bytes) -> str:
    """A weak entity tag of an answer's bytes (body and whatever headers shape it)."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return f'W/"{digest.hexdigest()}"'


def matches(request: Request, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 13.1.2) or is `*`."""
    asked = request.headers.get("if-none-match")
    if not asked:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in asked.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def answer(
    request: Request,
    body: bytes,
    media_type: str,
    headers: Mapping[str, str] | None = None,
    *,
    vary: str | None = None,
    etag: str | None = None,
) -> Response:
    """The answer with its ETag (by default one of its bytes and headers), or 304 without a
    body when the caller holds it already."""
    extra = dict(headers or {})
    if etag is None:
        etag = weak_etag(body, media_type.encode(), repr(sorted(extra.items())).encode())
    # Cache-Control stays the API's `no-store`: tenants' data is kept by no cache, and a
    # dashboard sends the tag of the copy it holds itself.
    extra["ETag"] = etag
    if vary is not None:
        extra["Vary"] = vary
    if matches(request, etag):
        return Response(status_code=304, headers=extra)
    return Response(body, media_type=media_type, headers=extra)
