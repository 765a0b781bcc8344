"""Dashboard sign-in: `POST /v1/sessions` trades an API key for an HttpOnly session cookie.

Page scripts never hold the key after signing in (it is not kept in the page nor in
localStorage), and cannot read the cookie. `DELETE /v1/sessions/current` signs out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import Field

from api.auth import Principal, Reader, identify
from api.problems import Unauthorized
from api.schemas import Out
from api.sessions import COOKIE, Session, SessionStore
from api.timefmt import format_ns, to_ns
from api.urls import public

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


class SessionOut(Out):
    """A dashboard session: whose rights it carries and when it ends."""

    role: str
    tenants: list[str] | None = Field(description="the tenants it may see; null: every tenant")
    expires_at: str = Field(description="when it ends if left unused (UTC)")
    idle_timeout_seconds: int = Field(description="it ends this long after its last use")
    max_seconds: int = Field(description="and at the latest this long after sign-in")


def _store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


def _out(store: SessionStore, session: Session, principal: Principal) -> SessionOut:
    ends = datetime.now(UTC) + timedelta(seconds=store.remaining_s(session))
    return SessionOut(
        role=principal.role.value,
        tenants=None if principal.tenants is None else sorted(principal.tenants),
        expires_at=format_ns(to_ns(ends) // 1_000_000_000 * 1_000_000_000),
        idle_timeout_seconds=int(store.idle_s),
        max_seconds=int(store.max_s),
    )


async def _key_holder(request: Request, principal: Reader) -> Principal:
    """A caller who showed an API key now (not a session cookie, nor nobody)."""
    if principal.anonymous or getattr(request.state, "session_id", None) is not None:
        raise Unauthorized("sign in with an API key (Authorization: Bearer …)", invalid_key=False)
    return principal


async def _session(request: Request) -> tuple[Session, Principal, str]:
    """The caller's session; 401 without one."""
    principal = await identify(request)
    session_id = getattr(request.state, "session_id", None)
    session = _store(request).find(session_id) if session_id else None
    if principal is None or session is None or session_id is None:
        raise Unauthorized("no session: sign in with POST /v1/sessions", invalid_key=False)
    return session, principal, session_id


@router.post(
    "",
    response_model=SessionOut,
    status_code=status.HTTP_201_CREATED,
    responses={201: {"headers": {"Set-Cookie": {"schema": {"type": "string"}}}}},
)
async def sign_in(
    request: Request, response: Response, principal: Annotated[Principal, Depends(_key_holder)]
) -> SessionOut:
    """Open a session for the presented API key; its id comes back only as an HttpOnly cookie."""
    store = _store(request)
    assert principal.key_id is not None  # _key_holder lets no anonymous caller through
    session_id, session = store.open(principal.key_id)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(store.max_s),
        path="/",
        httponly=True,
        samesite="strict",
        # Over plain HTTP (a laptop demo) a Secure cookie would never come back.
        secure=request.url.scheme == "https",
    )
    response.headers["Location"] = public(request, request.url_for("current_session"))
    return _out(store, session, principal)


@router.get(
    "/current",
    response_model=SessionOut,
    responses={401: {"description": "no session"}, 429: {"description": "see Retry-After"}},
)
async def current_session(
    found: Annotated[tuple[Session, Principal, str], Depends(_session)], request: Request
) -> SessionOut:
    """The caller's session (sent with its cookie)."""
    session, principal, _ = found
    return _out(_store(request), session, principal)


@router.delete(
    "/current",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        401: {"description": "no session"},
        403: {"description": "from another origin"},
        429: {"description": "see Retry-After"},
    },
)
async def sign_out(
    found: Annotated[tuple[Session, Principal, str], Depends(_session)], request: Request
) -> Response:
    """End the caller's session and drop its cookie."""
    _store(request).close(found[2])
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
