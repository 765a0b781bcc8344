"""The ingest worker's in-memory view of the device registry, followed change by change."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from devices import Device, Registry
from ingest.decode import Decoder, TimeRules, prepare

log = logging.getLogger(__name__)


class DecoderView(Protocol):
    """Where a worker finds the decoder of the current registry snapshot."""

    @property
    def decoder(self) -> Decoder:
        """The decoder to use for the next batch."""
        ...


def decoding_part(device: Device) -> Device:
    """The device without what decoding never reads (name, place, address, provenance): a
    worker holds every device of the fleet, and these are most of a device's bytes."""
    return Device(
        device.device_id,
        device.tenant,
        device.kind,
        "",
        0.0,
        0.0,
        interval_s=device.interval_s,
        extra_kinds=device.extra_kinds,
        retired_at=device.retired_at,
        personal_data=device.personal_data,
        active_until=device.active_until,
    )


class RegistryView:
    """Holds a Decoder for the newest registry revision; no database query per message.

    The first refresh reads every device; later ones only the devices changed since the
    revision last seen (Registry.device_changes), applied to the decoder in place. Everything
    is read again only when the registry cannot be followed: its revision went backwards (a
    restored database) or its device count disagrees with ours (a row deleted by hand).

    `lane`: the worker's index, which keeps the times it gives readings without `ts` apart
    from other workers' (see Decoder).
    """

    def __init__(
        self, registry: Registry, rules: TimeRules, refresh_s: float = 2.0, *, lane: int = 0
    ) -> None:
        self._registry = registry
        self._rules = rules
        self.refresh_s = refresh_s
        self._revision: int | None = None
        self.decoder = Decoder({}, rules, lane=lane)
        # Devices read from the registry and full reads so far: a change costs what changed.
        self.rows_fetched = 0
        self.full_reads = 0

    async def refresh(self) -> bool:
        """Apply what changed in the registry; True when something did."""
        changes = await asyncio.to_thread(self._registry.device_changes, self._revision)
        if changes.revision == self._revision and not changes.devices:
            return False
        self.rows_fetched += len(changes.devices)
        prepared = await asyncio.to_thread(prepare, map(decoding_part, changes.devices))
        # From here to the end nothing awaits: the worker decodes on this event loop too, so
        # no message sees a change half applied.
        if changes.complete:
            self.full_reads += 1
            old = self.decoder
            self.decoder = Decoder(prepared, self._rules, lane=old.lane, assigned=old.assigned)
            log.info("registry view: %d devices", len(prepared))
        else:
            self.decoder.apply(prepared)
            if len(self.decoder.devices) != changes.device_count:
                log.warning(
                    "registry view: %d devices, the registry says %d; reading them all",
                    len(self.decoder.devices),
                    changes.device_count,
                )
                self._revision = None
                return await self.refresh()
            log.info("registry view: %d devices changed", len(prepared))
        self._revision = changes.revision
        return True

    async def watch(self) -> None:
        """Refresh every `refresh_s` seconds until cancelled; a failing database is logged."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing the registry view failed; keeping the last one")
