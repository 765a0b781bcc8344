"""The devices with the lowest data completeness, for the summary: one InfluxDB query an hour.

The figure is each device's received / expected readings (timeseries.completeness) over the last
whole hour (UTC) that ended at least `SETTLE_NS` ago, so that the completeness rows of its last
minutes (written some 10-70 s after each minute closes) are in. Only devices that lost readings
in that hour are ranked. When the hour moves on, one query sums the hour's rows per device for
every tenant; the `keep` lowest devices of each tenant are kept, and a summary of any set of
tenants picks its lowest from those. So a summary request costs the same at 1,000 and at
150,000 devices, and memory grows with the tenants, not the devices. While the next hour's
figures are being read, the previous hour's are served; a failed read is retried after
`RETRY_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from timeseries import InfluxClient, InfluxError
from timeseries.completeness import DeviceShortfall, read_shortfalls

log = logging.getLogger(__name__)

_NS: Final = 1_000_000_000
HOUR_NS: Final = 3600 * _NS
SETTLE_NS: Final = 5 * 60 * _NS  # how long after an hour ends its figures are read
RETRY_S: Final = 60.0


def figure_hour(now_ns: int) -> tuple[int, int]:
    """The hour [start, end) (ns) whose completeness the summary shows at `now_ns`."""
    end = (now_ns - SETTLE_NS) - (now_ns - SETTLE_NS) % HOUR_NS
    return end - HOUR_NS, end


def _rank(shortfall: DeviceShortfall) -> tuple[float, int, str]:
    # Lowest share first; among equals the one that lost most, then by id (a stable order).
    return (shortfall.ratio, shortfall.received - shortfall.expected, shortfall.device_id)


@dataclass(frozen=True, slots=True)
class HourFigures:
    """The lowest-completeness devices of each tenant over one hour [start, end) (ns)."""

    start_ns: int
    end_ns: int
    by_tenant: dict[str, list[DeviceShortfall]]  # each lowest first

    def lowest(self, tenants: Sequence[str] | None, n: int) -> list[DeviceShortfall]:
        """The `n` lowest devices among the tenants (None: all), lowest first."""
        chosen = self.by_tenant.values() if tenants is None else (
            self.by_tenant.get(t, []) for t in tenants
        )  # fmt: skip
        return heapq.nsmallest(n, (s for found in chosen for s in found), key=_rank)


class LowestCompleteness:
    """Keeps the current hour's figures (see the module); `close` ends a read under way."""

    def __init__(
        self,
        influx: InfluxClient,
        keep: int,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._influx = influx
        self._keep = keep
        self._clock = clock
        self._figures: HourFigures | None = None
        self._reading: asyncio.Task[None] | None = None
        self._failed_at: float | None = None  # time.monotonic() of the last failed read
        self.reads = 0  # InfluxDB reads made (for tests and benchmarks)

    async def current(self) -> HourFigures | None:
        """The figures of the hour due now, or of the one before while those are read; None
        until a first read succeeded."""
        start, end = figure_hour(self._clock())
        figures = self._figures
        due = figures is None or figures.end_ns != end
        retry_ok = self._failed_at is None or time.monotonic() - self._failed_at >= RETRY_S
        if due and retry_ok and (self._reading is None or self._reading.done()):
            self._reading = asyncio.create_task(
                self._read(start, end), name="lowest-completeness read"
            )
        if self._figures is None and self._reading is not None and not self._reading.done():
            # Nothing to show yet (a fresh start): wait for the first read rather than answer
            # with no figures. shield: a cancelled request does not end the read.
            await asyncio.shield(self._reading)
        return self._figures

    async def _read(self, start: int, end: int) -> None:
        try:
            found = await read_shortfalls(self._influx, start, end)
        except InfluxError as e:
            self._failed_at = time.monotonic()
            log.warning("could not read the devices' completeness (retrying in %.0f s): %s",
                        RETRY_S, e)  # fmt: skip
            return
        self.reads += 1
        self._failed_at = None
        grouped: dict[str, list[DeviceShortfall]] = {}
        for shortfall in found:
            grouped.setdefault(shortfall.tenant, []).append(shortfall)
        self._figures = HourFigures(
            start,
            end,
            {t: heapq.nsmallest(self._keep, of, key=_rank) for t, of in grouped.items()},
        )

    async def close(self) -> None:
        """End a read under way (the InfluxDB client is about to close)."""
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
