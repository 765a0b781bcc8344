"""The completeness job: each minute, count the readings each device's `seq` says were lost.

Run by the worker that rolls up a kind (ingest.rollups.RollupJob calls `tick`), so every kind
has exactly one counter however many workers share the subscription. It counts from the stored
readings (timeseries.completeness), never from what this worker happened to receive: a shared
subscription spreads one device's readings over every worker.

Each minute is counted twice: here, soon after it closes (`grace_s`, so that a broker dropping
messages shows within a minute or so), and again with its 1-minute rollup
(timeseries.rollups.rebuild), once the rollup grace has passed and readings still in flight
(InfluxDB stalled, a worker restarting) are in; late readings recount it with the rollup, and so
does `lantaarn rollups rebuild`. Both passes overwrite the same rows; /metrics counts the first
pass only, so nothing is counted twice there.

The first pass also adds each device's counts up per hour (UTC) in memory; once an hour is
counted, the `keep` devices of each tenant and kind that lost the largest share of their
readings in it are written (timeseries.completeness.lowest_lines), for the API's summary to
read without a scan of every device's rows. An hour the job did not count from its start (the
worker started or took the kind over during it) holds the minutes it counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from timeseries import BatchWriter, InfluxClient
from timeseries.completeness import (
    I64,
    WIDTH_NS,
    Counted,
    DeviceShortfall,
    TenantTotals,
    lowest_lines,
    rebuild_completeness,
)
from timeseries.schema import rollup_policy

log = logging.getLogger(__name__)

HOUR_NS = 3600 * 1_000_000_000


@dataclass(slots=True)
class TenantFigures:
    """What the first pass counted for one (tenant, kind) since the worker started."""

    received: int = 0
    expected: int = 0
    last_ratio: float = 1.0  # of the newest minute counted


@dataclass(slots=True)
class HourSums:
    """Readings received and expected per device slot over one hour so far."""

    received: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    expected: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, slots: I64, received: I64, expected: I64, size: int) -> None:
        """Add rows (a slot may repeat: several minutes) to sums `size` slots long."""
        if size > len(self.received):
            grown = max(size, 2 * len(self.received))
            self.received = np.concatenate(
                [self.received, np.zeros(grown - len(self.received), np.int64)]
            )
            self.expected = np.concatenate(
                [self.expected, np.zeros(grown - len(self.expected), np.int64)]
            )
        n = len(self.received)
        self.received += np.bincount(slots, weights=received, minlength=n).astype(np.int64)
        self.expected += np.bincount(slots, weights=expected, minlength=n).astype(np.int64)


@dataclass(slots=True)
class CompletenessJob:
    """Counts the minutes of some kinds soon after they close; `tick()` from the rollup loop."""

    client: InfluxClient
    writer: BatchWriter
    kinds: tuple[str, ...]
    grace_s: float = 10.0  # wait this long after a minute closed (seconds)
    first_windows: int = 3  # on start, also count this many minutes before now
    clock: Callable[[], int] = time.time_ns
    figures: dict[tuple[str, str], TenantFigures] = field(default_factory=dict)
    keep: int = 10  # lowest devices written per tenant, kind and hour
    _done: int | None = None  # minutes before this (ns) are counted
    # Each device ever counted here, (tenant, kind, device_id), by slot: the hours' sums are
    # columns indexed by slot.
    _slots: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _keys: list[tuple[str, str, str]] = field(default_factory=list)
    _hours: dict[int, HourSums] = field(default_factory=dict)  # by the hour's start (ns)

    async def tick(self) -> int:
        """Count the minutes that closed since the last tick; returns how many."""
        ripe = self.clock() - int(self.grace_s * 1e9)
        due = ripe - ripe % WIDTH_NS
        done = self._done if self._done is not None else due - self.first_windows * WIDTH_NS
        if done >= due or not self.kinds:
            return 0
        # Every kind counted before any is added up: a failure retries the whole tick, and
        # nothing is added twice.
        every = [
            await rebuild_completeness(self.client, self.writer, kind, done, due)
            for kind in self.kinds
        ]
        for counted in every:
            self._observe(counted.totals())
            self._tally(counted)
        self._done = due
        await self._write_counted_hours(due)
        return (due - done) // WIDTH_NS

    def _slot(self, key: tuple[str, str, str]) -> int:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self._keys)
            self._keys.append(key)
        return slot

    def _tally(self, counted: Counted) -> None:
        """Add a count's rows to the sums of the hours they fall in."""
        c = counted.counts
        if len(c) == 0:
            return
        kind = counted.kind
        slot_of = np.fromiter(
            (self._slot((tenant, kind, device_id)) for tenant, device_id in counted.devices),
            dtype=np.int64,
            count=len(counted.devices),
        )
        slots = slot_of[c.device]
        hours = c.window_start_ns - c.window_start_ns % HOUR_NS
        for hour in np.unique(hours).tolist():
            inside = hours == hour
            sums = self._hours.setdefault(hour, HourSums())
            sums.add(slots[inside], c.received[inside], c.expected[inside], len(self._keys))

    def _lowest_lines(self, hour: int) -> list[str]:
        """The rows of an hour's lowest devices; forgets its sums."""
        sums = self._hours.pop(hour)
        lossy = np.flatnonzero(sums.received < sums.expected).tolist()
        found = [
            DeviceShortfall(*self._keys[i], int(sums.received[i]), int(sums.expected[i]))
            for i in lossy
        ]
        return lowest_lines(hour, found, self.keep)

    async def _write_counted_hours(self, done: int) -> None:
        for hour in sorted(h for h in self._hours if h + HOUR_NS <= done):
            lines = self._lowest_lines(hour)
            if lines:
                outcome = await self.writer.write(lines, retention_policy=rollup_policy("1h"))
                for _line, why in outcome.refused:
                    log.error("InfluxDB refused a lowest-completeness row: %s", why)

    def _observe(self, totals: Iterable[TenantTotals]) -> None:
        for total in totals:
            figures = self.figures.setdefault((total.tenant, total.kind), TenantFigures())
            figures.received += total.received
            figures.expected += total.expected
            figures.last_ratio = total.received / total.expected if total.expected else 1.0
            if total.received < total.expected:
                log.warning(
                    "%s/%s: %d of %d readings expected from seq arrived; the rest were lost "
                    "before ingest (check the broker's queue limits and persistence)",
                    total.tenant,
                    total.kind,
                    total.received,
                    total.expected,
                )


def completeness_metrics(
    jobs: Iterable[CompletenessJob],
) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Prometheus families of the first-pass counts, per tenant and kind."""
    received = CounterMetricFamily(
        "lantaarn_completeness_received_readings",
        "Readings stored, counted once per distinct seq of a device, in counted minutes",
        labels=["tenant", "kind"],
    )
    expected = CounterMetricFamily(
        "lantaarn_completeness_expected_readings",
        "Readings the devices' seq numbers say were sent, in counted minutes",
        labels=["tenant", "kind"],
    )
    missing = CounterMetricFamily(
        "lantaarn_completeness_missing_readings",
        "Readings sent (by seq) that never reached storage, in counted minutes",
        labels=["tenant", "kind"],
    )
    ratio = GaugeMetricFamily(
        "lantaarn_completeness_ratio",
        "Readings received / expected in the newest counted minute (1 when none expected)",
        labels=["tenant", "kind"],
    )
    for job in jobs:
        for (tenant, kind), figures in sorted(job.figures.items()):
            received.add_metric([tenant, kind], figures.received)
            expected.add_metric([tenant, kind], figures.expected)
            missing.add_metric([tenant, kind], figures.expected - figures.received)
            ratio.add_metric([tenant, kind], figures.last_ratio)
    yield from (received, expected, missing, ratio)
