"""The rules a tenant or device must keep, each broken rule reported as a Problem.

Problems name the property by its attribute of `Device` or `Tenant` (`ipv6_address`); the API and
the import files spell the names their own way (see api/spelling.py, devices/transfer.py).
"""

from __future__ import annotations

import math
from typing import Final

from devices.catalogue import DEVICE_KINDS
from devices.errors import InvalidDevice, Problem
from devices.ipv6 import check_device_address, parse_prefix
from devices.model import Device, Tenant
from devices.topics import DEVICE_ID_RE, TENANT_RE

# The device properties an update may change; id, tenant and the lifecycle stamps stay.
UPDATABLE: Final = frozenset(
    {
        "kind",
        "extra_kinds",
        "name",
        "latitude",
        "longitude",
        "ipv6_address",
        "interval_s",
        "firmware",
        "installed_on",
        "owner",
        "observation_goal",
        "legal_ground",
        "personal_data",
        "active_until",
    }
)
# Longest text of a property, in characters (the database columns' sizes).
_LIMITS: Final = {"name": 200, "firmware": 100, "owner": 200}


def tenant_problems(tenant: Tenant) -> list[Problem]:
    """Every rule the tenant breaks (empty when it is fine)."""
    found = []
    if not TENANT_RE.fullmatch(tenant.code):
        found.append(
            Problem("code", f"tenant code {tenant.code!r} must match [A-Za-z0-9_-]{{1,32}}")
        )
    if not tenant.name.strip():
        found.append(Problem("name", "tenant name is empty"))
    elif len(tenant.name) > 200:
        found.append(Problem("name", "tenant name is longer than 200 characters"))
    for prefix in tenant.ipv6_prefixes:
        try:
            parse_prefix(prefix)
        except InvalidDevice as exc:
            found.append(Problem("ipv6_prefixes", exc.message))
    return found


def validate_tenant(tenant: Tenant) -> None:
    """Raise InvalidDevice (listing every problem) when the tenant breaks a rule."""
    if found := tenant_problems(tenant):
        raise InvalidDevice.of(found)


def device_problems(device: Device, tenant: Tenant | None) -> list[Problem]:
    """Every rule the device breaks, against its tenant (None: the tenant does not exist)."""
    found: list[Problem] = []
    if not DEVICE_ID_RE.fullmatch(device.device_id):
        found.append(
            Problem(
                "device_id",
                f"device id {device.device_id!r} must match [a-z0-9][a-z0-9-]{{0,62}}",
            )
        )
    if tenant is None:
        found.append(Problem("tenant", f"tenant {device.tenant!r} does not exist"))
    for name, kind in (("kind", device.kind), *(("extra_kinds", k) for k in device.extra_kinds)):
        if kind not in DEVICE_KINDS:
            found.append(
                Problem(
                    name, f"unknown device kind {kind!r}; known: {', '.join(sorted(DEVICE_KINDS))}"
                )
            )
    if not device.name.strip():
        found.append(Problem("name", "the name is empty"))
    for attribute, limit in _LIMITS.items():
        value = getattr(device, attribute)
        if value is not None and len(value) > limit:
            found.append(Problem(attribute, f"{attribute} is longer than {limit} characters"))
    if not -90.0 <= device.latitude <= 90.0:
        found.append(Problem("latitude", f"latitude {device.latitude} is outside -90..90"))
    if not -180.0 <= device.longitude <= 180.0:
        found.append(Problem("longitude", f"longitude {device.longitude} is outside -180..180"))
    if device.interval_s is not None and not (
        device.interval_s > 0 and math.isfinite(device.interval_s)
    ):
        found.append(
            Problem("interval_s", f"the reporting interval {device.interval_s} must be > 0 s")
        )
    if (
        device.installed_on is not None
        and device.active_until is not None
        and device.active_until < device.installed_on
    ):
        found.append(Problem("active_until", "the end of service is before the installation"))
    if device.ipv6_address is not None and tenant is not None:
        try:
            check_device_address(device.ipv6_address, tenant.ipv6_prefixes, tenant=tenant.code)
        except InvalidDevice as exc:
            found.append(Problem("ipv6_address", exc.message))
    return found


def validate_device(device: Device, tenant: Tenant) -> None:
    """Raise InvalidDevice (listing every problem) when the device breaks a rule."""
    if found := device_problems(device, tenant):
        raise InvalidDevice.of(found)


def unchangeable(changes: set[str] | frozenset[str]) -> list[Problem]:
    """A problem for each property an update may not change (sorted by name)."""
    return [Problem(name, f"{name} cannot be changed") for name in sorted(changes - UPDATABLE)]
