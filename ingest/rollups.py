"""The rollup job: after a window closes (plus a grace period), recompute it from raw readings.

Each worker rolls up the device kinds assigned to it (kind number modulo the worker count), so
every kind has exactly one roller however many workers share the load. Progress is kept in
InfluxDB, so a restarted worker resumes where it stopped and fills the windows it missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from devices import DEVICE_KINDS
from timeseries import BatchWriter, InfluxClient
from timeseries.rollups import Coverage, read_coverage, rebuild, window_ns, write_coverage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RollupConfig:
    """Which windows to keep, how long to wait for late readings, how often to look (seconds)."""

    windows: tuple[str, ...] = ("1m", "1h")
    grace_s: float = 120.0
    tick_s: float = 5.0
    first_windows: int = 3  # on a first start, also roll this many windows before now
    max_windows_per_query: int = 60


def assigned_kinds(index: int, workers: int) -> tuple[str, ...]:
    """The device kinds worker `index` of `workers` rolls up."""
    return tuple(k for n, k in enumerate(sorted(DEVICE_KINDS)) if n % max(1, workers) == index)


class RollupJob:
    """Keeps the rollups of some kinds up to date."""

    def __init__(
        self,
        client: InfluxClient,
        writer: BatchWriter,
        config: RollupConfig,
        kinds: tuple[str, ...],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._client = client
        self._writer = writer
        self.config = config
        self.kinds = kinds
        self._clock = clock
        self._progress: dict[tuple[str, str], Coverage] = {}
        self.rows_written = 0

    def due(self, window: str) -> int:
        """End (ns) of the newest window that is closed and past its grace period."""
        width = window_ns(window)
        ripe = self._clock() - int(self.config.grace_s * 1e9)
        return ripe - ripe % width

    async def tick(self) -> int:
        """Roll every closed window not rolled yet; returns rows written."""
        # Read every tick (one small query): `lantaarn rollups rebuild` may have widened it.
        self._progress = await read_coverage(self._client)
        written = 0
        for window in self.config.windows:
            width = window_ns(window)
            due = self.due(window)
            for kind in self.kinds:
                first = due - self.config.first_windows * width
                coverage = self._progress.get((kind, window), Coverage(first, first))
                while coverage.done < due:
                    end = min(due, coverage.done + self.config.max_windows_per_query * width)
                    written += await rebuild(
                        self._client, self._writer, kind, window, coverage.done, end
                    )
                    coverage = Coverage(coverage.since, end)
                    await write_coverage(self._writer, kind, window, coverage)
                    self._progress[(kind, window)] = coverage
        self.rows_written += written
        return written

    async def run(self) -> None:
        """Tick until cancelled; failures are logged and retried at the next tick."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rolling up failed; trying again in %.0f s", self.config.tick_s)
            await asyncio.sleep(self.config.tick_s)
