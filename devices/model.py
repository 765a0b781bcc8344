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


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """A device's broker login: username `{tenant}/{deviceId}` and its Mosquitto password hash."""

    tenant: str
    device_id: str
    password_hash: str = field(repr=False)

    @property
    def username(self) -> str:
        """The MQTT username of the device."""
        return f"{self.tenant}/{self.device_id}"


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """A WGS84 box in degrees; `min_lon > max_lon` means it crosses the antimeridian."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def problems(self) -> list[str]:
        """What is wrong with the box (empty when it is fine)."""
        found = []
        for name, value, limit in (
            ("minLon", self.min_lon, 180.0),
            ("maxLon", self.max_lon, 180.0),
            ("minLat", self.min_lat, 90.0),
            ("maxLat", self.max_lat, 90.0),
        ):
            if not -limit <= value <= limit:
                found.append(f"{name} {value} is outside -{limit:g}..{limit:g}")
        if self.min_lat > self.max_lat:
            found.append(f"minLat {self.min_lat} is above maxLat {self.max_lat}")
        return found

    @classmethod
    def parse(cls, text: str) -> BoundingBox:
        """`minLon,minLat,maxLon,maxLat` in degrees; ValueError says what is wrong."""
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError("give four numbers: minLon,minLat,maxLon,maxLat")
        try:
            min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"{text!r} is not four numbers: minLon,minLat,maxLon,maxLat") from None
        box = cls(min_lon, min_lat, max_lon, max_lat)
        if problems := box.problems():
            raise ValueError("; ".join(problems))
        return box
