"""The devices with the lowest data completeness, for the summary: a few rows read once an hour.

The figure is each device's received / expected readings (timeseries.completeness) over the last
whole hour (UTC) that ended at least `SETTLE_NS` ago. The completeness job of the worker that
counts a kind adds each device's minutes up per hour and, once the hour is counted (some 10-70 s
after it ends), writes the 10 devices of each tenant and kind that lost the largest share of
their readings in it (ingest.completeness). When the hour moves on, the API reads those rows
(tenants x kinds x 10 at most, whatever the size of the fleet) and keeps the `keep` lowest of
each tenant; a summary of any set of tenants picks its lowest from those. So neither a summary
nor the hourly read grows with the number of devices. While the next hour's figures are being
read, the previous hour's are served; they are read again every `REFRESH_S` (a worker that was
behind writes its rows late), and a failed read is retried after `RETRY_S`.
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
from timeseries.completeness import DeviceShortfall, read_lowest, shortfall_rank

log = logging.getLogger(__name__)

_NS: Final = 1_000_000_000
HOUR_NS: Final = 3600 * _NS
SETTLE_NS: Final = 5 * 60 * _NS  # how long after an hour ends its figures are read
RETRY_S: Final = 60.0
# Read again after this long even within the hour: a worker that was behind writes its rows late.
REFRESH_S: Final = 300.0


def figure_hour(now_ns: int) -> tuple[int, int]:
    """The hour [start, end) (ns) whose completeness the summary shows at `now_ns`."""
    end = (now_ns - SETTLE_NS) - (now_ns - SETTLE_NS) % HOUR_NS
    return end - HOUR_NS, end


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
        return heapq.nsmallest(n, (s for found in chosen for s in found), key=shortfall_rank)


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
        self._read_at = 0.0  # time.monotonic() of the last read that succeeded
        self.reads = 0  # InfluxDB reads made (for tests and benchmarks)

    async def current(self) -> HourFigures | None:
        """The figures of the hour due now, or of the one before while those are read; None
        until a first read succeeded."""
        start, end = figure_hour(self._clock())
        figures = self._figures
        due = (
            figures is None
            or figures.end_ns != end
            or time.monotonic() - self._read_at >= REFRESH_S
        )
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
            found = await read_lowest(self._influx, start, end)
        except InfluxError as e:
            self._failed_at = time.monotonic()
            log.warning("could not read the devices' completeness (retrying in %.0f s): %s",
                        RETRY_S, e)  # fmt: skip
            return
        self.reads += 1
        self._failed_at = None
        self._read_at = time.monotonic()
        grouped: dict[str, list[DeviceShortfall]] = {}
        for shortfall in found:
            grouped.setdefault(shortfall.tenant, []).append(shortfall)
        self._figures = HourFigures(
            start,
            end,
            {t: heapq.nsmallest(self._keep, of, key=shortfall_rank) for t, of in grouped.items()},
        )

    async def close(self) -> None:
        """End a read under way (the InfluxDB client is about to close)."""
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
