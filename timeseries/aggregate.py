"""Aggregation of readings over UTC-aligned windows, vectorised with numpy.

One function per aggregation kind of the catalogue. Each takes samples of one metric from many
series (devices) and windows at once and reduces them by (series, window) group without a Python
loop per reading. The same functions compute rollups in the ingest workers and answers from raw
readings in the API, so both always agree.

Definitions (what a rollup of a window means):
- gauge: count, mean, min, max, and the population standard deviation.
- level_db: count, min, max and the energetic mean 10*log10(mean(10^(L/10))).
- angle: count, the circular mean in degrees [0, 360) and the mean resultant length r (0..1).
- counter: count, last value, and the increase: the sum of the rises between a series'
  consecutive readings whose later reading lies in the window; a fall is a reset, after which
  the new value itself counts as the rise.
- state: count, last value, and share_on: of the time in the window covered by a known value
  (a value holds until the next reading or the window's end), the share with value >= 0.5.

Samples before the first window (window index < 0) are context only: they give the counter's
previous value and the state held at the window's start, and produce no rollup of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from devices import Aggregation

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

STATS: dict[Aggregation, tuple[str, ...]] = {
    Aggregation.GAUGE: ("count", "mean", "min", "max", "stddev"),
    Aggregation.LEVEL_DB: ("count", "energetic_mean", "min", "max"),
    Aggregation.ANGLE: ("count", "circular_mean", "r"),
    Aggregation.COUNTER: ("count", "increase", "last"),
    Aggregation.STATE: ("count", "share_on", "covered_s", "last"),
}


@dataclass(frozen=True, slots=True)
class Windows:
    """UTC-aligned windows of `width_ns` starting at `start_ns` (a multiple of the width)."""

    start_ns: int
    width_ns: int


@dataclass(frozen=True, slots=True)
class Groups:
    """The result of one aggregation: per group its series, window start and statistics."""

    series: I64
    window_start_ns: I64
    stats: dict[str, F64]

    def __len__(self) -> int:
        return int(self.series.shape[0])


def _empty(kind: Aggregation) -> Groups:
    return Groups(
        np.empty(0, np.int64),
        np.empty(0, np.int64),
        {name: np.empty(0, np.float64) for name in STATS[kind]},
    )


def aggregate(kind: Aggregation, series: I64, ts_ns: I64, values: F64, windows: Windows) -> Groups:
    """Reduce samples (series index, time in ns, value) to one row per (series, window)."""
    if series.shape[0] == 0:
        return _empty(kind)
    window = np.floor_divide(ts_ns - windows.start_ns, windows.width_ns)
    order = np.lexsort((ts_ns, series))  # by series, then time: windows follow in time order
    series, ts_ns, values, window = series[order], ts_ns[order], values[order], window[order]
    # Group starts: wherever series or window changes.
    change = np.empty(series.shape[0], dtype=bool)
    change[0] = True
    change[1:] = (series[1:] != series[:-1]) | (window[1:] != window[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], series.shape[0])  # exclusive
    count = (ends - starts).astype(np.float64)
    group_series = series[starts]
    group_window = window[starts]
    # The previous sample of the same series (for counters and states), or -1.
    same_series_prev = np.empty(series.shape[0], dtype=bool)
    same_series_prev[0] = False
    same_series_prev[1:] = series[1:] == series[:-1]

    stats: dict[str, F64]
    if kind is Aggregation.GAUGE:
        total = np.add.reduceat(values, starts)
        mean = total / count
        deviation = values - np.repeat(mean, ends - starts)
        stats = {
            "count": count,
            "mean": mean,
            "min": np.minimum.reduceat(values, starts),
            "max": np.maximum.reduceat(values, starts),
            "stddev": np.sqrt(np.add.reduceat(deviation * deviation, starts) / count),
        }
    elif kind is Aggregation.LEVEL_DB:
        energy = np.add.reduceat(np.power(10.0, values / 10.0), starts) / count
        stats = {
            "count": count,
            "energetic_mean": 10.0 * np.log10(energy),
            "min": np.minimum.reduceat(values, starts),
            "max": np.maximum.reduceat(values, starts),
        }
    elif kind is Aggregation.ANGLE:
        radians = np.deg2rad(values)
        sin = np.add.reduceat(np.sin(radians), starts)
        cos = np.add.reduceat(np.cos(radians), starts)
        stats = {
            "count": count,
            "circular_mean": np.mod(np.rad2deg(np.arctan2(sin, cos)), 360.0),
            "r": np.hypot(sin, cos) / count,
        }
    elif kind is Aggregation.COUNTER:
        rise = np.zeros(values.shape[0], dtype=np.float64)
        step = values[1:] - values[:-1]
        # A fall means the device restarted counting: the new value is the whole rise.
        rise[1:] = np.where(step >= 0, step, values[1:])
        rise[~same_series_prev] = 0.0  # a series' first sample has nothing to rise from
        stats = {
            "count": count,
            "increase": np.add.reduceat(rise, starts),
            "last": values[ends - 1],
        }
    else:  # STATE
        window_start = windows.start_ns + window * windows.width_ns
        window_end = window_start + windows.width_ns
        next_ts = np.empty(ts_ns.shape[0], dtype=np.int64)
        next_ts[:-1] = ts_ns[1:]
        next_ts[-1] = np.iinfo(np.int64).max
        last_of_series = np.ones(ts_ns.shape[0], dtype=bool)
        last_of_series[:-1] = series[1:] != series[:-1]
        next_ts[last_of_series] = np.iinfo(np.int64).max
        held = (np.minimum(next_ts, window_end) - ts_ns).astype(np.float64)
        on = values >= 0.5
        # Lead-in: from the window's start to its first sample, the series' previous value holds.
        first = starts
        has_prev = same_series_prev[first]
        lead = np.where(has_prev, (ts_ns[first] - window_start[first]).astype(np.float64), 0.0)
        lead_on = np.where(has_prev, on[np.maximum(first - 1, 0)], False)
        covered = np.add.reduceat(held, starts) + lead
        on_time = np.add.reduceat(np.where(on, held, 0.0), starts) + np.where(lead_on, lead, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(covered > 0, on_time / covered, np.nan)
        stats = {
            "count": count,
            "share_on": share,
            "covered_s": covered / 1e9,
            "last": values[ends - 1],
        }

    keep = group_window >= 0
    return Groups(
        group_series[keep],
        (windows.start_ns + group_window[keep] * windows.width_ns).astype(np.int64),
        {name: array[keep] for name, array in stats.items()},
    )


def merge(kind: Aggregation, bucket: I64, stats: dict[str, F64]) -> tuple[I64, dict[str, F64]]:
    """Combine rows of statistics (e.g. 1-minute rollups) into buckets (e.g. 15 minutes).

    `bucket` gives each row's bucket; rows must be in time order within a bucket (for `last`).
    The result equals aggregating the underlying readings per bucket directly (checked in the
    tests), except for a state's share of time on: a state held through windows without readings
    has no rows there, so the merged share is over the time the rows cover.
    """
    if bucket.shape[0] == 0:
        return bucket, {name: np.empty(0, np.float64) for name in STATS[kind]}
    order = np.argsort(bucket, kind="stable")
    bucket = bucket[order]
    stats = {name: column[order] for name, column in stats.items()}
    change = np.empty(bucket.shape[0], dtype=bool)
    change[0] = True
    change[1:] = bucket[1:] != bucket[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], bucket.shape[0])
    n = stats["count"]
    total = np.add.reduceat(n, starts)
    out: dict[str, F64] = {"count": total}
    if kind is Aggregation.GAUGE:
        mean = np.add.reduceat(n * stats["mean"], starts) / total
        spread = n * (stats["stddev"] ** 2 + (stats["mean"] - np.repeat(mean, ends - starts)) ** 2)
        out |= {
            "mean": mean,
            "min": np.minimum.reduceat(stats["min"], starts),
            "max": np.maximum.reduceat(stats["max"], starts),
            "stddev": np.sqrt(np.add.reduceat(spread, starts) / total),
        }
    elif kind is Aggregation.LEVEL_DB:
        energy = np.add.reduceat(n * np.power(10.0, stats["energetic_mean"] / 10.0), starts)
        out |= {
            "energetic_mean": 10.0 * np.log10(energy / total),
            "min": np.minimum.reduceat(stats["min"], starts),
            "max": np.maximum.reduceat(stats["max"], starts),
        }
    elif kind is Aggregation.ANGLE:
        radians = np.deg2rad(stats["circular_mean"])
        weight = n * stats["r"]
        sin = np.add.reduceat(weight * np.sin(radians), starts)
        cos = np.add.reduceat(weight * np.cos(radians), starts)
        out |= {
            "circular_mean": np.mod(np.rad2deg(np.arctan2(sin, cos)), 360.0),
            "r": np.hypot(sin, cos) / total,
        }
    elif kind is Aggregation.COUNTER:
        out |= {
            "increase": np.add.reduceat(stats["increase"], starts),
            "last": stats["last"][ends - 1],
        }
    else:
        covered = stats["covered_s"]
        share = np.nan_to_num(stats["share_on"])
        total_covered = np.add.reduceat(covered, starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out |= {
                "share_on": np.where(
                    total_covered > 0,
                    np.add.reduceat(share * covered, starts) / total_covered,
                    np.nan,
                ),
                "covered_s": total_covered,
                "last": stats["last"][ends - 1],
            }
    return bucket[starts], out
