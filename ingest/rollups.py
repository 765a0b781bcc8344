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
from timeseries.rollups import rebuild, window_ns
from timeseries.schema import quote_ident, rollup_policy

log = logging.getLogger(__name__)

PROGRESS = "rollup_progress"
PROGRESS_POLICY = rollup_policy("1h")  # kept forever; one point per (kind, window), at time 0


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
        self._progress: dict[tuple[str, str], int] | None = None
        self.rows_written = 0

    async def _load_progress(self) -> dict[tuple[str, str], int]:
        q = (
            f'SELECT last("done") FROM {quote_ident(PROGRESS_POLICY)}.{quote_ident(PROGRESS)} '  # noqa: S608
            'GROUP BY "kind", "window"'
        )
        progress: dict[tuple[str, str], int] = {}
        for series in (await self._client.query(q))[0]:
            for row in series.values:
                key = (series.tags.get("kind", ""), series.tags.get("window", ""))
                progress[key] = int(row[1])
        return progress

    def due(self, window: str) -> int:
        """End (ns) of the newest window that is closed and past its grace period."""
        width = window_ns(window)
        ripe = self._clock() - int(self.config.grace_s * 1e9)
        return ripe - ripe % width

    async def tick(self) -> int:
        """Roll every closed window not rolled yet; returns rows written."""
        if self._progress is None:
            self._progress = await self._load_progress()
        written = 0
        for window in self.config.windows:
            width = window_ns(window)
            due = self.due(window)
            for kind in self.kinds:
                done = self._progress.get((kind, window), due - self.config.first_windows * width)
                while done < due:
                    end = min(due, done + self.config.max_windows_per_query * width)
                    written += await rebuild(self._client, self._writer, kind, window, done, end)
                    done = end
                    await self._writer.write(
                        [f"{PROGRESS},kind={kind},window={window} done={done}i 0"],
                        retention_policy=PROGRESS_POLICY,
                    )
                    self._progress[(kind, window)] = done
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
