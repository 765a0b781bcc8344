"""Aggregates over intervals for the API: from stored rollups where they cover the range, else raw.

The stored rollups and answers from raw readings use the same numpy functions
(timeseries.aggregate), so an answer does not depend on where it came from, except as noted
for a state's share of time on when hours are merged into days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from devices import DEVICE_KINDS, Aggregation
from timeseries.aggregate import I64, STATS, Windows, aggregate, merge
from timeseries.client import InfluxClient
from timeseries.queries import read_rollups, rollup_progress
from timeseries.rollups import CONTEXT_NS, read_raw, window_ns

NS = 1_000_000_000
INTERVALS = ("1m", "15m", "1h", "1d")
# Which stored rollup an interval is built from.
BASE = {"1m": "1m", "15m": "1m", "1h": "1h", "1d": "1h"}


@dataclass(frozen=True, slots=True)
class IntervalRows:
    """Aggregates per interval: starts and ends (ns), statistics, and where they came from."""

    starts: list[int]
    ends: list[int]
    stats: dict[str, list[float]]
    source: Literal["rollup", "raw"]


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


async def interval_aggregates(
    client: InfluxClient,
    kind: str,
    metric: str,
    device_ids: Sequence[str],
    start_ns: int,
    end_ns: int,
    interval: str,
    zone: ZoneInfo | None = None,
) -> IntervalRows:
    """Aggregates of one metric over the devices, per interval, in [start, end)."""
    aggregation = DEVICE_KINDS[kind].metric(metric).aggregation  # type: ignore[union-attr]
    names = STATS[aggregation]
    base = BASE[interval]
    base_width = window_ns(base)
    local_days = interval == "1d" and zone is not None and zone.key != "UTC"
    align = base_width if local_days else window_ns(interval)
    start_ns -= start_ns % align
    progress = await rollup_progress(client, kind, base)
    source: Literal["rollup", "raw"]
    if progress is not None and end_ns <= progress:
        source = "rollup"
        owners, rows = await read_rollups(
            client, kind, base, metric, names, start_ns, end_ns, device_ids
        )
        index = {d: i for i, d in enumerate(dict.fromkeys(owners))}
        series = np.array([index[o] for o in owners], dtype=np.int64)
        times = np.array([int(r[0]) for r in rows], dtype=np.int64)  # type: ignore[call-overload]
        stats = {
            name: np.array(
                [np.nan if r[i + 1] is None else float(r[i + 1]) for r in rows],  # type: ignore[arg-type]
                dtype=np.float64,
            )
            for i, name in enumerate(names)
        }
        order = np.lexsort((times, series))
        series, times = series[order], times[order]
        stats = {name: column[order] for name, column in stats.items()}
    else:
        source = "raw"
        samples = await read_raw(
            client,
            kind,
            start_ns - max(CONTEXT_NS, base_width),
            end_ns,
            device_ids=device_ids,
            metrics=[metric],
        )
        width = base_width if local_days else window_ns(interval)
        groups = aggregate(
            aggregation,
            samples.series[metric],
            samples.ts_ns[metric],
            samples.values[metric],
            Windows(start_ns, width),
        )
        keep = groups.window_start_ns < end_ns
        series, times = groups.series[keep], groups.window_start_ns[keep]
        stats = {name: column[keep] for name, column in groups.stats.items()}
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


def aggregation_of(kind: str, metric: str) -> Aggregation:
    """The aggregation kind of a metric of a device kind."""
    found = DEVICE_KINDS[kind].metric(metric)
    if found is None:
        raise KeyError(metric)
    return found.aggregation
