"""A plain, loop-by-loop reference of the rollup definitions, to check the numpy version against."""

from __future__ import annotations

import math
from collections import defaultdict

from devices import Aggregation

Sample = tuple[int, int, float]  # series, time (ns), value


def reference(
    kind: Aggregation, samples: list[Sample], start_ns: int, width_ns: int
) -> dict[tuple[int, int], dict[str, float]]:
    """(series, window start) -> statistics, computed one group at a time."""
    by_series: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for series, ts, value in samples:
        by_series[series].append((ts, value))
    out: dict[tuple[int, int], dict[str, float]] = {}
    for series, points in by_series.items():
        points.sort()
        groups: dict[int, list[int]] = defaultdict(list)  # window index -> positions in points
        for position, (ts, _value) in enumerate(points):
            groups[(ts - start_ns) // width_ns].append(position)
        for window, positions in groups.items():
            if window < 0:
                continue
            values = [points[p][1] for p in positions]
            n = len(values)
            w_start = start_ns + window * width_ns
            stats: dict[str, float] = {"count": float(n)}
            if kind is Aggregation.GAUGE:
                mean = sum(values) / n
                stats |= {
                    "mean": mean,
                    "min": min(values),
                    "max": max(values),
                    "stddev": math.sqrt(sum((v - mean) ** 2 for v in values) / n),
                }
            elif kind is Aggregation.LEVEL_DB:
                stats |= {
                    "energetic_mean": 10 * math.log10(sum(10 ** (v / 10) for v in values) / n),
                    "min": min(values),
                    "max": max(values),
                }
            elif kind is Aggregation.ANGLE:
                s = sum(math.sin(math.radians(v)) for v in values)
                c = sum(math.cos(math.radians(v)) for v in values)
                stats |= {
                    "circular_mean": math.degrees(math.atan2(s, c)) % 360,
                    "r": math.hypot(s, c) / n,
                }
            elif kind is Aggregation.COUNTER:
                increase = 0.0
                for p in positions:
                    if p == 0:
                        continue
                    step = points[p][1] - points[p - 1][1]
                    increase += step if step >= 0 else points[p][1]
                stats |= {"increase": increase, "last": values[-1]}
            else:
                w_end = w_start + width_ns
                covered = on = 0.0
                first = positions[0]
                if first > 0:  # the previous value holds from the window's start
                    lead = points[first][0] - w_start
                    covered += lead
                    on += lead if points[first - 1][1] >= 0.5 else 0.0
                for p in positions:
                    following = points[p + 1][0] if p + 1 < len(points) else None
                    until = w_end if following is None else min(following, w_end)
                    held = until - points[p][0]
                    covered += held
                    on += held if points[p][1] >= 0.5 else 0.0
                stats |= {
                    "share_on": on / covered if covered > 0 else math.nan,
                    "covered_s": covered / 1e9,
                    "last": values[-1],
                }
            out[(series, w_start)] = stats
    return out
