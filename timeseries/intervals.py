"""Aggregates over intervals for the API: from stored rollups where they cover, raw elsewhere.

The stored rollups and answers from raw readings use the same numpy functions
(timeseries.aggregate). A range is answered from rollups for the windows they are known to
cover (timeseries.rollups.Coverage) and from raw readings for the rest (typically the last
minutes, not rolled up yet); the rows of both are merged per interval.

For whole tenants (or every tenant), the rollup part may be read from the fleet rollups instead
(one row per tenant and window, timeseries.rollups.fleet_lines) where they are known complete:
the same answer, but for `last`, at a cost that does not grow with the number of devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from devices import DEVICE_KINDS
from timeseries.aggregate import F64, I64, STATS, Windows, aggregate, merge
from timeseries.client import InfluxClient
from timeseries.queries import read_rollups
from timeseries.rollups import CONTEXT_NS, Coverage, fleet_stats, read_coverage, read_raw, window_ns
from timeseries.schema import fleet_progress_window
from timeseries.selection import Selection

NS = 1_000_000_000
# Which stored rollup an interval is built from.
BASE = {"1m": "1m", "15m": "1m", "1h": "1h", "1d": "1h"}
Source = Literal["rollup", "raw", "rollup+raw"]


@dataclass(frozen=True, slots=True)
class IntervalRows:
    """Aggregates per interval: starts and ends (ns), statistics, and where they came from."""

    starts: list[int]
    ends: list[int]
    stats: dict[str, list[float]]
    source: Source


def whole_hour_zone(zone: ZoneInfo, start_ns: int, end_ns: int) -> bool:
    """Whether the zone's offset is whole hours over the range (days are then made of hours)."""
    moments = (start_ns, end_ns, (start_ns + end_ns) // 2)
    offsets = [datetime.fromtimestamp(t / NS, zone).utcoffset() for t in moments]
    return all(o is not None and o % timedelta(hours=1) == timedelta(0) for o in offsets)


def _local_day_starts(starts_ns: I64, zone: ZoneInfo) -> I64:
    """The start (ns, UTC) of the local calendar day holding each time."""
    out = np.empty(starts_ns.shape[0], dtype=np.int64)
    cache: dict[int, int] = {}
    for i, ts in enumerate(starts_ns.tolist()):
        hour = ts // (3600 * NS)
        if hour not in cache:
            local = datetime.fromtimestamp(ts / NS, zone)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            cache[hour] = int(midnight.timestamp()) * NS
        out[i] = cache[hour]
    return out


def _next_local_day(start_ns: int, zone: ZoneInfo) -> int:
    local = datetime.fromtimestamp(start_ns / NS, zone)
    following = (local + timedelta(days=1, hours=3)).replace(hour=0, minute=0, second=0)
    return int(following.timestamp()) * NS


def bucket_bounds(start_ns: int, end_ns: int, interval: str, zone: ZoneInfo | None) -> int:
    """How many intervals [start, end) spans (for limits)."""
    if interval == "1d" and zone is not None:
        return max(1, (end_ns - start_ns) // (86400 * NS) + 1)
    return max(1, -(-(end_ns - start_ns) // window_ns(interval)))


def _empty(names: Sequence[str]) -> IntervalRows:
    return IntervalRows([], [], {name: [] for name in names}, "raw")


async def interval_aggregates(
    client: InfluxClient,
    kind: str,
    metric: str,
    devices: Selection,
    start_ns: int,
    end_ns: int,
    interval: str,
    zone: ZoneInfo | None = None,
    *,
    fleet: bool = False,
) -> IntervalRows:
    """Aggregates of one metric per interval in [start, end), over the selected devices.

    `fleet`: read the fleet rollups where they cover the start (whole tenants only; the
    answer's `last` is then NaN), the device rollups where they do not.
    """
    if fleet and devices.device_ids is not None:
        raise ValueError("fleet rollups answer for whole tenants, not for devices by id")
    aggregation = DEVICE_KINDS[kind].metric(metric).aggregation  # type: ignore[union-attr]
    names = STATS[aggregation]
    if devices.nothing:
        return _empty(names)
    base = BASE[interval]
    base_width = window_ns(base)
    local_days = interval == "1d" and zone is not None and zone.key != "UTC"
    align = base_width if local_days else window_ns(interval)
    # Whole intervals only, so rollups and raw readings cover the same time.
    start_ns -= start_ns % align
    end_ns += -end_ns % align
    known = await read_coverage(client, kind)
    coverage = known.get((kind, base))
    if fleet:
        # Where both the fleet and the device rollups are known complete, never more.
        both = known.get((kind, fleet_progress_window(base)))
        if both is not None and coverage is not None:
            both = Coverage(max(coverage.since, both.since), min(coverage.done, both.done))
        if both is None or coverage is None or not both.since <= start_ns < both.done:
            fleet = False  # they do not reach back to the start: the device rollups answer
        else:
            coverage = both
    rolled_end = start_ns
    if coverage is not None and coverage.since <= start_ns < coverage.done:
        rolled_end = min(end_ns, coverage.done)
    parts: list[tuple[I64, I64, dict[str, F64]]] = []
    if rolled_end > start_ns:
        stored = fleet_stats(kind, metric) if fleet else names
        owners, rows = await read_rollups(
            client, kind, base, metric, stored, start_ns, rolled_end, devices, fleet=fleet
        )
        index = {d: i for i, d in enumerate(dict.fromkeys(owners))}
        columns = {
            name: np.array(
                [np.nan if r[i + 1] is None else float(r[i + 1]) for r in rows],  # type: ignore[arg-type]
                dtype=np.float64,
            )
            for i, name in enumerate(stored)
        }
        parts.append(
            (
                np.array([index[o] for o in owners], dtype=np.int64),
                np.array([int(r[0]) for r in rows], dtype=np.int64),  # type: ignore[call-overload]
                {name: columns.get(name, np.full(len(rows), np.nan)) for name in names},
            )
        )
    if rolled_end < end_ns:
        samples = await read_raw(
            client,
            kind,
            rolled_end - max(CONTEXT_NS, base_width),
            end_ns,
            devices=devices,
            metrics=[metric],
        )
        # Alone, raw readings are aggregated per interval directly; beside rollups, per base
        # window like the rollups, so that both merge into the same intervals.
        width = base_width if (local_days or rolled_end > start_ns) else window_ns(interval)
        groups = aggregate(
            aggregation,
            samples.series[metric],
            samples.ts_ns[metric],
            samples.values[metric],
            Windows(rolled_end, width),
        )
        keep = groups.window_start_ns < end_ns
        parts.append(
            (
                # Raw series numbers must not collide with the rollups' device numbers.
                groups.series[keep] + 1_000_000,
                groups.window_start_ns[keep],
                {name: column[keep] for name, column in groups.stats.items()},
            )
        )
    source: Source = (
        "rollup+raw" if len(parts) == 2 else "rollup" if rolled_end > start_ns else "raw"
    )
    series = np.concatenate([p[0] for p in parts])
    times = np.concatenate([p[1] for p in parts])
    stats = {name: np.concatenate([p[2][name] for p in parts]) for name in names}
    order = np.lexsort((times, series))  # rows in time order within a bucket, for `last`
    series, times = series[order], times[order]
    stats = {name: column[order] for name, column in stats.items()}
    if local_days:
        assert zone is not None
        buckets = _local_day_starts(times, zone)
    else:
        width = window_ns(interval)
        buckets = times - (times - start_ns) % width
    # One row per interval, across devices (and across the base windows inside it).
    keys, merged = merge(aggregation, buckets.astype(np.int64), stats)
    starts = [int(k) for k in keys]
    if local_days:
        assert zone is not None
        ends = [_next_local_day(s, zone) for s in starts]
    else:
        ends = [s + window_ns(interval) for s in starts]
    return IntervalRows(starts, ends, {name: merged[name].tolist() for name in names}, source)
