"""Per-device statistics over a sliding window, from rollups plus the minutes not rolled up yet.

The same metric-aware functions as the aggregates (timeseries.aggregate): stored 1-minute
rollups of the window are merged per device with `merge`; the minutes after the rollups'
coverage (typically the last one or two) are aggregated from raw readings with `aggregate`
first, exactly as the intervals of the API do. So a rule's "1-hour mean of pm25" is the
aggregate the API would answer for that device and hour, and the evaluator never reads a whole
raw range. `last` is the device's latest reading (latest state), within the window.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from devices import DEVICE_KINDS, Aggregation
from devices.alert_rules import WINDOWS
from timeseries.aggregate import F64, I64, STATS, Windows, aggregate, merge
from timeseries.client import InfluxClient
from timeseries.queries import latest_readings, read_rollups
from timeseries.rollups import CONTEXT_NS, read_coverage, read_raw, window_ns
from timeseries.schema import raw_measurement
from timeseries.selection import Selection

NS = 1_000_000_000
_MINUTE = window_ns("1m")
KEEP_NS = max(WINDOWS.values()) * NS  # the longest window a rule may use


class MinuteRollups:
    """The 1-minute rollups of one kind's metric, kept between rounds by minute, so that each
    round reads only the minutes rolled up since the last (a 1-hour window is 60 minutes of
    every device once, then one minute per round).

    A minute is read once: a rollup rebuilt later (after late readings) is not read again
    while it stays in the window. Minutes older than the longest window rules use are dropped.
    """

    def __init__(self, kind: str, metric: str) -> None:
        found = DEVICE_KINDS[kind].metric(metric)
        if found is None:
            raise ValueError(f"kind {kind!r} has no metric {metric!r}")
        self.kind = kind
        self.metric = metric
        self.names = STATS[found.aggregation]
        self._selection: Selection | None = None
        self._lock = asyncio.Lock()
        # minute start (ns) -> (device id per row, statistic columns)
        self._minutes: dict[int, tuple[list[str], dict[str, F64]]] = {}

    async def rows(
        self, client: InfluxClient, devices: Selection, start_ns: int, end_ns: int
    ) -> tuple[list[str], I64, dict[str, F64]]:
        """Rollup rows of the minutes in [start, end): owners, minute starts, statistics."""
        # Rules of several windows share this cache, their rounds at once: one reads, the others
        # wait and find their minutes there; only minutes older than the longest window go.
        async with self._lock:
            if devices != self._selection:
                self._minutes.clear()
                self._selection = devices
            horizon = end_ns - KEEP_NS - _MINUTE
            for minute in [m for m in self._minutes if m < horizon]:
                del self._minutes[minute]
            missing = [m for m in range(start_ns, end_ns, _MINUTE) if m not in self._minutes]
            if missing:
                await self._read(client, devices, missing[0], end_ns)
        owners: list[str] = []
        times: list[I64] = []
        columns: dict[str, list[F64]] = {name: [] for name in self.names}
        for minute in range(start_ns, end_ns, _MINUTE):
            ids, stats = self._minutes[minute]
            owners += ids
            times.append(np.full(len(ids), minute, dtype=np.int64))
            for name in self.names:
                columns[name].append(stats[name])
        return (
            owners,
            np.concatenate(times) if times else np.empty(0, np.int64),
            {
                name: np.concatenate(parts) if parts else np.empty(0, np.float64)
                for name, parts in columns.items()
            },
        )

    async def _read(
        self, client: InfluxClient, devices: Selection, start_ns: int, end_ns: int
    ) -> None:
        owners, rows = await read_rollups(
            client, self.kind, "1m", self.metric, self.names, start_ns, end_ns, devices
        )
        by_minute: dict[int, list[int]] = {m: [] for m in range(start_ns, end_ns, _MINUTE)}
        for at, row in enumerate(rows):
            by_minute.setdefault(int(row[0]), []).append(at)  # type: ignore[call-overload]
        for minute, positions in by_minute.items():
            self._minutes[minute] = (
                [owners[i] for i in positions],
                {
                    name: np.array(
                        [
                            np.nan if rows[i][k + 1] is None else float(rows[i][k + 1])  # type: ignore[arg-type]
                            for i in positions
                        ],
                        dtype=np.float64,
                    )
                    for k, name in enumerate(self.names)
                },
            )


@dataclass(frozen=True, slots=True)
class WindowStatistics:
    """One statistic per device id, and how many minutes came from raw readings."""

    values: dict[str, float]
    raw_minutes: int


async def device_statistics(
    client: InfluxClient,
    kind: str,
    metric: str,
    statistic: str,
    window_s: int,
    now_ns: int,
    devices: Selection,
    cache: MinuteRollups | None = None,
) -> WindowStatistics:
    """`statistic` of `metric` per selected device over [now - window, now); `cache` keeps
    the 1-minute rollups already read (the evaluator's, between rounds)."""
    found = DEVICE_KINDS[kind].metric(metric)
    if found is None:
        raise ValueError(f"kind {kind!r} has no metric {metric!r}")
    start_ns = now_ns - window_s * NS
    if devices.nothing:
        return WindowStatistics({}, 0)
    if statistic == "last":
        latest = await latest_readings(client, [raw_measurement(kind)], start_ns, devices)
        values = {d: r.metrics[metric] for d, r in latest.items() if metric in r.metrics}
        return WindowStatistics(values, 0)
    aggregation = found.aggregation
    names = STATS[aggregation]
    start_ns -= start_ns % _MINUTE  # whole minutes: the rollups' grid
    coverage = (await read_coverage(client, kind, "1m")).get((kind, "1m"))
    rolled_end = start_ns
    if coverage is not None and coverage.since <= start_ns < coverage.done:
        rolled_end = min(coverage.done, now_ns - now_ns % _MINUTE)
    index: dict[str, int] = {}
    parts: list[tuple[I64, I64, dict[str, F64]]] = []
    if rolled_end > start_ns:
        if cache is None:
            cache = MinuteRollups(kind, metric)
        owners, times, stats = await cache.rows(client, devices, start_ns, rolled_end)
        parts.append(
            (
                np.array([index.setdefault(o, len(index)) for o in owners], dtype=np.int64),
                times,
                stats,
            )
        )
    # Counters and states need the reading before the first window; levels and gauges do not.
    context = CONTEXT_NS if aggregation in (Aggregation.COUNTER, Aggregation.STATE) else 0
    samples = await read_raw(
        client, kind, rolled_end - context, now_ns, devices=devices, metrics=[metric]
    )
    groups = aggregate(
        aggregation,
        samples.series[metric],
        samples.ts_ns[metric],
        samples.values[metric],
        Windows(rolled_end, _MINUTE),
    )
    remap = np.array(
        [index.setdefault(device_id, len(index)) for _tenant, device_id in samples.devices] or [0],
        dtype=np.int64,
    )
    parts.append((remap[groups.series], groups.window_start_ns, groups.stats))
    series = np.concatenate([p[0] for p in parts])
    if series.shape[0] == 0:
        return WindowStatistics({}, (now_ns - rolled_end) // _MINUTE)
    times = np.concatenate([p[1] for p in parts])
    stats = {name: np.concatenate([p[2][name] for p in parts]) for name in names}
    order = np.lexsort((times, series))  # time order within a device, for `last`
    keys, merged = merge(
        aggregation, series[order], {name: column[order] for name, column in stats.items()}
    )
    ids = {number: device_id for device_id, number in index.items()}
    column = merged[statistic]
    values = {ids[int(k)]: float(v) for k, v in zip(keys.tolist(), column.tolist(), strict=True)}
    return WindowStatistics(
        {d: v for d, v in values.items() if np.isfinite(v)},
        int((now_ns - rolled_end) // _MINUTE),
    )
