"""Which devices a SensorThings caller may see: the same rule as `/v1` (api.open_access).

A key holder sees its tenants' devices (an admin key every device); a caller without a key sees
what anonymous `/v1` reading allows: every device where anonymous reading is on (the demo), else
only the devices the tenants publish as open data, as the public sees them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.auth import Principal
from api.open_access import OpenData, OpenReader, licence_links, open_data_of, readable, terms_of
from devices import Device


@dataclass(frozen=True, slots=True)
class Access:
    """What one caller may read."""

    principal: Principal
    open_data: OpenData

    @property
    def tenants(self) -> list[str] | None:
        """The tenants whose devices to look through (None: every tenant)."""
        if self.principal.open_data_only:
            return self.open_data.tenants()
        return None if self.principal.tenants is None else sorted(self.principal.tenants)

    def readable(self, devices: Iterable[Device]) -> list[Device]:
        """The devices the caller may read (public views for a caller without a key)."""
        return readable(self.principal, devices, self.open_data)

    def licence_links(self, devices: Iterable[Device]) -> list[str]:
        """`Link` header values naming the licences of open data answered to the public."""
        if not self.principal.open_data_only:
            return []
        return licence_links(terms_of(list(devices), self.open_data))


async def sta_access(request: Request, principal: OpenReader) -> Access:
    """The caller's access: its API key, or open data only where anonymous reading is off."""
    return Access(principal, await open_data_of(request))


StaAccess = Annotated[Access, Depends(sta_access)]
