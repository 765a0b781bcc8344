"""Open data: what a tenant publishes for anyone to read, under which licence, and who may never be.

A tenant publishes whole device kinds and single devices, with one licence (CC0 1.0 or CC BY 4.0)
and an attribution. A device is open when its tenant published its main kind or the device
itself, and neither the device nor any of its kinds carries personal data: personal data is
never open, whatever was published (a device flagged later drops out by itself).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from devices.catalogue import DEVICE_KINDS
from devices.model import Device

MAX_ATTRIBUTION: Final = 300  # characters


class Licence(enum.StrEnum):
    """The licences open data may carry, by their SPDX identifiers."""

    CC0 = "CC0-1.0"
    CC_BY = "CC-BY-4.0"

    @property
    def url(self) -> str:
        """The licence's canonical text, as DCAT and the `license` link relation want it."""
        return _LICENCE_URLS[self]

    @property
    def name_for_people(self) -> str:
        """The licence's name for people."""
        return _LICENCE_TITLES[self]


_LICENCE_URLS: Final = {
    Licence.CC0: "https://creativecommons.org/publicdomain/zero/1.0/",
    Licence.CC_BY: "https://creativecommons.org/licenses/by/4.0/",
}
_LICENCE_TITLES: Final = {
    Licence.CC0: "CC0 1.0 Universal (public domain dedication)",
    Licence.CC_BY: "Creative Commons Attribution 4.0 International",
}


@dataclass(frozen=True, slots=True)
class Publication:
    """One tenant's open data: the kinds and devices it publishes, its licence and attribution."""

    tenant: str
    licence: Licence
    attribution: str
    kinds: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    updated_at: datetime | None = field(default=None, compare=False)
    # The named devices as a set: covering a fleet against a long device list stays linear.
    _named: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_named", frozenset(self.devices))

    def covers(self, device: Device) -> bool:
        """Whether the tenant published this device (by its kind or by name); no personal check."""
        return device.tenant == self.tenant and (
            device.kind in self.kinds or device.device_id in self._named
        )


def personal(device: Device) -> bool:
    """Whether the device's readings tell about people: its own flag or any of its kinds'."""
    if device.personal_data:
        return True
    kinds = (DEVICE_KINDS.get(k) for k in (device.kind, *device.extra_kinds))
    return any(k is not None and k.personal_data for k in kinds)


def is_open(device: Device, publications: Mapping[str, Publication]) -> bool:
    """Whether anyone may read `device`: its tenant's publication covers it and it is not personal.

    `publications` maps tenant codes to their publication (tenants without one: absent).
    """
    publication = publications.get(device.tenant)
    return publication is not None and publication.covers(device) and not personal(device)
