"""The rollup job: after a window closes (plus a grace period), recompute it from raw readings.

Each worker rolls up the device kinds assigned to it (kind number modulo the worker count), so
every kind has exactly one roller however many workers share the load. Progress is kept in
InfluxDB, so a restarted worker resumes where it stopped and fills the windows it missed.

Each rebuild also writes the fleet rollups (per tenant) of the windows it rolls, from the device
rows it computes; how far those are complete is kept beside the device rollups' progress (window
tag `fleet_{window}`), starting at the first window this worker rolled with them, so windows
rolled before fleet rollups existed are never taken for covered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from devices import DEVICE_KINDS
from ingest.completeness import CompletenessJob
from timeseries import BatchWriter, InfluxClient
from timeseries.rollups import Coverage, read_coverage, rebuild, window_ns, write_coverage
from timeseries.schema import fleet_progress_window

log = logging.getLogger(__name__)

# Windows remembered for a second pass; a backlog replay beyond this is left to a rebuild.
MAX_LATE_WINDOWS = 10_000


@dataclass(frozen=True, slots=True)
class RollupConfig:
    """Which windows to keep, how long to wait for late readings, how often to look (seconds).

    The first two are settings (`lantaarn.settings.IngestSettings`), which hold their defaults.
    """

    windows: tuple[str, ...]
    grace_s: float
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
        self._late: set[tuple[str, str, int]] = set()  # (kind, window, start ns) to roll again
        self.rows_written = 0
        self.windows_rerolled = 0
        # Counts lost readings of the same kinds, soon after each minute (see its module).
        self.completeness = CompletenessJob(client, writer, kinds, clock=clock)

    def mark_late(self, readings: list[tuple[str, int]]) -> None:
        """Note windows that got readings after they were rolled up; the next tick redoes them.

        Any worker may redo any kind's window: the result is the same (it is computed from the
        stored raw readings), so it does not matter which worker received the late reading.
        """
        for kind, ts in readings:
            if kind not in DEVICE_KINDS:
                continue
            for window in self.config.windows:
                width = window_ns(window)
                if len(self._late) >= MAX_LATE_WINDOWS:
                    log.warning(
                        "over %d windows got late readings; rebuild the rest with "
                        "`lantaarn rollups rebuild`",
                        MAX_LATE_WINDOWS,
                    )
                    return
                self._late.add((kind, window, ts - ts % width))

    def due(self, window: str) -> int:
        """End (ns) of the newest window that is closed and past its grace period."""
        width = window_ns(window)
        ripe = self._clock() - int(self.config.grace_s * 1e9)
        return ripe - ripe % width

    async def tick(self) -> int:
        """Roll every closed window not rolled yet; returns rows written."""
        # Read every tick (one small query): `lantaarn rollups rebuild` may have widened it.
        self._progress = await read_coverage(self._client)
        await self.completeness.tick()
        written = 0
        for window in self.config.windows:
            width = window_ns(window)
            due = self.due(window)
            for kind in self.kinds:
                first = due - self.config.first_windows * width
                coverage = self._progress.get((kind, window), Coverage(first, first))
                fleet_key = (kind, fleet_progress_window(window))
                fleet = self._progress.get(fleet_key)
                if fleet is None or fleet.done != coverage.done:
                    # None yet, or the device rollups moved without it (a rebuild of a range
                    # apart from the fleet span, or one by a version before fleet rollups):
                    # fleet rows are known to exist only from here on.
                    fleet = Coverage(coverage.done, coverage.done)
                while coverage.done < due:
                    end = min(due, coverage.done + self.config.max_windows_per_query * width)
                    written += await rebuild(
                        self._client, self._writer, kind, window, coverage.done, end
                    )
                    coverage = Coverage(coverage.since, end)
                    await write_coverage(self._writer, kind, window, coverage)
                    self._progress[(kind, window)] = coverage
                    fleet = Coverage(fleet.since, end)
                    await write_coverage(self._writer, kind, fleet_key[1], fleet)
                    self._progress[fleet_key] = fleet
        written += await self._reroll_late()
        self.rows_written += written
        return written

    async def _reroll_late(self) -> int:
        written = 0
        pending, self._late = self._late, set()
        for kind, window, start in sorted(pending):
            coverage = self._progress.get((kind, window))
            if coverage is None or not coverage.since <= start < coverage.done:
                continue  # not rolled up yet (the regular pass takes it) or outside our span
            written += await rebuild(
                self._client, self._writer, kind, window, start, start + window_ns(window)
            )
            self.windows_rerolled += 1
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
