"""Query latency of the API on this machine: p50 and p99 of the answers analysts ask most.

A private InfluxDB and a SQLite registry of `--devices` devices, filled directly with line
protocol; the API (uvicorn, in this process) on ::1; requests one after another over HTTP:
- a 30-day, 1-hour aggregate of one device, from the stored rollups and from raw readings;
- /v1/latest over every device;
- a page of 1,000 devices, and an aggregate over a box holding every lamppost (their ids are
  named in the query, as regular expressions of at most 1,000 ids each);
- a 1-day raw CSV export of one device reporting every 10 s (8,640 rows).

    .venv/bin/python -m bench.api_queries --devices 10000 --repeat 30
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
from datetime import UTC, datetime
from pathlib import Path

import httpx

from api import ApiConfig
from devices import Registry
from lantaarn.localstack import free_port, private_influx
from lantaarn.seed import register_fleet
from lantaarn.serve import serve_api
from simulators import make_fleet
from simulators.publisher import rfc3339_ms
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.rollups import Coverage, rebuild, write_coverage

NS = 1_000_000_000
DAY = 86400


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def fill(config: InfluxConfig, devices: list[tuple[str, str, str]], now_s: int) -> None:
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        writer = BatchWriter(client)
        # Every device: one recent reading (what /v1/latest shows).
        lines = [
            f"{kind},device_id={device},tenant={tenant} level=1.5,fill_level=40.0,"
            f"pm25=7.0,dim_level=50.0,occupied=1.0,laeq=55.0,temperature=6.0,pedestrians=3.0 "
            f"{(now_s - 30 - n % 600) * NS}"
            for n, (tenant, device, kind) in enumerate(devices)
        ]
        for start in range(0, len(lines), 5000):
            await writer.write(lines[start : start + 5000], retention_policy="raw")
        tenant, device, _kind = next(d for d in devices if d[2] == "air_quality")
        month = [
            f"air_quality,device_id={device},tenant={tenant} pm25={5 + (t // 60) % 20}.5,"
            f"no2={20 + (t // 300) % 30}.0 {t * NS}"
            for t in range(now_s - 30 * DAY, now_s, 60)
        ]
        for start in range(0, len(month), 5000):
            await writer.write(month[start : start + 5000], retention_policy="raw")
        for window in ("1m", "1h"):
            await rebuild(client, writer, "air_quality", window, (now_s - 31 * DAY) * NS,
                          now_s * NS)  # fmt: skip
        # What a rebuild of the month records: rollups known complete up to now.
        await write_coverage(
            writer, "air_quality", "1h", Coverage((now_s - 31 * DAY) * NS, now_s * NS)
        )


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        influx = private_influx(folder / "influx")
        try:
            fleet = make_fleet(args.devices, tenants=4, seed=9)
            registry_url = f"sqlite:///{folder / 'registry.sqlite3'}"
            with Registry(registry_url) as registry:
                register_fleet(registry, fleet)
            now_s = int(time.time()) // 3600 * 3600
            config = InfluxConfig(influx.url)
            devices = [(d.tenant, d.device_id, d.kind) for d in fleet.devices]
            await fill(config, devices, now_s)
            air = next(d for d in devices if d[2] == "air_quality")[1]
            port = free_port()
            stop = asyncio.Event()
            server = asyncio.create_task(
                serve_api(ApiConfig(registry_url, config, anonymous_read=True), ["::1"], port, stop)
            )
            month_start = rfc3339_ms((now_s - 30 * DAY) * 1000)
            day_start = rfc3339_ms((now_s - DAY) * 1000)
            end = rfc3339_ms(now_s * 1000)
            cases: dict[str, tuple[str, dict[str, str | int], dict[str, str]]] = {
                "30-day 1h aggregate, one device (rollups)": (
                    f"/v1/devices/{air}/aggregates",
                    {"metric": "pm25", "interval": "1h", "start": month_start, "end": end},
                    {},
                ),
                "32-day 1h aggregate, one device (raw: from before the rollups)": (
                    f"/v1/devices/{air}/aggregates",
                    {
                        "metric": "no2",
                        "interval": "1h",
                        "start": rfc3339_ms((now_s - 32 * DAY) * 1000),
                        "end": end,
                    },
                    {},
                ),
                f"/v1/latest, {args.devices} devices": ("/v1/latest", {}, {}),
                "/v1/devices, a page of 1,000 with their live state": (
                    "/v1/devices",
                    {"limit": 1000},
                    {},
                ),
                "1h aggregate of dim_level over a box holding every lamppost": (
                    "/v1/aggregates",
                    {"kind": "lamppost", "metric": "dim_level", "bbox": "3.0,50.5,7.5,54.0"},
                    {},
                ),
                "1-day raw CSV export, one device (1,440 rows)": (
                    f"/v1/devices/{air}/readings",
                    {"metric": "pm25", "start": day_start, "end": end},
                    {"Accept": "text/csv"},
                ),
            }
            results = []
            async with httpx.AsyncClient(base_url=f"http://[::1]:{port}", timeout=120) as http:
                while True:
                    try:
                        if (await http.get("/v1/health/live")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                for name, (path, params, headers) in cases.items():
                    first = await http.get(path, params=params, headers=headers)
                    assert first.status_code == 200, first.text[:500]
                    times = []
                    for _ in range(args.repeat):
                        started = time.perf_counter()
                        response = await http.get(path, params=params, headers=headers)
                        await response.aread()
                        times.append(time.perf_counter() - started)
                    source = ""
                    if "aggregates" in path:
                        source = f" [source: {first.json()['source']}]"
                    results.append((name + source, statistics.median(times) * 1000,
                                    percentile(times, 0.99) * 1000))  # fmt: skip
            stop.set()
            await server
            return results
        finally:
            influx.stop()


def main() -> None:
    """Print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    print(f"## API queries, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"`{' '.join(['python -m bench.api_queries', *sys.argv[1:]])}` on {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {args.repeat} requests each\n"
    )
    print("| query | p50 ms | p99 ms |\n| --- | --- | --- |")
    for name, p50, p99 in results:
        print(f"| {name} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
