"""The worker's record of each device's newest reading and status, flushed to the registry.

Per stored batch the worker hands its points here (`note`): a dict update per point, nothing
more. Every `every_s` seconds `flush` writes the devices that changed since the last flush
(devices.registry.DeviceStates.record_states, an upsert that keeps the newer time, so several
workers never move a device backwards) and the readings and rejections each tenant had. What
cannot be written (the database is away) is kept and written with the next flush; it is bounded
by the number of devices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from devices import Registry
from devices.registry import ReadingUpdate, StatusUpdate
from ingest.decode import Rejection
from timeseries.lineprotocol import FieldValue, Point, Tags

log = logging.getLogger(__name__)

_MINUTE_NS: Final = 60 * 1_000_000_000
KEEP_MINUTES_NS: Final = 2 * 3600 * 1_000_000_000  # per-minute counts kept this long
_BOOKKEEPING: Final = frozenset({"seq", "ts_assigned"})


def _metrics(fields: Mapping[str, FieldValue]) -> dict[str, float]:
    """A reading point's metric values: its numeric fields but the bookkeeping ones, as floats.

    Per changed device per flush. The decoder makes every metric value a float, so one pass
    keeping the floats is the answer unless something else than the bookkeeping fields was
    left out; only then the general rule runs.
    """
    values = {name: value for name, value in fields.items() if type(value) is float}
    if (
        len(values) + ("seq" in fields) + ("ts_assigned" in fields) == len(fields)
        and "seq" not in values
        and "ts_assigned" not in values
    ):
        return values  # the fields left out are exactly the bookkeeping ones
    return {
        name: float(value)
        for name, value in fields.items()
        if name not in _BOOKKEEPING and isinstance(value, int | float)
    }


@dataclass(slots=True)
class _Pending:
    """A device's newest point since the last flush, and how many points it had."""

    time_ns: int
    fields: Mapping[str, FieldValue]  # the point's own (never changed after it is made)
    count: int


@dataclass(slots=True)
class StateRecorder:
    """Keeps what changed since the last flush; `note` per batch, `run` flushes until cancelled."""

    registry: Registry
    every_s: float = 1.0
    clock: Callable[[], int] = time.time_ns
    _readings: dict[Tags, _Pending] = field(default_factory=dict)
    _statuses: dict[Tags, tuple[str, int]] = field(default_factory=dict)
    _rejections: Counter[str] = field(default_factory=Counter)
    flushes: int = 0
    failures: int = 0

    def note(
        self,
        readings: Sequence[Point],
        statuses: Sequence[Point] = (),
        rejections: Sequence[Rejection] = (),
    ) -> None:
        """Remember the newest reading point and status point of each device (its series'
        tags) of a stored batch, and count its readings and rejected values per tenant."""
        pending = self._readings
        for point in readings:
            key = point.tags
            known = pending.get(key)
            if known is None:
                pending[key] = _Pending(point.time_ns, point.fields, 1)
            elif point.time_ns > known.time_ns:
                known.time_ns = point.time_ns
                known.fields = point.fields
                known.count += 1
            elif point.time_ns == known.time_ns:
                known.fields = {**known.fields, **point.fields}  # another kind, same reading
                known.count += 1
            else:
                known.count += 1
        for point in statuses:
            self._status(point)
        for rejection in rejections:
            if rejection.tenant:
                self._rejections[rejection.tenant] += rejection.count

    def _status(self, point: Point) -> None:
        state = point.fields.get("state")
        if not isinstance(state, str):
            return
        known = self._statuses.get(point.tags)
        if known is None or point.time_ns > known[1]:
            self._statuses[point.tags] = (state, point.time_ns)

    @property
    def pending(self) -> int:
        """Devices waiting to be written."""
        return len(self._readings) + len(self._statuses)

    async def flush(self) -> None:
        """Write what changed since the last flush; keep it for the next one on failure."""
        readings, statuses, rejected = self._readings, self._statuses, self._rejections
        if not readings and not statuses and not rejected:
            return
        self._readings, self._statuses, self._rejections = {}, {}, Counter()
        now = self.clock()
        minute = now - now % _MINUTE_NS
        per_tenant: Counter[str] = Counter()
        updates = []
        for key, pending in readings.items():
            owner = dict(key)
            tenant = owner.get("tenant", "")
            per_tenant[tenant] += pending.count
            updates.append(
                ReadingUpdate(
                    owner.get("device_id", ""), tenant, pending.time_ns, _metrics(pending.fields)
                )
            )
        status_updates = [
            StatusUpdate(owner["device_id"], owner["tenant"], state, at)
            for key, (state, at) in statuses.items()
            if "device_id" in (owner := dict(key)) and "tenant" in owner
        ]
        minutes = {
            (tenant, minute): (per_tenant[tenant], rejected[tenant])
            for tenant in per_tenant.keys() | rejected.keys()
            if tenant
        }
        try:
            await asyncio.to_thread(
                self.registry.record_states, updates, status_updates, minutes, now_ns=now
            )
        except Exception as exc:  # noqa: BLE001 - the database away must not stop ingest
            self.failures += 1
            log.warning("could not record device state (kept for the next flush): %s", exc)
            self._merge_back(readings, statuses, rejected)
            return
        self.flushes += 1
        if self.flushes % 600 == 1:
            try:
                await asyncio.to_thread(self.registry.forget_minutes, now - KEEP_MINUTES_NS)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not forget old per-minute counts: %s", exc)

    def _merge_back(
        self,
        readings: dict[Tags, _Pending],
        statuses: dict[Tags, tuple[str, int]],
        rejected: Counter[str],
    ) -> None:
        # What arrived meanwhile is newer, except where it is not: keep the newer of both.
        for key, old in readings.items():
            new = self._readings.get(key)
            if new is None:
                self._readings[key] = old
            else:
                new.count += old.count
                if old.time_ns > new.time_ns:
                    new.time_ns, new.fields = old.time_ns, old.fields
        for key, (state, at) in statuses.items():
            known = self._statuses.get(key)
            if known is None or at > known[1]:
                self._statuses[key] = (state, at)
        self._rejections.update(rejected)

    async def run(self) -> None:
        """Flush every `every_s` seconds until cancelled; a last flush on the way out."""
        try:
            while True:
                await asyncio.sleep(self.every_s)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())
