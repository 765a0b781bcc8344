"""The ingest worker's in-memory view of the device registry, refreshed in the background."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from devices import Registry
from ingest.decode import Decoder, TimeRules, prepare

log = logging.getLogger(__name__)


class DecoderView(Protocol):
    """Where a worker finds the decoder of the current registry snapshot."""

    @property
    def decoder(self) -> Decoder:
        """The decoder to use for the next batch."""
        ...


class RegistryView:
    """Holds a Decoder for the newest registry snapshot; no database query per message.

    `lane`: the worker's index, which keeps the times it gives readings without `ts` apart
    from other workers' (see Decoder).
    """

    def __init__(
        self, registry: Registry, rules: TimeRules, refresh_s: float = 2.0, *, lane: int = 0
    ) -> None:
        self._registry = registry
        self._rules = rules
        self.refresh_s = refresh_s
        self._fingerprint: tuple[int, int] | None = None
        self.decoder = Decoder({}, rules, lane=lane)

    async def refresh(self) -> bool:
        """Reload when the registry changed; True when it did."""
        fingerprint = await asyncio.to_thread(self._registry.revision)
        if fingerprint == self._fingerprint:
            return False
        devices = await asyncio.to_thread(self._registry.devices)
        old = self.decoder
        self.decoder = Decoder(prepare(devices), self._rules, lane=old.lane, assigned=old.assigned)
        self._fingerprint = fingerprint
        log.info("registry view: %d devices", len(devices))
        return True

    async def watch(self) -> None:
        """Refresh every `refresh_s` seconds until cancelled; a failing database is logged."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing the registry view failed; keeping the last one")
