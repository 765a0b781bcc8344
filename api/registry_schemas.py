"""What the registry routes accept and return: tenants, new and changed devices, broker logins.

Input models refuse unknown properties, so a misspelt property is an error rather than a silent
no-op. Outputs reuse `api.schemas` where a shape already exists (DeviceOut, DevicePage).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.schemas import DeviceOut, Out
from devices import Device, Tenant
from devices.provisioning import Credentials


class In(BaseModel):
    """Base of the registry's inputs: camelCase properties, nothing unknown."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", populate_by_name=True)


class PointIn(In):
    """A GeoJSON point in CRS84: [longitude, latitude] in degrees."""

    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float] = Field(description="[longitude, latitude], WGS84 degrees")


class TenantIn(In):
    """A new tenant: a municipality with its CBS code and IPv6 prefixes."""

    code: str = Field(description="CBS code, e.g. GM0363", examples=["GM0363"])
    name: str = Field(examples=["Amsterdam"])
    ipv6_prefixes: list[str] = Field([], examples=[["2001:db8:363::/48"]])

    def tenant(self) -> Tenant:
        """The domain tenant."""
        return Tenant(self.code, self.name, tuple(self.ipv6_prefixes))


class TenantOut(Out):
    """A tenant of the registry."""

    code: str
    name: str
    ipv6_prefixes: list[str]

    @classmethod
    def of(cls, tenant: Tenant) -> TenantOut:
        """The API view of a tenant."""
        return cls(code=tenant.code, name=tenant.name, ipv6_prefixes=list(tenant.ipv6_prefixes))


class TenantPage(Out):
    """A page of tenants; `next` is the cursor of the following page."""

    items: list[TenantOut]
    next: str | None = None


class DeviceIn(In):
    """A new device with the fields a Dutch sensor register asks for."""

    device_id: str = Field(description="[a-z0-9][a-z0-9-]{0,62}, unique on the platform")
    tenant: str
    kind: str = Field(description="a device kind of /v1/device-kinds")
    extra_kinds: list[str] = Field([], description="kinds of further sensors it carries")
    name: str
    location: PointIn
    ipv6_address: str | None = Field(None, description="inside one of the tenant's prefixes")
    interval_seconds: float | None = Field(None, description="expected reporting interval, s")
    firmware: str | None = None
    installed_on: date | None = None
    owner: str | None = None
    observation_goal: str | None = None
    legal_ground: str | None = None
    personal_data: bool = False
    active_until: date | None = None

    def device(self) -> Device:
        """The domain device."""
        longitude, latitude = self.location.coordinates
        return Device(
            device_id=self.device_id,
            tenant=self.tenant,
            kind=self.kind,
            extra_kinds=tuple(self.extra_kinds),
            name=self.name,
            latitude=latitude,
            longitude=longitude,
            ipv6_address=self.ipv6_address,
            interval_s=self.interval_seconds,
            firmware=self.firmware,
            installed_on=self.installed_on,
            owner=self.owner,
            observation_goal=self.observation_goal,
            legal_ground=self.legal_ground,
            personal_data=self.personal_data,
            active_until=self.active_until,
        )


# API property -> Device attribute, for the properties a PATCH may set.
_PATCHABLE = {
    "kind": "kind",
    "extra_kinds": "extra_kinds",
    "name": "name",
    "ipv6_address": "ipv6_address",
    "interval_seconds": "interval_s",
    "firmware": "firmware",
    "installed_on": "installed_on",
    "owner": "owner",
    "observation_goal": "observation_goal",
    "legal_ground": "legal_ground",
    "personal_data": "personal_data",
    "active_until": "active_until",
}
_REQUIRED = frozenset({"kind", "extra_kinds", "name", "location", "personal_data"})


class DevicePatch(In):
    """Changes to a device (JSON merge patch): properties left out stay, null clears one."""

    kind: str | None = None
    extra_kinds: list[str] | None = None
    name: str | None = None
    location: PointIn | None = None
    ipv6_address: str | None = None
    interval_seconds: float | None = None
    firmware: str | None = None
    installed_on: date | None = None
    owner: str | None = None
    observation_goal: str | None = None
    legal_ground: str | None = None
    personal_data: bool | None = None
    active_until: date | None = None

    def cleared_required(self) -> list[str]:
        """camelCase names of properties that may not be null but are (for the 400)."""
        return sorted(
            to_camel(name)
            for name in self.model_fields_set & _REQUIRED
            if getattr(self, name) is None
        )

    def changes(self) -> dict[str, Any]:
        """The changes as `Registry.update` takes them (Device attribute names)."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "location" and value is not None:
                out["longitude"], out["latitude"] = value.coordinates
            elif name == "extra_kinds" and value is not None:
                out["extra_kinds"] = tuple(value)
            elif name in _PATCHABLE:
                out[_PATCHABLE[name]] = value
        return out


class RetireIn(In):
    """When a device was retired (default: now)."""

    retired_at: datetime | None = Field(None, description="RFC 3339 with a zone")


class BrokerLoginOut(Out):
    """A device's broker login; the password is shown only in this answer."""

    username: str = Field(description="{tenant}/{deviceId}")
    password: str

    @classmethod
    def of(cls, credentials: Credentials) -> BrokerLoginOut:
        """The API view of freshly issued credentials."""
        return cls(username=credentials.username, password=credentials.password)


class DeviceCreatedOut(DeviceOut):
    """A device just created, with its broker login (shown once)."""

    broker_login: BrokerLoginOut


class ImportOut(Out):
    """The outcome of a bulk import: how many devices were stored, and their broker logins."""

    imported: int
    broker_logins: list[BrokerLoginOut]
