"""Who is calling: API keys (`Authorization: Bearer …` or `X-API-Key: …`) turned into a Principal.

Routes ask for a role with the Annotated aliases below (`Reader`, `Operator`, `Admin`) and
restrict what they answer to `principal.allowed_tenants(...)`. A device of another tenant is
answered as if it did not exist (`ensure_visible`), so a key never learns what it may not see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiConfig
from api.keys import KeyStore, Role
from api.problems import Forbidden, Unauthorized
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
    """The caller: a role, the tenants it may see (None: all) and its key (None: anonymous)."""

    role: Role
    tenants: frozenset[str] | None
    key_id: str | None

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


def ensure_visible(principal: Principal, device_id: str, tenant: str) -> None:
    """Raise the registry's own 404 when the device's tenant is outside the caller's."""
    if not principal.sees(tenant):
        raise NotFound("device", device_id)


def _keys(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys
    return keys


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal | None:
    """The principal of the presented key, None when none is presented; 401 for a wrong one."""
    if bearer is None and request.headers.get("authorization"):
        raise Unauthorized("the Authorization header must be `Bearer <API key>`", invalid_key=True)
    presented = {p for p in (bearer.credentials if bearer else None, api_key) if p}
    if not presented:
        return None
    if len(presented) > 1:
        raise Unauthorized("two different API keys were presented", invalid_key=True)
    key = await asyncio.to_thread(_keys(request).verify, presented.pop())
    if key is None:
        raise Unauthorized("unknown or revoked API key", invalid_key=True)
    request.state.key_id = key.key_id
    return Principal(key.role, key.tenants, key.key_id)


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
