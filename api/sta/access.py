"""Which devices a SensorThings caller may see: the same keys and tenancy as `/v1`.

One predicate per request, from the `/v1` auth dependency (`api.auth.require_read`): a key sees
its tenants' devices, an admin key every device, an anonymous caller what anonymous `/v1`
reading allows. Open data (a tenant publishing kinds or devices) will widen the anonymous case
here, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from api.auth import Reader
from devices import Device


@dataclass(frozen=True, slots=True)
class Access:
    """What one caller may read."""

    tenants: frozenset[str] | None  # None: every tenant
    visible: Callable[[Device], bool]


async def sta_access(principal: Reader) -> Access:
    """The caller's access, from its API key (or anonymous reading where that is on)."""
    return Access(principal.tenants, lambda device: principal.sees(device.tenant))


StaAccess = Annotated[Access, Depends(sta_access)]
