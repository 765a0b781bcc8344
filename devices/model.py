"""Tenants and devices as the rest of the platform sees them (frozen, no database attached)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class Tenant:
    """A municipality (or other operator) with its CBS code and IPv6 prefixes."""

    code: str
    name: str
    ipv6_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    """One device of the registry."""

    device_id: str
    tenant: str
    kind: str
    name: str
    latitude: float
    longitude: float
    ipv6_address: str | None = None
    interval_s: float | None = None
    extra_kinds: tuple[str, ...] = ()
    firmware: str | None = None
    installed_on: date | None = None
    retired_at: datetime | None = None
    owner: str | None = None
    observation_goal: str | None = None
    legal_ground: str | None = None
    personal_data: bool = False
    active_until: date | None = None
    created_at: datetime | None = field(default=None, compare=False)

    @property
    def retired(self) -> bool:
        """Whether the device has been retired."""
        return self.retired_at is not None
