"""The door of every request that carries a body: who calls is known before the body is read.

A POST, PUT, PATCH or DELETE is answered 401 (or 429, or 403) before a byte of its body is read,
so a stranger cannot make the server parse a 50 MB document. A caller who may send is still held
to a cap per route (413 when the declared Content-Length is over it, or as soon as a chunked body
passes it), so no body is ever held in memory beyond its route's cap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import auth
from api.problems import ApiProblem, BadRequest, ContentTooLarge, Unauthorized, problem

log = logging.getLogger(__name__)

_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestGuard:
    """ASGI middleware: authenticate, then read the body up to its route's cap, then pass on."""

    def __init__(self, app: ASGIApp, default_cap: int, caps: Mapping[str, int]) -> None:
        """`default_cap` bytes for any route; `caps` bytes by exact path (e.g. an import)."""
        self.app = app
        self.default_cap = default_cap
        self.caps = dict(caps)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer refusals ourselves; hand the app the body we read and capped."""
        if scope["type"] != "http" or scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = str(scope["path"])
        cap = self.caps.get(path, self.default_cap)
        try:
            if await auth.identify(request) is None:
                raise Unauthorized("an API key is required", invalid_key=False)
            body = await _read_capped(request, receive, cap, path)
        except ApiProblem as refused:
            answer = problem(
                refused.status, refused.title, refused.detail, path,
                invalidParams=refused.invalid_params,
            )  # fmt: skip
            answer.headers.update(refused.headers)
            await answer(scope, receive, send)
            return
        if body is None:
            return  # the client went away while sending
        await self.app(scope, _replay(body, receive), send)


async def _read_capped(request: Request, receive: Receive, cap: int, path: str) -> bytes | None:
    """The whole body, or 413 once it is over `cap` bytes; None when the client disconnected."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(
                [{"name": "Content-Length", "in": "header", "reason": "not a byte count"}]
            )
        if int(declared) > cap:
            raise ContentTooLarge(cap, path)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > cap:
            raise ContentTooLarge(cap, path)
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over the body read already, then waits as the server's does."""
    pending = True

    async def _receive() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return _receive
