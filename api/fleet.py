"""The registry's devices held in memory by the API, followed change by change.

Fleet-wide answers (/v1/latest, fleet aggregates) read every device of some tenants. Each
request asks the registry for the devices changed since the revision last seen (one indexed
query, usually answering nothing) and applies them; everything is read only at the start or
when the registry cannot be followed (its revision went backwards, its device count disagrees).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from itertools import chain

from devices import Device, Registry
from devices.registry import DeviceChanges


class FleetCache:
    """Every device of the registry, as of its latest revision, by id and per tenant."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._revision: int | None = None
        self._by_id: dict[str, Device] = {}
        self._ids: list[str] = []  # every device id, sorted
        self._tenant_ids: dict[str, list[str]] = {}  # tenant -> its device ids, sorted
        self._lock = asyncio.Lock()
        # Devices read from the registry and full reads so far: a change costs what changed.
        self.rows_fetched = 0
        self.full_reads = 0

    async def devices(
        self,
        *,
        tenants: Sequence[str] | None = None,
        kind: str | None = None,
        include_retired: bool = True,
    ) -> list[Device]:
        """Devices by id, filtered like Registry.devices."""
        async with self._lock:
            await self._follow()
            # No await from here on: the answer is of one revision.
            if tenants is None:
                ids: Sequence[str] = self._ids
            else:
                lists = [self._tenant_ids.get(t, []) for t in dict.fromkeys(tenants)]
                ids = lists[0] if len(lists) == 1 else sorted(chain.from_iterable(lists))
            by_id = self._by_id
            found = [by_id[i] for i in ids]
        return [
            d
            for d in found
            if (kind is None or d.kind == kind) and (include_retired or not d.retired)
        ]

    async def _follow(self) -> None:
        """Bring the copy up to the registry's latest revision."""
        changes = await asyncio.to_thread(self._registry.device_changes, self._revision)
        if changes.revision == self._revision and not changes.devices:
            return
        self.rows_fetched += len(changes.devices)
        if changes.complete:
            self._replace_all(changes)
        else:
            self._apply(changes)
            if len(self._by_id) != changes.device_count:
                self._revision = None
                await self._follow()
                return
        self._revision = changes.revision

    def _replace_all(self, changes: DeviceChanges) -> None:
        self.full_reads += 1
        self._by_id = {d.device_id: d for d in changes.devices}
        self._ids = sorted(self._by_id)
        tenant_ids: dict[str, list[str]] = {}
        for device_id in self._ids:
            tenant_ids.setdefault(self._by_id[device_id].tenant, []).append(device_id)
        self._tenant_ids = tenant_ids

    def _apply(self, changes: DeviceChanges) -> None:
        for device in changes.devices:
            device_id = device.device_id
            old = self._by_id.get(device_id)
            if old is None:
                bisect.insort(self._ids, device_id)
            if old is None or old.tenant != device.tenant:
                if old is not None:
                    moved_from = self._tenant_ids[old.tenant]
                    del moved_from[bisect.bisect_left(moved_from, device_id)]
                bisect.insort(self._tenant_ids.setdefault(device.tenant, []), device_id)
            self._by_id[device_id] = device
