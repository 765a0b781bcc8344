"""Tenants of the registry: `/v1/tenants` (list, create) and `/v1/tenants/{code}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from api import cursor
from api.auth import Admin, Reader
from api.deps import RegistryDep
from api.registry_schemas import TenantIn, TenantOut, TenantPage
from api.routes.devices import registry_call
from api.urls import public
from devices import NotFound
from devices.topics import TENANT_PATTERN

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantCodePath = Annotated[
    str, Path(pattern=f"^{TENANT_PATTERN}$", description="The tenant's CBS code, e.g. GM0363")
]


@router.get("", response_model=TenantPage)
async def list_tenants(
    request: Request,
    response: Response,
    registry: RegistryDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
) -> TenantPage:
    """Tenants ordered by code; cursor pagination (`Link` header)."""
    after = None
    if page_cursor is not None:
        after = str(cursor.decode(page_cursor).get("after", ""))
    found = await registry_call(
        registry.tenants, after=after, limit=limit + 1, codes=principal.tenants
    )
    page = TenantPage(items=[TenantOut.of(t) for t in found[:limit]])
    if len(found) > limit:
        page.next = cursor.encode({"after": found[limit - 1].code})
        response.headers["Link"] = cursor.next_link(request, page.next)
    return page


@router.post(
    "",
    response_model=TenantOut,
    status_code=status.HTTP_201_CREATED,
    responses={400: {"description": "invalid tenant"}, 409: {"description": "code taken"}},
)
async def create_tenant(
    body: TenantIn, request: Request, response: Response, registry: RegistryDep, _admin: Admin
) -> TenantOut:
    """Register a tenant (a municipality) with its IPv6 prefixes."""
    tenant = await registry_call(registry.add_tenant, body.tenant())
    response.headers["Location"] = public(request, request.url_for("get_tenant", code=tenant.code))
    return TenantOut.of(tenant)


@router.get("/{code}", response_model=TenantOut, responses={404: {"description": "no such tenant"}})
async def get_tenant(code: TenantCodePath, registry: RegistryDep, principal: Reader) -> TenantOut:
    """One tenant."""
    if not principal.sees(code):
        raise NotFound("tenant", code)
    return TenantOut.of(await registry_call(registry.tenant, code))
