"""A simulated city fleet: tenants and devices, deterministic from a seed."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Final

from devices import DEVICE_KINDS, Device, Tenant


@dataclass(frozen=True, slots=True)
class City:
    """A municipality the simulators know: CBS code, name, centre (WGS84) and IPv6 prefix."""

    code: str
    name: str
    latitude: float
    longitude: float
    prefix: str


CITIES: Final = (
    City("GM0363", "Amsterdam", 52.3728, 4.8936, "2001:db8:363::/48"),
    City("GM0344", "Utrecht", 52.0907, 5.1214, "2001:db8:344::/48"),
    City("GM0599", "Rotterdam", 51.9225, 4.4792, "2001:db8:599::/48"),
    City("GM0518", "'s-Gravenhage", 52.0705, 4.3007, "2001:db8:518::/48"),
)

# How common each kind is in a street fleet (lampposts dominate).
KIND_WEIGHTS: Final = {
    "lamppost": 30,
    "air_quality": 12,
    "noise": 8,
    "traffic_counter": 8,
    "parking": 20,
    "waste_bin": 12,
    "weather": 3,
    "water_level": 2,
}
_SHORT: Final = {
    "lamppost": "lp",
    "air_quality": "aq",
    "noise": "ns",
    "traffic_counter": "tc",
    "parking": "pk",
    "waste_bin": "wb",
    "weather": "wx",
    "water_level": "wl",
}


@dataclass(frozen=True, slots=True)
class Fleet:
    """The tenants and devices of a simulation."""

    tenants: tuple[Tenant, ...]
    devices: tuple[Device, ...]


def make_fleet(
    size: int, *, tenants: int = 2, seed: int = 1, interval_s: float | None = None
) -> Fleet:
    """`size` devices of mixed kinds spread over the first `tenants` cities.

    `interval_s` overrides every kind's reporting interval (seconds), e.g. for a lively demo.
    """
    if not 1 <= tenants <= len(CITIES):
        raise ValueError(f"tenants must be 1..{len(CITIES)}")
    rng = random.Random(seed)
    cities = CITIES[:tenants]
    kinds = list(KIND_WEIGHTS)
    weights = [KIND_WEIGHTS[k] for k in kinds]
    devices = []
    for n in range(size):
        city = cities[n % len(cities)]
        kind = kinds[n] if n < len(kinds) else rng.choices(kinds, weights)[0]
        net = ipaddress.IPv6Network(city.prefix)
        # ::1000 onwards, one per device: stable and inside the tenant's prefix.
        address = net.network_address + 0x1000 + n
        devices.append(
            Device(
                device_id=f"{city.code.lower()}-{_SHORT[kind]}-{n:05d}",
                tenant=city.code,
                kind=kind,
                name=f"{DEVICE_KINDS[kind].label} {n} {city.name}",
                latitude=round(city.latitude + rng.uniform(-0.03, 0.03), 6),
                longitude=round(city.longitude + rng.uniform(-0.05, 0.05), 6),
                ipv6_address=str(address),
                interval_s=interval_s or DEVICE_KINDS[kind].interval_s,
                firmware="sim-1.0",
                owner=f"Gemeente {city.name}",
                observation_goal="Simulated device for tests and demonstrations",
                legal_ground="none (simulation)",
            )
        )
    return Fleet(tuple(Tenant(c.code, c.name, (c.prefix,)) for c in cities), tuple(devices))
