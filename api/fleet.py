"""The registry's devices held in memory by the API, reloaded only when the registry changed.

Fleet-wide answers (/v1/latest, fleet aggregates) read every device; the registry's revision
(one small query) says whether the copy is still good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from devices import Device, Registry


class FleetCache:
    """Every device of the registry, as of its latest revision."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._revision: tuple[int, int] | None = None
        self._devices: list[Device] = []
        self._lock = asyncio.Lock()

    async def devices(
        self,
        *,
        tenants: Sequence[str] | None = None,
        kind: str | None = None,
        include_retired: bool = True,
    ) -> list[Device]:
        """Devices by id, filtered like Registry.devices."""
        async with self._lock:
            revision = await asyncio.to_thread(self._registry.revision)
            if revision != self._revision:
                self._devices = await asyncio.to_thread(self._registry.devices)
                self._revision = revision
            devices = self._devices
        wanted = None if tenants is None else frozenset(tenants)
        return [
            d
            for d in devices
            if (wanted is None or d.tenant in wanted)
            and (kind is None or d.kind == kind)
            and (include_retired or not d.retired)
        ]
