"""Computing rollups from raw readings and storing them: one measurement per kind and window.

A rollup row: measurement `{kind}_{window}` in retention policy `rollup_{window}`, tags `tenant`
and `device_id`, fields `{metric}_{stat}` (see timeseries.aggregate.STATS), time = window start.
Rollups are recomputed from the stored raw readings of closed windows, so a rollup always
equals the aggregation of the raw readings of its window, however many workers stored them,
in whatever order, and with whatever redeliveries.

Fleet rollups: measurement `{kind}_fleet_{window}` in the same policy, tag `tenant`, the same
fields but `last`: the device rows of a window merged per tenant (timeseries.aggregate.merge),
computed from the device rows as they are written, so no second pass over raw readings. Merging
them again (across tenants and windows) gives what merging the device rows gives: count, sums
(a gauge's mean and spread, a decibel's energy, an angle's vector, a counter's increase, a
state's time on) and extremes all combine; `last` (which device is "last") does not, and is left
to the device rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from devices import DEVICE_KINDS
from timeseries.aggregate import F64, I64, STATS, Groups, Windows, aggregate, merge
from timeseries.client import InfluxClient, Series
from timeseries.completeness import rebuild_completeness
from timeseries.lineprotocol import series_key
from timeseries.schema import (
    COMPLETENESS_WINDOW,
    RAW_RP,
    ROLLUP_PROGRESS,
    fleet_rollup_measurement,
    quote_ident,
    raw_measurement,
    rollup_measurement,
    rollup_policy,
)
from timeseries.selection import Selection
from timeseries.writer import BatchWriter

log = logging.getLogger(__name__)

NS = 1_000_000_000
WINDOW_SECONDS = {"1m": 60, "15m": 900, "1h": 3600, "1d": 86400}
# How far before a window to look for a counter's previous value or a state's held value.
CONTEXT_NS = 1800 * NS


@dataclass(frozen=True, slots=True)
class SeriesSamples:
    """Raw samples of one measurement, column-wise: device per sample, times, values per metric."""

    devices: list[tuple[str, str]]  # (tenant, device_id) per series index
    series: dict[str, I64]  # metric -> series index per sample
    ts_ns: dict[str, I64]
    values: dict[str, F64]


def window_ns(window: str) -> int:
    """The width of a named window (`1m`, `15m`, `1h`, `1d`) in ns."""
    return WINDOW_SECONDS[window] * NS


def columns_of(results: Sequence[Series], metrics: Sequence[str]) -> SeriesSamples:
    """Turn query series (one per device, grouped by tenant and device_id) into numpy columns."""
    devices: list[tuple[str, str]] = []
    parts: dict[str, tuple[list[int], list[int], list[float]]] = {m: ([], [], []) for m in metrics}
    for index, result in enumerate(results):
        devices.append((result.tags.get("tenant", ""), result.tags.get("device_id", "")))
        time_at = result.columns.index("time")
        positions = {m: result.columns.index(m) for m in metrics if m in result.columns}
        for metric, at in positions.items():
            s, t, v = parts[metric]
            for row in result.values:
                value = row[at]
                if value is not None:
                    s.append(index)
                    t.append(row[time_at])
                    v.append(value)
    return SeriesSamples(
        devices,
        {m: np.asarray(p[0], dtype=np.int64) for m, p in parts.items()},
        {m: np.asarray(p[1], dtype=np.int64) for m, p in parts.items()},
        {m: np.asarray(p[2], dtype=np.float64) for m, p in parts.items()},
    )


async def read_raw(
    client: InfluxClient,
    kind: str,
    start_ns: int,
    end_ns: int,
    *,
    devices: Selection | None = None,
    metrics: Sequence[str] | None = None,
) -> SeriesSamples:
    """Raw samples of a kind in [start, end), grouped by device; all metrics unless named;
    of the selected devices (all when None)."""
    names = list(metrics or [m.name for m in DEVICE_KINDS[kind].metrics])
    fields = ", ".join(quote_ident(m) for m in names)
    statements = [
        f"SELECT {fields} FROM {quote_ident(RAW_RP)}.{quote_ident(raw_measurement(kind))} "  # noqa: S608
        f"WHERE time >= {int(start_ns)} AND time < {int(end_ns)}{where} "
        'GROUP BY "tenant", "device_id"'
        for where in (devices or Selection()).conditions()
    ]
    if not statements:
        return columns_of([], names)
    results = await client.query(statements)
    return columns_of([series for result in results for series in result], names)


def roll(kind: str, samples: SeriesSamples, windows: Windows) -> dict[str, Groups]:
    """Aggregate every metric of a kind's samples over the windows."""
    out: dict[str, Groups] = {}
    device_kind = DEVICE_KINDS[kind]
    for metric in device_kind.metrics:
        if metric.name not in samples.series:
            continue
        out[metric.name] = aggregate(
            metric.aggregation,
            samples.series[metric.name],
            samples.ts_ns[metric.name],
            samples.values[metric.name],
            windows,
        )
    return out


def rollup_lines(
    kind: str, window: str, samples: SeriesSamples, groups: dict[str, Groups]
) -> list[str]:
    """Line protocol for rollup rows: one line per (device, window), a field per metric stat."""
    rows: dict[tuple[int, int], list[str]] = {}
    for metric, result in groups.items():
        names = STATS[DEVICE_KINDS[kind].metric(metric).aggregation]  # type: ignore[union-attr]
        columns = [result.stats[name] for name in names]
        for i in range(len(result)):
            key = (int(result.series[i]), int(result.window_start_ns[i]))
            fields = rows.setdefault(key, [])
            for name, column in zip(names, columns, strict=True):
                value = float(column[i])
                if name == "count":
                    fields.append(f"{metric}_count={int(value)}i")
                elif np.isfinite(value):
                    fields.append(f"{metric}_{name}={value!r}")
    measurement = rollup_measurement(kind, window)
    keys = {
        index: series_key(measurement, {"tenant": tenant, "device_id": device_id})
        for index, (tenant, device_id) in enumerate(samples.devices)
    }
    return [f"{keys[s]} {','.join(fields)} {t}" for (s, t), fields in rows.items() if fields]


def fleet_stats(kind: str, metric: str) -> tuple[str, ...]:
    """The statistics a fleet rollup row keeps of a metric (all but `last`)."""
    aggregation = DEVICE_KINDS[kind].metric(metric).aggregation  # type: ignore[union-attr]
    return tuple(name for name in STATS[aggregation] if name != "last")


def fleet_lines(
    kind: str, window: str, samples: SeriesSamples, groups: dict[str, Groups]
) -> list[str]:
    """Line protocol for fleet rollup rows: one line per (tenant, window), merged device rows."""
    tenants = sorted({tenant for tenant, _ in samples.devices})
    tenant_at = {tenant: n for n, tenant in enumerate(tenants)}
    device_tenant = np.array(
        [tenant_at[tenant] for tenant, _ in samples.devices] or [0], dtype=np.int64
    )
    width = window_ns(window)
    rows: dict[tuple[int, int], list[str]] = {}
    for metric, result in groups.items():
        if len(result) == 0:
            continue
        aggregation = DEVICE_KINDS[kind].metric(metric).aggregation  # type: ignore[union-attr]
        first = int(result.window_start_ns.min())
        # One bucket per (window, tenant): window number times tenants plus the tenant.
        bucket = (result.window_start_ns - first) // width * len(tenants) + device_tenant[
            result.series
        ]
        keys, merged = merge(aggregation, bucket.astype(np.int64), result.stats)
        for i, key in enumerate(keys.tolist()):
            window_number, tenant = divmod(int(key), len(tenants))
            fields = rows.setdefault((tenant, first + window_number * width), [])
            for name in fleet_stats(kind, metric):
                value = float(merged[name][i])
                if name == "count":
                    fields.append(f"{metric}_count={int(value)}i")
                elif np.isfinite(value):
                    fields.append(f"{metric}_{name}={value!r}")
    measurement = fleet_rollup_measurement(kind, window)
    keys_of = {n: series_key(measurement, {"tenant": tenant}) for n, tenant in enumerate(tenants)}
    return [f"{keys_of[s]} {','.join(fields)} {t}" for (s, t), fields in rows.items() if fields]


async def rebuild(
    client: InfluxClient,
    writer: BatchWriter,
    kind: str,
    window: str,
    start_ns: int,
    end_ns: int,
) -> int:
    """Recompute and store the rollups of whole windows in [start, end); returns rows written."""
    width = window_ns(window)
    start_ns -= start_ns % width
    end_ns -= end_ns % width
    if end_ns <= start_ns:
        return 0
    samples = await read_raw(client, kind, start_ns - max(CONTEXT_NS, width), end_ns)
    groups = roll(kind, samples, Windows(start_ns, width))
    lines = rollup_lines(kind, window, samples, groups)
    # The fleet rows go with the device rows they merge, in one write.
    fleet = fleet_lines(kind, window, samples, groups)
    outcome = await writer.write(lines + fleet, retention_policy=rollup_policy(window))
    for _line, why in outcome.refused:
        log.error("InfluxDB refused a rollup row of %s/%s: %s", kind, window, why)
    if window == COMPLETENESS_WINDOW:  # counted again with the minute's rollup: see there
        await rebuild_completeness(client, writer, kind, start_ns, end_ns)
    return len(lines)


PROGRESS = ROLLUP_PROGRESS
PROGRESS_POLICY = rollup_policy("1h")  # kept for ever; one point per (kind, window), at time 0


@dataclass(frozen=True, slots=True)
class Coverage:
    """Rollups of a kind and window are complete for windows in [since, done) (ns)."""

    since: int
    done: int

    def covers(self, start_ns: int, end_ns: int) -> bool:
        """Whether every window of [start, end) is rolled up."""
        return self.since <= start_ns and end_ns <= self.done


def widened(old: Coverage | None, first_ns: int, last_ns: int) -> Coverage | None:
    """What is known complete once the windows of [first, last) were rebuilt: `old` widened when
    the two touch (or the rebuilt span when there was none); None when nothing changes (a span
    apart from `old` leaves a gap that may still lack rows)."""
    if last_ns <= first_ns:
        return None
    if old is None:
        return Coverage(first_ns, last_ns)
    if first_ns <= old.done and last_ns >= old.since:
        wider = Coverage(min(first_ns, old.since), max(last_ns, old.done))
        return wider if wider != old else None
    return None


def coverage_line(kind: str, window: str, coverage: Coverage) -> str:
    """The progress point of a kind and window (time 0: each write replaces the last)."""
    return f"{PROGRESS},kind={kind},window={window} done={coverage.done}i,since={coverage.since}i 0"


async def read_coverage(
    client: InfluxClient, kind: str | None = None, window: str | None = None
) -> dict[tuple[str, str], Coverage]:
    """How far rollups are complete, per (kind, window); one kind and window when named."""
    where = []
    params: dict[str, object] = {}
    if kind is not None:
        where.append('"kind" = $kind')
        params["kind"] = kind
    if window is not None:
        where.append('"window" = $window')
        params["window"] = window
    q = (
        f'SELECT last("done") AS done, last("since") AS since FROM '  # noqa: S608
        f"{quote_ident(PROGRESS_POLICY)}.{quote_ident(PROGRESS)}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + ' GROUP BY "kind", "window"'
    )
    out: dict[tuple[str, str], Coverage] = {}
    for series in (await client.query(q, params=params or None))[0]:
        for row in series.values:
            done = int(row[1])
            # Progress written before `since` existed: only what comes after is known good.
            since = done if row[2] is None else int(row[2])
            out[(series.tags.get("kind", ""), series.tags.get("window", ""))] = Coverage(
                since, done
            )
    return out


async def write_coverage(writer: BatchWriter, kind: str, window: str, coverage: Coverage) -> None:
    """Record how far the rollups of a kind and window are complete."""
    await writer.write([coverage_line(kind, window, coverage)], retention_policy=PROGRESS_POLICY)
