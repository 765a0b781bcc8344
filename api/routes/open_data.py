"""Open data: a tenant's publication (`/v1/tenants/{code}/open-data`), the catalogue a data
portal harvests (`/v1/catalog`, DCAT-AP-NL as JSON-LD) and bulk downloads of a day of a kind
(`/v1/open-data/{tenant}/{kind}/{day}.csv`).

Who may read what is decided in api/open_access.py; here only the publication is managed (by the
tenant's operators and admins) and the public is told what there is and under which terms.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import Field

from api.auth import Operator
from api.deps import FleetDep, InfluxDep, RegistryDep
from api.open_access import licence_links, open_data_of, public_view
from api.problems import ApiProblem, BadRequest
from api.registry_schemas import In
from api.routes.devices import registry_call
from api.schemas import Out
from api.timefmt import format_ns
from api.urls import public
from devices import DEVICE_KINDS, Device, NotFound
from devices.opendata import MAX_ATTRIBUTION, Licence, Publication
from devices.topics import TENANT_PATTERN
from timeseries import InfluxClient
from timeseries.queries import raw_readings
from timeseries.schema import raw_measurement

router = APIRouter(tags=["open data"])

JSON_LD: Final = "application/ld+json"
CSV_PAGE: Final = 10_000  # readings per query while streaming a download
RECENT_DAYS: Final = 7  # days offered as downloads per dataset in the catalogue
_NS: Final = 1_000_000_000

TenantCodePath = Annotated[
    str, Path(pattern=f"^{TENANT_PATTERN}$", description="The tenant's CBS code, e.g. GM0363")
]

# DCAT-AP-NL's themes are the government's own taxonomy (TOOI/OWMS); each kind maps to one.
_THEMES: Final = {
    "air_quality": "Natuur_en_milieu",
    "noise": "Natuur_en_milieu",
    "weather": "Natuur_en_milieu",
    "water_level": "Natuur_en_milieu",
    "lamppost": "Ruimte_en_infrastructuur",
    "parking": "Verkeer",
    "traffic_counter": "Verkeer",
    "waste_bin": "Ruimte_en_infrastructuur",
}
_OWMS: Final = "http://standaarden.overheid.nl/owms/terms/"
_PUBLIC_ACCESS: Final = "http://publications.europa.eu/resource/authority/access-right/PUBLIC"
_CSV_TYPE: Final = "http://www.iana.org/assignments/media-types/text/csv"
_CONTEXT: Final = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "locn": "http://www.w3.org/ns/locn#",
}


class PublicationIn(In):
    """What a tenant publishes as open data: whole kinds and single devices, under one licence."""

    licence: Literal["CC0-1.0", "CC-BY-4.0"] = Field(description="SPDX identifier")
    attribution: str = Field(
        min_length=1,
        max_length=MAX_ATTRIBUTION,
        description="how users name the source, e.g. 'Gemeente Amsterdam'",
        examples=["Gemeente Amsterdam"],
    )
    kinds: list[Annotated[str, Field(max_length=32)]] = Field([], max_length=64)
    devices: list[Annotated[str, Field(max_length=63)]] = Field([], max_length=10_000)


class PublicationOut(Out):
    """A tenant's open data and its terms."""

    tenant: str
    licence: str
    licence_url: str
    attribution: str
    kinds: list[str]
    devices: list[str]
    updated_at: datetime | None

    @classmethod
    def of(cls, publication: Publication) -> PublicationOut:
        """The API view of a publication."""
        return cls(
            tenant=publication.tenant,
            licence=publication.licence.value,
            licence_url=publication.licence.url,
            attribution=publication.attribution,
            kinds=list(publication.kinds),
            devices=list(publication.devices),
            updated_at=publication.updated_at,
        )


def _own_tenant(principal: Operator, code: str) -> None:
    principal.allowed_tenants(code)  # 403 for another tenant's publication


@router.get(
    "/v1/tenants/{code}/open-data",
    response_model=PublicationOut,
    responses={404: {"description": "the tenant publishes nothing"}},
)
async def get_publication(
    code: TenantCodePath, registry: RegistryDep, principal: Operator
) -> PublicationOut:
    """What the tenant publishes as open data (for its operators and admins)."""
    _own_tenant(principal, code)
    found = await registry_call(registry.publication, code)
    if found is None:
        raise NotFound("open-data publication of tenant", code)
    return PublicationOut.of(found)


@router.put(
    "/v1/tenants/{code}/open-data",
    response_model=PublicationOut,
    responses={
        400: {"description": "unknown or personal kinds or devices, no attribution"},
        404: {"description": "no such tenant"},
    },
)
async def put_publication(
    code: TenantCodePath, body: PublicationIn, registry: RegistryDep, principal: Operator
) -> PublicationOut:
    """Publish kinds and devices of the tenant as open data (replaces what was published).

    Anyone may then read them without an API key. Kinds and devices that record personal data
    are refused (400): personal data is never open.
    """
    _own_tenant(principal, code)
    publication = Publication(
        tenant=code,
        licence=Licence(body.licence),
        attribution=body.attribution,
        kinds=tuple(body.kinds),
        devices=tuple(body.devices),
    )
    return PublicationOut.of(await registry_call(registry.publish, publication))


@router.delete(
    "/v1/tenants/{code}/open-data",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "the tenant publishes nothing"}},
)
async def delete_publication(
    code: TenantCodePath, registry: RegistryDep, principal: Operator
) -> Response:
    """Stop publishing the tenant's data: from now on it needs an API key again."""
    _own_tenant(principal, code)
    if not await registry_call(registry.withdraw, code):
        raise NotFound("open-data publication of tenant", code)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _of_kind(devices: list[Device], kind: str) -> list[Device]:
    return [d for d in devices if kind in (d.kind, *d.extra_kinds)]


def _dataset(
    request: Request, publication: Publication, kind: str, devices: list[Device], today: date
) -> dict[str, Any]:
    """One dataset of the catalogue: a kind's open devices of one tenant."""
    spec = DEVICE_KINDS[kind]
    base = f"/v1/open-data/{publication.tenant}/{kind}"
    licence = {"@id": publication.licence.url}
    distributions: list[dict[str, Any]] = [
        {
            "@id": public(request, f"{base}/{day.isoformat()}.csv"),
            "@type": "dcat:Distribution",
            "dct:title": f"{spec.label}, {day.isoformat()} (UTC), CSV",
            "dcat:accessURL": {"@id": public(request, f"{base}/{day.isoformat()}.csv")},
            "dcat:downloadURL": {"@id": public(request, f"{base}/{day.isoformat()}.csv")},
            "dcat:mediaType": {"@id": _CSV_TYPE},
            "dct:format": "CSV",
            "dct:license": licence,
            "dct:temporal": {
                "@type": "dct:PeriodOfTime",
                "dcat:startDate": {"@value": day.isoformat(), "@type": "xsd:date"},
                "dcat:endDate": {"@value": day.isoformat(), "@type": "xsd:date"},
            },
        }
        for day in (today - timedelta(days=n) for n in range(1, RECENT_DAYS + 1))
    ]
    distributions.append(
        {
            "@id": public(request, f"/v1/latest?tenant={publication.tenant}&kind={kind}"),
            "@type": "dcat:Distribution",
            "dct:title": f"{spec.label}: newest reading of each device (JSON, GeoJSON)",
            "dcat:accessURL": {
                "@id": public(request, f"/v1/latest?tenant={publication.tenant}&kind={kind}")
            },
            "dcat:mediaType": {
                "@id": "http://www.iana.org/assignments/media-types/application/json"
            },
            "dct:conformsTo": {"@id": public(request, "/v1/openapi.json")},
            "dct:license": licence,
        }
    )
    dataset: dict[str, Any] = {
        "@id": public(request, base),
        "@type": "dcat:Dataset",
        "dct:identifier": f"lantaarn:{publication.tenant}:{kind}",
        "dct:title": f"{spec.label} ({publication.attribution})",
        "dct:description": f"{spec.description}. Measured every {spec.interval_s:g} s by "
        f"{len(devices)} device(s); metrics: "
        + ", ".join(f"{m.name} [{m.unit}]" for m in spec.metrics),
        "dcat:keyword": [spec.label, *(m.label for m in spec.metrics)],
        "dcat:theme": {"@id": _OWMS + _THEMES.get(kind, "Natuur_en_milieu")},
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": publication.attribution},
        "dct:license": licence,
        "dct:accessRights": {"@id": _PUBLIC_ACCESS},
        "dct:accrualPeriodicity": {
            "@id": "http://publications.europa.eu/resource/authority/frequency/CONT"
        },
        "dct:language": {"@id": "http://publications.europa.eu/resource/authority/language/NLD"},
        "dcat:contactPoint": {"@type": "vcard:Organization", "vcard:fn": publication.attribution},
        "dcat:distribution": distributions,
    }
    if publication.updated_at is not None:
        dataset["dct:modified"] = {
            "@value": publication.updated_at.isoformat().replace("+00:00", "Z"),
            "@type": "xsd:dateTime",
        }
    if devices:
        lons = [d.longitude for d in devices]
        lats = [d.latitude for d in devices]
        dataset["dct:spatial"] = {
            "@type": "dct:Location",
            "dcat:bbox": {
                "@value": f"POLYGON(({min(lons)} {min(lats)}, {max(lons)} {min(lats)}, "
                f"{max(lons)} {max(lats)}, {min(lons)} {max(lats)}, {min(lons)} {min(lats)}))",
                "@type": "http://www.opengis.net/ont/geosparql#wktLiteral",
            },
        }
    return dataset


@router.get(
    "/v1/catalog",
    responses={200: {"content": {JSON_LD: {"schema": {"type": "object"}}}}},
    response_class=Response,
)
async def catalog(request: Request, fleet: FleetDep) -> Response:
    """The open datasets (a kind's open devices of one tenant each) as a DCAT-AP-NL catalogue
    in JSON-LD, for data portals to harvest. Needs no API key."""
    open_data = await open_data_of(request)
    everything = await fleet.devices(tenants=open_data.tenants())
    opened = [d for d in everything if open_data.admits(d)]
    today = datetime.now(UTC).date()
    datasets = []
    for tenant in open_data.tenants():
        publication = open_data.publications[tenant]
        of_tenant = [d for d in opened if d.tenant == tenant]
        kinds = set(publication.kinds) | {d.kind for d in of_tenant}
        for kind in sorted(k for k in kinds if k in DEVICE_KINDS):
            if DEVICE_KINDS[kind].personal_data:
                continue
            datasets.append(_dataset(request, publication, kind, _of_kind(of_tenant, kind), today))
    document = {
        "@context": _CONTEXT,
        "@id": public(request, "/v1/catalog"),
        "@type": "dcat:Catalog",
        "dct:title": "lantaarn: open sensor data",
        "dct:description": "Readings of sensors and smart lampposts in public space that their "
        "municipalities publish as open data.",
        "dct:language": {"@id": "http://publications.europa.eu/resource/authority/language/NLD"},
        "foaf:homepage": {"@id": public(request, "/v1/docs")},
        "dcat:dataset": datasets,
    }
    return Response(orjson.dumps(document), media_type=JSON_LD)


def _day(text: str) -> tuple[int, int]:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            [{"name": "day", "in": "path", "reason": f"{text!r} is not a date: YYYY-MM-DD"}]
        ) from None
    if len(text) != 10:
        raise BadRequest([{"name": "day", "in": "path", "reason": "write the day as YYYY-MM-DD"}])
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    start_ns = int(start.timestamp()) * _NS
    return start_ns, start_ns + 86400 * _NS


async def _day_rows(
    influx: InfluxClient, kind: str, devices: list[Device], start_ns: int, end_ns: int
) -> AsyncIterator[str]:
    """The CSV of one day: a header, then each device's readings in time order, fetched and
    sent `CSV_PAGE` at a time so a day of a large fleet never sits in memory."""
    metrics = [m.name for m in DEVICE_KINDS[kind].metrics]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ts", "device_id", "latitude", "longitude", *metrics])
    yield buffer.getvalue()
    measurement = [raw_measurement(kind)]
    for device in devices:
        after = start_ns
        while after < end_ns:
            page = await raw_readings(
                influx, measurement, device.device_id, after, end_ns, limit=CSV_PAGE
            )
            buffer.seek(0)
            buffer.truncate()
            for reading in page:
                writer.writerow(
                    [
                        format_ns(reading.ts_ns),
                        device.device_id,
                        device.latitude,
                        device.longitude,
                        *(
                            repr(reading.metrics[m]) if m in reading.metrics else ""
                            for m in metrics
                        ),
                    ]
                )
            if page:
                yield buffer.getvalue()
            if len(page) < CSV_PAGE:
                break
            after = page[-1].ts_ns + 1


@router.get(
    "/v1/open-data/{tenant}/{kind}/{day}.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        400: {"description": "not a day"},
        404: {"description": "the tenant publishes no such data"},
    },
)
async def day_download(
    request: Request,
    fleet: FleetDep,
    influx: InfluxDep,
    tenant: TenantCodePath,
    kind: Annotated[str, Path(max_length=32, pattern="^[a-z_]+$")],
    day: Annotated[str, Path(max_length=10, description="the UTC day, YYYY-MM-DD")],
) -> StreamingResponse:
    """One UTC day of readings of a tenant's open devices of one kind, as CSV (streamed).

    Needs no API key; the licence and attribution are in the `Link` header (rel="license").
    """
    start_ns, end_ns = _day(day)
    open_data = await open_data_of(request)
    publication = open_data.publications.get(tenant)
    devices = []
    if publication is not None and kind in DEVICE_KINDS:
        found = await fleet.devices(tenants=[tenant])
        devices = [public_view(d) for d in _of_kind(found, kind) if open_data.admits(d)]
    if publication is None or not devices:
        raise ApiProblem(
            404, "Not found", f"tenant {tenant!r} publishes no open data of kind {kind!r}"
        )
    filename = f"lantaarn-{tenant}-{kind}-{day}.csv"
    return StreamingResponse(
        _day_rows(influx, kind, devices, start_ns, end_ns),
        media_type="text/csv; charset=utf-8",
        headers={
            "Link": ", ".join(licence_links([publication])),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
