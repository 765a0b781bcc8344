"""The summary's lowest-completeness devices: what the worker pays to keep them, what the API reads.

- The worker (ingest.completeness.CompletenessJob): each minute it adds every counted device's
  row to the hour's sums (`_tally`), and once the hour is counted it writes the lowest devices of
  each tenant and kind (`lowest_lines`). Measured in this process, for each fleet size in 15
  tenants and 4 kinds with `--lossy` of the devices losing readings: the CPU of one minute's
  tally (median over the hour), of the hour's lowest rows, and the memory the hour's sums hold
  per device (tracemalloc).
- The API (api.lowest_completeness): `read_lowest` of one hour from a private InfluxDB holding
  the rows the job writes for 15 tenants x 4 kinds (10 each), and `HourFigures.lowest` for one
  tenant and for every tenant (what each summary computation does): neither depends on the
  number of devices, since the rows do not.

    .venv/bin/python -m bench.lowest_completeness --sizes 10000 50000 150000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from api.lowest_completeness import LowestCompleteness, figure_hour
from api.summary import WORST
from ingest.completeness import CompletenessJob
from lantaarn.localstack import private_influx
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.completeness import Counted, Counts, DeviceShortfall, lowest_lines, read_lowest
from timeseries.schema import rollup_policy

NS = 1_000_000_000
TENANTS = tuple(f"GM{n:04d}" for n in range(15))
KINDS = ("lamppost", "air_quality", "noise", "parking")


def minute(kind: str, devices: list[tuple[str, str]], at: int, loses: Any, rng: Any) -> Counted:
    """One minute's counts of a kind's devices: six readings each, some lost by the lossy."""
    n = len(devices)
    lost = np.where(loses, rng.integers(0, 3, n), 0).astype(np.int64)
    expected = np.full(n, 6, dtype=np.int64)
    return Counted(
        kind,
        devices,
        Counts(
            np.arange(n, dtype=np.int64), np.full(n, at, dtype=np.int64), expected - lost, expected
        ),
    )


def worker_side(devices: int, lossy: float) -> tuple[float, float, float]:
    """(ms of CPU per minute's tally, ms for the hour's lowest rows, bytes held per device)."""
    rng = np.random.default_rng(16)
    job = CompletenessJob(None, None, KINDS)  # type: ignore[arg-type]  # tallies only
    per_kind = {
        kind: [(TENANTS[n % 15], f"{kind}-{n:07d}") for n in range(k, devices, len(KINDS))]
        for k, kind in enumerate(KINDS)
    }
    loses = {kind: rng.random(len(ids)) < lossy for kind, ids in per_kind.items()}
    hour = time.time_ns() // (3600 * NS) * 3600 * NS
    tallies = []
    tracemalloc.start()
    for m in range(60):
        counted = [minute(k, ids, hour + m * 60 * NS, loses[k], rng) for k, ids in per_kind.items()]
        began = time.process_time()
        for c in counted:
            job._tally(c)  # noqa: SLF001 - the step measured
        tallies.append(time.process_time() - began)
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    began = time.process_time()
    lines = job._lowest_lines(hour)  # noqa: SLF001 - the step measured
    hour_ms = (time.process_time() - began) * 1000
    assert len(lines) <= len(TENANTS) * len(KINDS) * 10
    return statistics.median(tallies) * 1000, hour_ms, held / devices


def _median_us(call: Any, times: int = 1_000) -> float:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1e6


async def api_side(url: str) -> tuple[float, int, float, float]:
    """(ms per hourly read, rows read, µs per pick for one tenant, for every tenant)."""
    now = time.time_ns()
    start, _end = figure_hour(now)
    rng = np.random.default_rng(3)
    found = [
        DeviceShortfall(t, k, f"{k}-{n:07d}", int(rng.integers(1, 60)), 60)
        for t in TENANTS
        for k in KINDS
        for n in range(10)
    ]
    async with InfluxClient(InfluxConfig(url, database="lowest")) as client:
        await ensure_schema(client, Retention())
        await BatchWriter(client).write(
            lowest_lines(start, found, 10), retention_policy=rollup_policy("1h")
        )
        reads = []
        rows: list[DeviceShortfall] = []
        for _ in range(10):
            began = time.perf_counter()
            rows = await read_lowest(client, start, start + 3600 * NS)
            reads.append(time.perf_counter() - began)
        figures = await LowestCompleteness(client, keep=WORST, clock=lambda: now).current()
        assert figures is not None
        one = _median_us(lambda: figures.lowest([TENANTS[0]], WORST))
        every = _median_us(lambda: figures.lowest(None, WORST))
    return statistics.median(reads) * 1000, len(rows), one, every


def main(args: argparse.Namespace) -> None:
    print(f"{platform.node()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        "| devices | tally CPU ms per minute | lowest rows of the hour ms | bytes per device | "
        "load |\n| --- | --- | --- | --- | --- |"
    )
    for devices in args.sizes:
        tally, hour, held = worker_side(devices, args.lossy)
        load = os.getloadavg()[0]
        print(f"| {devices:,} | {tally:.1f} | {hour:.0f} | {held:.0f} | {load:.1f} |", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        influx = private_influx(Path(folder))
        try:
            read_ms, rows, one, every = asyncio.run(api_side(influx.url))
        finally:
            influx.stop()
    print(
        f"\nAPI: hourly read {read_ms:.1f} ms ({rows} rows, median of 10); pick per summary "
        f"{one:.1f} µs (one tenant), {every:.1f} µs (every tenant); load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 150_000])
    parser.add_argument("--lossy", type=float, default=0.05, help="share of devices losing some")
    main(parser.parse_args())
