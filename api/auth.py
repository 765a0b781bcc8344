"""Who is calling: API keys (`Authorization: Bearer …` or `X-API-Key: …`) turned into a Principal.

Routes ask for a role with the Annotated aliases below (`Reader`, `Operator`, `Admin`) and
restrict what they answer to `principal.allowed_tenants(...)`. A device of another tenant is
answered as if it did not exist (`ensure_visible`), so a key never learns what it may not see.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiConfig
from api.keys import KeyStore, Role, UnknownKey
from api.problems import Forbidden, TooManyRequests, Unauthorized
from api.sessions import COOKIE, SessionStore
from api.throttle import FailedLogins, TooManyFailures, client_group
from api.urls import own_origin
from devices import NotFound

__all__ = [
    "Admin",
    "Operator",
    "Principal",
    "Reader",
    "Role",
    "ensure_visible",
    "require_read",
    "require_role",
]

_bearer = HTTPBearer(
    scheme_name="bearer",
    description="An API key from `lantaarn keys create`, as `Authorization: Bearer ltn_…`",
    auto_error=False,
)
_api_key = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKey",
    description="The same API key in the `X-API-Key` header",
    auto_error=False,
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a role, the tenants it may see (None: all) and its key (None: anonymous).

    `open_data_only`: an anonymous caller where anonymous reading is off; it sees no tenant,
    only the devices the tenants publish as open data (api/open_access.py).
    """

    role: Role
    tenants: frozenset[str] | None
    key_id: str | None
    open_data_only: bool = False

    @property
    def anonymous(self) -> bool:
        """Called without a key (only where anonymous reading is allowed)."""
        return self.key_id is None

    def sees(self, tenant: str) -> bool:
        """Whether this caller may see the data of `tenant`."""
        return self.tenants is None or tenant in self.tenants

    def allowed_tenants(self, requested: str | None) -> list[str] | None:
        """The tenants to filter by (None: all) for a request naming `requested` (or none).

        Asking for a tenant outside the key is 403: the caller named it, so nothing leaks.
        """
        if requested is not None:
            if not self.sees(requested):
                raise Forbidden(f"this API key does not cover tenant {requested!r}")
            return [requested]
        return None if self.tenants is None else sorted(self.tenants)


ANONYMOUS_READER = Principal(Role.VIEWER, None, None)
# Anonymous where anonymous reading is off: no tenant by key, the open data of all of them.
OPEN_DATA_READER = Principal(Role.VIEWER, frozenset(), None, open_data_only=True)


def ensure_visible(principal: Principal, device_id: str, tenant: str) -> None:
    """Raise the registry's own 404 when the device's tenant is outside the caller's."""
    if not principal.sees(tenant):
        raise NotFound("device", device_id)


def _keys(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys
    return keys


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PRINCIPAL = "lantaarn_principal"  # request.state: who the caller is, once found out


def _presented_key(request: Request) -> str | None:
    """The API key in the request's headers; 401 for a malformed header or two keys."""
    authorization = request.headers.get("authorization")
    bearer = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthorized(
                "the Authorization header must be `Bearer <API key>`", invalid_key=True
            )
        bearer = credentials.strip()
    presented = {p for p in (bearer, request.headers.get("x-api-key")) if p}
    if len(presented) > 1:
        raise Unauthorized("two different API keys were presented", invalid_key=True)
    return presented.pop() if presented else None


def _check_origin(request: Request) -> None:
    """Refuse a cookie-authenticated change that a page of another origin may have sent.

    The cookie is SameSite=Strict already; browsers send Origin on every POST, PUT, PATCH and
    DELETE, so a missing or foreign one is refused too (defence in depth against CSRF).
    """
    origin = request.headers.get("origin")
    if origin is None or origin != own_origin(request):
        raise Forbidden("a change with a session cookie must come from the dashboard's own origin")


async def _verify_key(request: Request, presented: str) -> Principal:
    throttle: FailedLogins = request.app.state.throttle
    group = client_group(request.client.host if request.client else None)
    try:
        throttle.attempt(group)
    except TooManyFailures as exc:
        raise TooManyRequests(exc.retry_after_s) from None
    key = await asyncio.to_thread(_keys(request).verify, presented)
    if key is None:
        raise Unauthorized("unknown or revoked API key", invalid_key=True)
    throttle.succeeded(group)
    return Principal(key.role, key.tenants, key.key_id)


async def _session_principal(request: Request, session_id: str) -> Principal | None:
    # A session id has 256 random bits: unknown ones are not worth throttling, and a browser
    # whose session ended (a restart of the API) must not be punished for sending it again.
    sessions: SessionStore = request.app.state.sessions
    session = sessions.find(session_id)
    if session is None:
        return None
    try:
        key = await asyncio.to_thread(_keys(request).key, session.key_id)
    except UnknownKey:
        key = None
    if key is None or not key.active:
        sessions.close(session_id)  # the key was revoked: so is every session it opened
        return None
    if request.method not in _SAFE_METHODS:
        _check_origin(request)
    request.state.session_id = session_id
    return Principal(key.role, key.tenants, key.key_id)


async def identify(request: Request) -> Principal | None:
    """Who calls: by API key (headers) or else by session cookie; None for nobody.

    401 for a wrong key, 429 while the client's address has failed too often, 403 for a
    cookie-authenticated change from a foreign origin. Found out once per request.
    """
    if hasattr(request.state, _PRINCIPAL):
        known: Principal | None = getattr(request.state, _PRINCIPAL)
        return known
    presented = _presented_key(request)
    principal = None
    if presented is not None:
        principal = await _verify_key(request, presented)
    elif session_id := request.cookies.get(COOKIE):
        principal = await _session_principal(request, session_id)
    if principal is not None:
        request.state.key_id = principal.key_id
    setattr(request.state, _PRINCIPAL, principal)
    return principal


async def authenticate(
    request: Request,
    # Declared for the OpenAPI document (its security schemes); identify() reads the headers.
    _bearer_doc: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _api_key_doc: Annotated[str | None, Depends(_api_key)],
) -> Principal | None:
    """The principal of the presented key or session, None when none is presented."""
    return await identify(request)


Authenticated = Annotated[Principal | None, Depends(authenticate)]


async def require_read(request: Request, principal: Authenticated) -> Principal:
    """A caller who may read: any valid key, or anyone when anonymous reading is on."""
    if principal is not None:
        return principal
    config: ApiConfig = request.app.state.config
    if config.anonymous_read:
        return ANONYMOUS_READER
    raise Unauthorized("an API key is required", invalid_key=False)


def require_role(role: Role | str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through keys of `role` or a higher one."""
    needed = Role(role)

    async def _require(principal: Authenticated) -> Principal:
        if principal is None:
            raise Unauthorized(f"an API key of role {needed.value} is required", invalid_key=False)
        if not principal.role.includes(needed):
            raise Forbidden(f"this needs role {needed.value}; the key has {principal.role.value}")
        return principal

    _require.__name__ = f"require_{needed.value}"
    return _require


async def require_metrics_reader(request: Request) -> None:
    """/metrics: the scrape token of the configuration, or an admin key (platform-wide counts)."""
    config: ApiConfig = request.app.state.config
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if (
        config.metrics_token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), config.metrics_token.encode())
    ):
        return
    principal = await identify(request)
    if principal is None:
        raise Unauthorized("the metrics need the scrape token or an admin key", invalid_key=False)
    if not principal.role.includes(Role.ADMIN):
        raise Forbidden(
            "the metrics count every tenant: they need the scrape token or an admin key"
        )


Reader = Annotated[Principal, Depends(require_read)]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]


def document(schema: dict[str, Any]) -> None:
    """Add the 401 and 403 answers to every operation that takes an API key (in place)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("security"):
                responses = operation.setdefault("responses", {})
                responses.setdefault("401", {})
                responses.setdefault("403", {})
