"""Who may read which device: key holders by their tenants, callers without a key open data only.

The rule is one predicate and one selection over it, which every read route of /v1 (devices,
readings, aggregates, latest) and of /sta uses:

- `may_read(principal, device, open_data) -> bool`
- `readable(principal, devices, open_data) -> list[Device]`

with `open_data = await open_data_of(request)` (the tenants' publications, cached by registry
revision) and the principal of the `OpenReader` dependency. Where anonymous reading is on (the
demo) the anonymous caller sees every tenant as before; where it is off, a caller without a key
gets `OPEN_DATA_READER`, which sees no tenant and only the devices `devices.opendata.is_open`
admits. A key holder reads its own tenants (open data of other tenants stays the anonymous view).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Depends, Request

from api.auth import ANONYMOUS_READER, OPEN_DATA_READER, Authenticated, Principal
from api.config import ApiConfig
from api.fleet import FleetCache
from api.problems import Unauthorized
from api.schemas import OpenDataOut
from devices import BoundingBox, Device, NotFound, Registry
from devices.opendata import Publication, is_open
from timeseries.selection import Selection

__all__ = [
    "OPEN_DATA_OPERATION",
    "OpenData",
    "OpenDataCache",
    "OpenReader",
    "fleet_selection",
    "licence_links",
    "may_read",
    "open_data_of",
    "public_view",
    "readable",
    "readable_device",
    "require_open_read",
    "terms_out",
]


@dataclass(frozen=True, slots=True)
class OpenData:
    """The tenants' open-data publications as one request sees them."""

    publications: Mapping[str, Publication] = field(default_factory=dict)

    def admits(self, device: Device) -> bool:
        """Whether anyone may read the device (devices.opendata.is_open)."""
        return is_open(device, self.publications)

    def terms(self, device: Device) -> Publication | None:
        """The publication that opens the device, None when it is not open."""
        return self.publications[device.tenant] if self.admits(device) else None

    def tenants(self, requested: str | None = None) -> list[str]:
        """The publishing tenants (only `requested`, if it publishes, when one is named)."""
        if requested is not None:
            return [requested] if requested in self.publications else []
        return sorted(self.publications)


class OpenDataCache:
    """The registry's publications, following the registry's revision.

    When the revision moved, only the publications stored since (their times moved) are read
    again, and withdrawn ones dropped: a device change reads none, and a publication may list
    many devices.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._revision: tuple[int, int] | None = None
        self._stamps: dict[str, datetime] = {}
        self._current = OpenData()
        self._lock = asyncio.Lock()
        self.publications_fetched = 0  # publications read so far

    async def get(self) -> OpenData:
        """The publications as of the registry's latest revision."""
        async with self._lock:
            revision = await asyncio.to_thread(self._registry.revision)
            if revision != self._revision:
                stamps = await asyncio.to_thread(self._registry.publication_stamps)
                moved = [t for t, at in stamps.items() if self._stamps.get(t) != at]
                found = await asyncio.to_thread(self._registry.publications, moved) if moved else []
                self.publications_fetched += len(found)
                publications = {
                    t: p
                    for t, p in self._current.publications.items()
                    if t in stamps and t not in moved
                }
                publications.update((p.tenant, p) for p in found)
                # A new OpenData: a request holding the old one keeps a consistent view.
                self._current = OpenData(publications)
                self._stamps = {p.tenant: stamps[p.tenant] for p in publications.values()}
                self._revision = revision
            return self._current


async def open_data_of(request: Request) -> OpenData:
    """The publications in force for this request."""
    cache: OpenDataCache = request.app.state.open_data
    return await cache.get()


async def require_open_read(request: Request, principal: Authenticated) -> Principal:
    """A caller of a route that serves open data: a key holder, or anyone (open data only)."""
    if principal is not None:
        return principal
    config: ApiConfig = request.app.state.config
    return ANONYMOUS_READER if config.anonymous_read else OPEN_DATA_READER


OpenReader = Annotated[Principal, Depends(require_open_read)]
# `openapi_extra` of a route that takes an OpenReader: an empty security requirement beside the
# keys is how OpenAPI says the key is optional (FastAPI appends it to the operation's list).
OPEN_DATA_OPERATION: Final[dict[str, Any]] = {"security": [{}]}


def may_read(principal: Principal, device: Device, open_data: OpenData) -> bool:
    """THE access rule: a key holder reads its tenants' devices, a caller without a key (where
    anonymous reading is off) only devices published as open data and free of personal data."""
    if principal.open_data_only:
        return open_data.admits(device)
    return principal.sees(device.tenant)


def readable(principal: Principal, devices: Iterable[Device], open_data: OpenData) -> list[Device]:
    """The devices of `devices` the principal may read, in their order (public views for a
    caller without a key)."""
    out = [d for d in devices if may_read(principal, d, open_data)]
    return [public_view(d) for d in out] if principal.open_data_only else out


def public_view(device: Device) -> Device:
    """The device as the public sees it: without its network address and firmware, which only
    help an attacker."""
    return replace(device, ipv6_address=None, firmware=None)


def _not_open(device_id: str) -> Unauthorized:
    # The same answer whether the device is missing or closed: nothing leaks to the public.
    return Unauthorized(
        f"device {device_id!r} is not open data: reading it needs an API key", invalid_key=False
    )


async def readable_device(
    request: Request, registry: Registry, principal: Principal, device_id: str
) -> Device:
    """The device, if the caller may read it: 404 for a key holder outside its tenants (as if
    missing), 401 for a caller without a key when the device is missing or not open."""
    try:
        device = await asyncio.to_thread(registry.device, device_id)
    except NotFound:
        if principal.open_data_only:
            raise _not_open(device_id) from None
        raise
    if principal.open_data_only:
        if not (await open_data_of(request)).admits(device):
            raise _not_open(device_id)
        return public_view(device)
    if not principal.sees(device.tenant):
        raise NotFound("device", device_id)
    return device


def _inside(box: BoundingBox, device: Device) -> bool:
    if not box.min_lat <= device.latitude <= box.max_lat:
        return False
    if box.min_lon <= box.max_lon:
        return box.min_lon <= device.longitude <= box.max_lon
    return device.longitude >= box.min_lon or device.longitude <= box.max_lon  # antimeridian


async def open_devices(
    request: Request,
    fleet: FleetCache,
    *,
    tenant: str | None = None,
    kind: str | None = None,
    include_retired: bool = True,
    bbox: BoundingBox | None = None,
) -> list[Device]:
    """The open devices (public views) of the publishing tenants, filtered like the fleet."""
    open_data = await open_data_of(request)
    tenants = open_data.tenants(tenant)
    if not tenants:
        return []
    found = await fleet.devices(tenants=tenants, kind=kind, include_retired=include_retired)
    found = [d for d in found if open_data.admits(d) and (bbox is None or _inside(bbox, d))]
    return [public_view(d) for d in found]


async def fleet_selection(
    request: Request,
    fleet: FleetCache,
    principal: Principal,
    *,
    tenant: str | None,
    kind: str | None,
    include_retired: bool = True,
) -> tuple[list[Device], Selection]:
    """The devices a fleet-wide answer covers and how InfluxDB is asked about them: whole
    tenants for a key holder (a short query), the open devices by id for the public."""
    if principal.open_data_only:
        devices = await open_devices(
            request, fleet, tenant=tenant, kind=kind, include_retired=include_retired
        )
        return devices, Selection.of_devices(d.device_id for d in devices)
    tenants = principal.allowed_tenants(tenant)
    devices = await fleet.devices(tenants=tenants, kind=kind, include_retired=include_retired)
    return devices, Selection.of_tenants(tenants)


def terms_out(publication: Publication | None) -> OpenDataOut | None:
    """The licence and attribution of a publication for an answer."""
    if publication is None:
        return None
    return OpenDataOut(
        licence=publication.licence.value,
        licence_url=publication.licence.url,
        attribution=publication.attribution,
    )


def licence_links(publications: Iterable[Publication]) -> list[str]:
    """`Link` header values (RFC 8288, rel="license" of RFC 4946) naming each licence, with the
    attribution as its title (RFC 8187 encoded, so any name fits a header)."""
    seen: dict[tuple[str, str], None] = {}
    for p in publications:
        seen[(p.licence.url, p.attribution)] = None
    return [
        f"<{url}>; rel=\"license\"; title*=UTF-8''{quote(attribution, safe='')}"
        for url, attribution in seen
    ]


def terms_of(devices: Sequence[Device], open_data: OpenData) -> list[Publication]:
    """The publications that open these devices, one per tenant."""
    out: dict[str, Publication] = {}
    for device in devices:
        publication = open_data.terms(device)
        if publication is not None:
            out[publication.tenant] = publication
    return [out[t] for t in sorted(out)]
