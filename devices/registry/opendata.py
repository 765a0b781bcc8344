"""Open-data publications of the registry: per tenant, the kinds and devices anyone may read.

Publishing checks what it publishes against the registry in the same transaction: every kind
known and not personal, every device the tenant's own and not personal. Readers still check each
device at read time (devices.opendata.is_open), since a device may be flagged personal later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from devices.catalogue import DEVICE_KINDS
from devices.errors import InvalidDevice, NotFound, Problem
from devices.opendata import MAX_ATTRIBUTION, Licence, Publication, personal
from devices.registry.rows import Base, DeviceRow, TenantRow, device_of, stored_utc
from devices.registry.store import Store


class PublicationRow(Base):
    """A tenant's open-data publication; its kinds and devices as JSON lists."""

    __tablename__ = "open_data"

    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.code"), primary_key=True)
    licence: Mapped[str] = mapped_column(String(16))
    attribution: Mapped[str] = mapped_column(String(MAX_ATTRIBUTION))
    kinds: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    devices: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _publication_of(row: PublicationRow) -> Publication:
    updated = row.updated_at
    if updated.tzinfo is None:  # SQLite hands back naive datetimes; we store UTC
        updated = updated.replace(tzinfo=UTC)
    return Publication(
        tenant=row.tenant,
        licence=Licence(row.licence),
        attribution=row.attribution,
        kinds=tuple(json.loads(row.kinds)),
        devices=tuple(json.loads(row.devices)),
        updated_at=updated,
    )


def _problems(session: Session, publication: Publication) -> list[Problem]:
    """Every reason the publication cannot be stored (empty when it can)."""
    found = []
    attribution = publication.attribution.strip()
    if not attribution:
        found.append(Problem("attribution", "give an attribution: who publishes the data"))
    elif len(attribution) > MAX_ATTRIBUTION:
        found.append(Problem("attribution", f"at most {MAX_ATTRIBUTION} characters"))
    elif not attribution.isprintable():
        found.append(Problem("attribution", "the attribution holds control characters"))
    for kind in publication.kinds:
        if kind not in DEVICE_KINDS:
            found.append(Problem("kinds", f"unknown device kind {kind!r}"))
        elif DEVICE_KINDS[kind].personal_data:
            found.append(
                Problem("kinds", f"{kind} devices record personal data and can never be open")
            )
    wanted = sorted(set(publication.devices))
    rows = {
        r.device_id: r
        for r in session.scalars(select(DeviceRow).where(DeviceRow.device_id.in_(wanted)))
    }
    for device_id in wanted:
        row = rows.get(device_id)
        if row is None or row.tenant != publication.tenant:
            # Another tenant's device is answered as a missing one: nothing leaks.
            reason = f"tenant {publication.tenant} has no device {device_id!r}"
            found.append(Problem("devices", reason))
        elif personal(device_of(row)):
            reason = f"device {device_id!r} records personal data and can never be open"
            found.append(Problem("devices", reason))
    return found


class OpenDataPublications(Store):
    """The open-data part of the registry."""

    def publish(self, publication: Publication) -> Publication:
        """Store (or replace) a tenant's publication; InvalidDevice lists every problem."""
        publication = Publication(
            tenant=publication.tenant,
            licence=Licence(publication.licence),
            attribution=publication.attribution.strip(),
            kinds=tuple(sorted(set(publication.kinds))),
            devices=tuple(sorted(set(publication.devices))),
            updated_at=datetime.now(UTC),
        )
        with self._session() as session:
            self._bump(session)  # readers cache by revision: a publication moves it too
            if session.get(TenantRow, publication.tenant) is None:
                raise NotFound("tenant", publication.tenant)
            if found := _problems(session, publication):
                raise InvalidDevice.of(found)
            row = session.get(PublicationRow, publication.tenant)
            if row is None:
                row = PublicationRow(tenant=publication.tenant)
                session.add(row)
            row.licence = publication.licence.value
            row.attribution = publication.attribution
            row.kinds = json.dumps(list(publication.kinds))
            row.devices = json.dumps(list(publication.devices))
            row.updated_at = publication.updated_at  # type: ignore[assignment]
        return publication

    def publication(self, tenant: str) -> Publication | None:
        """The tenant's publication, None when it publishes nothing."""
        with self._session() as session:
            row = session.get(PublicationRow, tenant)
            return None if row is None else _publication_of(row)

    def publications(self, tenants: Sequence[str] | None = None) -> list[Publication]:
        """Every publication (of `tenants` when given), by tenant code."""
        query = select(PublicationRow).order_by(PublicationRow.tenant)
        if tenants is not None:
            query = query.where(PublicationRow.tenant.in_(list(tenants)))
        with self._session() as session:
            return [_publication_of(r) for r in session.scalars(query)]

    def publication_stamps(self) -> dict[str, datetime]:
        """When each publication was last stored, by tenant: a reader holding them all
        re-reads only the publications whose time moved (see api.open_access)."""
        query = select(PublicationRow.tenant, PublicationRow.updated_at)
        with self._session() as session:
            return {tenant: stored_utc(updated) for tenant, updated in session.execute(query)}

    def withdraw(self, tenant: str) -> bool:
        """Stop publishing the tenant's data; whether it published any."""
        with self._session() as session:
            self._bump(session)
            row = session.get(PublicationRow, tenant)
            if row is None:
                return False
            session.delete(row)
            return True
