"""A one-day fleet aggregate over one kind: from the device rollups (today) and the fleet rollups.

A private InfluxDB is filled directly (no live simulation) with one day of 1-hour rollups of a
decibel metric (`noise.laeq`) for `--devices` devices in 4 tenants, written by the same
functions the rollup job uses (timeseries.rollups.rollup_lines and fleet_lines, the fleet rows
merged from the device rows), and the progress points saying both are complete. Then
`timeseries.intervals.interval_aggregates` answers the day per hour, one call after another,
both ways in the same run, and the answers are checked to be equal. This is the query and the
merge the route `/v1/aggregates` runs; the route's own work (the registry's device list, JSON)
is not in these figures.

    INFLUXDB_DATA_MAX_VALUES_PER_TAG=0 \
        .venv/bin/python -m bench.fleet_aggregate --devices 10000 50000 150000 --repeat 5

(InfluxDB's default `max-values-per-tag` of 100,000 refuses the 100,001st device id of a
measurement; the variable lifts it for the bench's private InfluxDB.)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lantaarn.localstack import private_influx
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.aggregate import Groups
from timeseries.intervals import interval_aggregates
from timeseries.rollups import (
    Coverage,
    SeriesSamples,
    fleet_lines,
    rollup_lines,
    window_ns,
    write_coverage,
)
from timeseries.schema import fleet_progress_window, rollup_policy
from timeseries.selection import Selection

NS = 1_000_000_000
HOUR = window_ns("1h")
KIND, METRIC, WINDOW = "noise", "laeq", "1h"
TENANTS = ("gm0363", "gm0344", "gm0599", "gm0518")


def hour_of_rollups(count: int, hour_start: int, rng: np.random.Generator) -> Groups:
    """The 1-hour rollup rows of `count` devices for one hour, as the job computes them."""
    low = rng.uniform(30.0, 60.0, count)
    high = low + rng.uniform(0.0, 40.0, count)
    return Groups(
        np.arange(count, dtype=np.int64),
        np.full(count, hour_start, dtype=np.int64),
        {
            "count": rng.integers(300, 361, count).astype(np.float64),
            "energetic_mean": low + (high - low) * rng.uniform(0.3, 0.9, count),
            "min": low,
            "max": high,
        },
    )


async def fill(client: InfluxClient, devices: int, day_start: int) -> float:
    """Write the day's device and fleet rollups; returns seconds taken."""
    began = time.perf_counter()
    await ensure_schema(client, Retention())
    writer = BatchWriter(client)
    rng = np.random.default_rng(16)
    ids = [(TENANTS[n % len(TENANTS)], f"noise-{n:07d}") for n in range(devices)]
    samples = SeriesSamples(ids, {}, {}, {})
    # An hour at a time, every device: what one rebuild of that window writes.
    for hour in range(24):
        groups = {METRIC: hour_of_rollups(devices, day_start + hour * HOUR, rng)}
        lines = rollup_lines(KIND, WINDOW, samples, groups) + fleet_lines(
            KIND, WINDOW, samples, groups
        )
        for at in range(0, len(lines), 10_000):
            outcome = await writer.write(
                lines[at : at + 10_000], retention_policy=rollup_policy(WINDOW)
            )
            assert not outcome.refused, outcome.refused[:3]
    done = Coverage(day_start, day_start + 24 * HOUR)
    await write_coverage(writer, KIND, WINDOW, done)
    await write_coverage(writer, KIND, fleet_progress_window(WINDOW), done)
    return time.perf_counter() - began


async def timed(
    client: InfluxClient, devices: Selection, day_start: int, fleet: bool, repeat: int
) -> tuple[float, list[float]]:
    """Median seconds of the day's aggregate, and the last answer (means, counts, maxima)."""
    took = []
    answer: list[float] = []
    for _ in range(repeat):
        began = time.perf_counter()
        rows = await interval_aggregates(
            client, KIND, METRIC, devices, day_start, day_start + 24 * HOUR, "1h", fleet=fleet
        )
        took.append(time.perf_counter() - began)
        assert len(rows.starts) == 24, len(rows.starts)
        assert rows.source == "rollup", rows.source
        answer = rows.stats["energetic_mean"] + rows.stats["count"] + rows.stats["max"]
    return statistics.median(took), answer


async def measure(args: argparse.Namespace) -> list[tuple[int, str, float, float, float]]:
    out = []
    now = time.time_ns()
    day_start = now - now % (24 * HOUR) - 2 * 24 * HOUR
    with tempfile.TemporaryDirectory() as tmp:
        influx = private_influx(Path(tmp) / "influx")
        try:
            for devices in args.devices:
                config = InfluxConfig(influx.url, database=f"fleet_{devices}", timeout_s=600)
                async with InfluxClient(config) as client:
                    fill_s = await fill(client, devices, day_start)
                    print(f"filled {devices} devices in {fill_s:.0f} s", file=sys.stderr)
                    for name, chosen in (
                        ("every tenant", Selection()),
                        ("one tenant", Selection.of_tenants([TENANTS[0]])),
                    ):
                        before, old = await timed(
                            client, chosen, day_start, False, args.today_repeat
                        )
                        after, new = await timed(client, chosen, day_start, True, args.repeat)
                        assert all(
                            math.isclose(a, b, rel_tol=1e-9) for a, b in zip(old, new, strict=True)
                        ), "the fleet rollups answered differently"
                        out.append((devices, name, before, after, fill_s))
                        print(  # as it comes, so a long run's first figures are not lost
                            f"{devices} {name}: today {before:.3f} s, fleet {after:.4f} s, "
                            f"load {os.getloadavg()[0]:.2f}",
                            file=sys.stderr,
                        )
        finally:
            influx.stop()
    return out


def main() -> None:
    """Print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[10_000, 50_000, 150_000])
    parser.add_argument("--repeat", type=int, default=5, help="calls of the fleet rollup path")
    parser.add_argument(
        "--today-repeat", type=int, default=1, help="calls of today's path (seconds each)"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = asyncio.run(measure(args))
    load_after = os.getloadavg()
    print(f"## One-day fleet aggregate, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"`{' '.join(['python -m bench.fleet_aggregate', *sys.argv[1:]])}` on "
        f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"median of {args.repeat} calls from fleet rollups, {args.today_repeat} of today's; "
        "load average before "
        f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)}\n"
    )
    print(
        "| devices | selection | device rollups (today) ms | fleet rollups ms | ratio |"
        "\n| --- | --- | --- | --- | --- |"
    )
    for devices, name, before, after, _fill in results:
        print(
            f"| {devices:,} | {name} | {before * 1000:.0f} | {after * 1000:.1f} "
            f"| {before / after:.0f}x |"
        )


if __name__ == "__main__":
    main()
