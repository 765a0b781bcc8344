"""The registry's tables as SQLAlchemy rows, and their translation to and from the domain.

The schema itself is Alembic's (devices/migrations): a column added here needs a migration
there. A new part of the registry (schedules, command history, alert rules) declares its rows in
its own module on the same `Base`.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import fields
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from devices.model import Device, Tenant


class Base(DeclarativeBase):
    """The declarative base of every registry table."""


class TenantRow(Base):
    """A tenant; its IPv6 prefixes as a JSON list."""

    __tablename__ = "tenants"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    ipv6_prefixes: Mapped[str] = mapped_column(Text, default="[]")  # JSON list


class DeviceRow(Base):
    """A device, with the registry revision of its last change and its broker password hash."""

    __tablename__ = "devices"
    __table_args__ = (
        Index("ix_devices_location", "longitude", "latitude"),
        # one tenant's devices in id order: a page of /v1/latest is one range of it
        Index("ix_devices_tenant_id", "tenant", "device_id"),
    )

    device_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.code"), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    ipv6_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    interval_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra_kinds: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    firmware: Mapped[str | None] = mapped_column(String(100), nullable=True)
    installed_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    observation_goal: Mapped[str | None] = mapped_column(Text, nullable=True)
    legal_ground: Mapped[str | None] = mapped_column(Text, nullable=True)
    personal_data: Mapped[bool] = mapped_column(Boolean, default=False)
    active_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The registry revision of the device's last change (for incremental readers).
    revision: Mapped[int] = mapped_column(Integer, index=True, default=0)
    broker_password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)


class StateRow(Base):
    """The one row (id 1) every writing transaction updates: revision and device count."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    device_count: Mapped[int] = mapped_column(BigInteger)


def canonical_address(address: str | None) -> str | None:
    """The compressed form of an IP address, or the text as given when it is not one."""
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def aware(value: datetime | None) -> datetime | None:
    """A stored time as UTC: SQLite hands back naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def stored_utc(value: datetime | None) -> datetime:
    """A stored time that must be there, as UTC."""
    moment = aware(value)
    if moment is None:
        raise ValueError("a stored time is missing")
    return moment


def _shared(text: str | None) -> str | None:
    """One string object for text many devices repeat (tenant, kind, owner, firmware, ...):
    the API and every worker hold the whole fleet."""
    return None if text is None else sys.intern(text)


@lru_cache(maxsize=1024)
def _kinds(text: str) -> tuple[str, ...]:
    """A device's extra kinds from their JSON list; one tuple per distinct list."""
    return tuple(sys.intern(kind) for kind in json.loads(text))


@lru_cache(maxsize=1024)
def _interval(seconds: float | None) -> float | None:
    """One float object per reporting interval (a few values shared by the whole fleet)."""
    return seconds


def device_of(row: DeviceRow) -> Device:
    """The domain device of a row."""
    return Device(
        device_id=row.device_id,
        tenant=sys.intern(row.tenant),
        kind=sys.intern(row.kind),
        name=row.name,
        latitude=row.latitude,
        longitude=row.longitude,
        ipv6_address=row.ipv6_address,
        interval_s=_interval(row.interval_s),
        extra_kinds=_kinds(row.extra_kinds),
        firmware=_shared(row.firmware),
        installed_on=row.installed_on,
        retired_at=aware(row.retired_at),
        owner=_shared(row.owner),
        observation_goal=_shared(row.observation_goal),
        legal_ground=_shared(row.legal_ground),
        personal_data=row.personal_data,
        active_until=row.active_until,
        created_at=aware(row.created_at),
    )


def device_values(device: Device) -> dict[str, Any]:
    """The columns of a device, with its IPv6 address in canonical (compressed) form."""
    values = {f.name: getattr(device, f.name) for f in fields(Device)}
    values["extra_kinds"] = json.dumps(list(device.extra_kinds))
    values["ipv6_address"] = canonical_address(device.ipv6_address)
    return values


def tenant_of(row: TenantRow) -> Tenant:
    """The domain tenant of a row."""
    return Tenant(row.code, row.name, tuple(json.loads(row.ipv6_prefixes)))
