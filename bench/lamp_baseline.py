"""The lamp-faults rule's hourly read of each lamp's usual power per dim level
(`alerting.lamps.usual_power`) at fleet scale.

`--lamps` lampposts over 10 tenants with `--days` of 1-hour rollups each (lit 14 hours a day,
as in a Dutch winter; the rows carry only the two fields the read uses, since InfluxDB stores
fields apart), then the read for all tenants `--repeat` times. The evaluator reads it once an
hour and keeps it between rounds, so this is a cost per hour, not per round.

    .venv/bin/python -m bench.lamp_baseline --lamps 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from alerting.lamps import HOUR_NS, usual_power
from lantaarn.localstack import private_influx
from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.schema import rollup_measurement, rollup_policy
from timeseries.selection import Selection

RESULTS = Path(__file__).resolve().parent / "results" / "alerts.md"
TENANTS = [f"GM{n:04d}" for n in range(100, 110)]
RATINGS = (28.0, 36.0, 45.0, 58.0, 75.0, 110.0)
BATCH = 5000
MEASUREMENT = rollup_measurement("lamppost", "1h")


def _hour_lines(lamps: int, hour_ns: int, rng: random.Random) -> list[str]:
    lit_hours = (16, 17, 18, 19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5)
    lit = (hour_ns // HOUR_NS) % 24 in lit_hours
    level = 100.0 if lit else 0.0
    out = []
    for n in range(lamps):
        rated = RATINGS[n % len(RATINGS)]
        power = 0.5 + (rated * rng.uniform(0.97, 1.03) if lit else 0.0)
        key = series_key(MEASUREMENT, {"tenant": TENANTS[n % 10], "device_id": f"lp-{n:06d}"})
        out.append(line(key, {"dim_level_mean": level, "active_power_mean": power}, hour_ns))
    return out


async def _seed(client: InfluxClient, lamps: int, days: int, end_ns: int) -> int:
    rng = random.Random(7)
    written = 0
    for hour in range(days * 24, 0, -1):
        lines = _hour_lines(lamps, end_ns - hour * HOUR_NS, rng)
        for at in range(0, len(lines), BATCH):
            body = ("\n".join(lines[at : at + BATCH]) + "\n").encode()
            await client.write(body, retention_policy=rollup_policy("1h"))
        written += len(lines)
    return written


async def bench(args: argparse.Namespace) -> str:
    folder = Path(tempfile.mkdtemp(prefix="bench-lamp-baseline-"))
    influx = private_influx(folder / "influx")
    try:
        async with InfluxClient(InfluxConfig(influx.url, timeout_s=120)) as client:
            await ensure_schema(client, Retention())
            now_ns = time.time_ns()
            end_ns = now_ns - now_ns % HOUR_NS
            started = time.perf_counter()
            rows = await _seed(client, args.lamps, args.days, end_ns)
            seeded_s = time.perf_counter() - started
            load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
            reads = []
            found: dict[str, float] = {}
            for _ in range(args.repeat):
                started = time.perf_counter()
                found = await usual_power(client, Selection.of_tenants(TENANTS), end_ns)
                reads.append(time.perf_counter() - started)
    finally:
        influx.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return (
        f"\n## The lamp-faults rule's usual power per lamp: {args.lamps:,} lamps, {args.days} days "
        f"of 1-hour rollups ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m bench.lamp_baseline --lamps {args.lamps} --days {args.days} "
        f"--repeat {args.repeat}` on {platform.node()} ({os.cpu_count()} cores, Python "
        f"{platform.python_version()}, InfluxDB 1.6), load average before the reads {load}; "
        "the machine shared with other work.\n\n"
        "| rollup rows | seeding | read (once an hour), median / max | lamps with a usual |\n"
        "| --- | --- | --- | --- |\n"
        f"| {rows:,} | {seeded_s:.0f} s | {statistics.median(reads):.2f} / {max(reads):.2f} s "
        f"| {len(found):,} |\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lamps", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-save", action="store_true", help="do not append to the results")
    args = parser.parse_args()
    report = asyncio.run(bench(args))
    print(report)
    if not args.no_save:
        with RESULTS.open("a") as out:
            out.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
