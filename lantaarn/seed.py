"""Putting a simulated fleet into the registry, once."""

from __future__ import annotations

from devices import NotFound, Registry
from simulators import Fleet


def register_fleet(registry: Registry, fleet: Fleet) -> int:
    """Add the fleet's tenants and devices that are missing; returns how many devices were added."""
    for tenant in fleet.tenants:
        try:
            registry.tenant(tenant.code)
        except NotFound:
            registry.add_tenant(tenant)
    known = {d.device_id for d in registry.devices()}
    missing = [d for d in fleet.devices if d.device_id not in known]
    if missing:
        registry.add_devices(missing)
    return len(missing)
