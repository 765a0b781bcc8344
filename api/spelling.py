"""The API's names for the domain's properties: camelCase (Dutch API Design Rules), where the
domain uses its attribute names (`Device.interval_s` is `intervalSeconds` on the API)."""

from __future__ import annotations

from typing import Final

_NAMES: Final = {
    "device_id": "deviceId",
    "extra_kinds": "extraKinds",
    "ipv6_address": "ipv6Address",
    "ipv6_prefixes": "ipv6Prefixes",
    "interval_s": "intervalSeconds",
    "installed_on": "installedOn",
    "retired_at": "retiredAt",
    "observation_goal": "observationGoal",
    "legal_ground": "legalGround",
    "personal_data": "personalData",
    "active_until": "activeUntil",
    "password_hash": "passwordHash",
}


def public_name(name: str | None) -> str:
    """The API's name of a domain property (`body` for none); names already public stay."""
    if name is None:
        return "body"
    return _NAMES.get(name, name)
