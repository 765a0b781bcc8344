"""Per-device statistics over a sliding window, from rollups plus the minutes not rolled up yet.

The same metric-aware functions as the aggregates (timeseries.aggregate): stored 1-minute
rollups of the window are merged per device with `merge`; the minutes after the rollups'
coverage (typically the last one or two) are aggregated from raw readings with `aggregate`
first, exactly as the intervals of the API do. So a rule's "1-hour mean of pm25" is the
aggregate the API would answer for that device and hour, and the evaluator never reads a whole
raw range. `last` is the device's latest reading (latest state), within the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices import DEVICE_KINDS, Aggregation
from timeseries.aggregate import F64, I64, STATS, Windows, aggregate, merge
from timeseries.client import InfluxClient
from timeseries.queries import latest_readings, read_rollups
from timeseries.rollups import CONTEXT_NS, read_coverage, read_raw, window_ns
from timeseries.schema import raw_measurement
from timeseries.selection import Selection

NS = 1_000_000_000
_MINUTE = window_ns("1m")


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
) -> WindowStatistics:
    """`statistic` of `metric` per selected device over [now - window, now)."""
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
        owners, rows = await read_rollups(
            client, kind, "1m", metric, names, start_ns, rolled_end, devices
        )
        parts.append(
            (
                np.array([index.setdefault(o, len(index)) for o in owners], dtype=np.int64),
                np.array([int(r[0]) for r in rows], dtype=np.int64),  # type: ignore[call-overload]
                {
                    name: np.array(
                        [np.nan if r[i + 1] is None else float(r[i + 1]) for r in rows],  # type: ignore[arg-type]
                        dtype=np.float64,
                    )
                    for i, name in enumerate(names)
                },
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
