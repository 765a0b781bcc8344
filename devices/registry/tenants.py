"""Tenants of the registry: adding and reading them."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from devices.errors import Conflict, NotFound
from devices.ipv6 import parse_prefix
from devices.model import Tenant
from devices.registry.rows import TenantRow, tenant_of
from devices.registry.rules import validate_tenant
from devices.registry.store import Store


class Tenants(Store):
    """The tenants part of the registry."""

    def add_tenant(self, tenant: Tenant) -> Tenant:
        """Store a new tenant; Conflict when its code is taken."""
        validate_tenant(tenant)
        prefixes = tuple(str(parse_prefix(p)) for p in tenant.ipv6_prefixes)
        tenant = replace(tenant, ipv6_prefixes=prefixes)
        try:
            with self._session() as session:
                self._bump(session)
                if session.get(TenantRow, tenant.code) is not None:
                    raise Conflict("tenant", tenant.code)
                session.add(
                    TenantRow(
                        code=tenant.code, name=tenant.name, ipv6_prefixes=json.dumps(list(prefixes))
                    )
                )
        except IntegrityError:
            raise Conflict("tenant", tenant.code) from None
        return tenant

    def tenant(self, code: str) -> Tenant:
        """The tenant with CBS code `code`."""
        with self._session() as session:
            row = session.get(TenantRow, code)
            if row is None:
                raise NotFound("tenant", code)
            return tenant_of(row)

    def tenants(
        self,
        *,
        after: str | None = None,
        limit: int | None = None,
        codes: Collection[str] | None = None,
    ) -> list[Tenant]:
        """Tenants by code, starting after code `after`; only `codes` when given."""
        query = select(TenantRow).order_by(TenantRow.code)
        if codes is not None:
            query = query.where(TenantRow.code.in_(sorted(codes)))
        if after is not None:
            query = query.where(TenantRow.code > after)
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [tenant_of(r) for r in session.scalars(query)]
