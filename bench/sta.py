"""Latency of the SensorThings API on this machine: p50 and p99 of what clients ask most.

A private InfluxDB and a SQLite registry of `--devices` devices, filled directly with line
protocol; the API (uvicorn, in this process) on ::1; requests one after another over HTTP:
- the Observations of one Datastream over a day, from raw readings (a device reporting every
  60 s: 1,440; one reporting every 10 s: 8,640), whole and as a first page of 100;
- a month of the hourly-mean Datastream (720 Observations from the stored rollups);
- Things filtered by kind, and one Thing with its Datastreams expanded.

    .venv/bin/python -m bench.sta --devices 2000 --repeat 30
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
from api.timefmt import format_ns
from devices import Registry
from lantaarn.localstack import free_port, private_influx
from lantaarn.seed import register_fleet
from lantaarn.serve import serve_api
from simulators import make_fleet
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.rollups import rebuild

NS = 1_000_000_000
DAY = 86400


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def fill(
    config: InfluxConfig, month: tuple[str, str], day: tuple[str, str], now_s: int
) -> None:
    """A month of one air-quality device every 60 s (with rollups), a day of another every 10 s."""
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        writer = BatchWriter(client)
        for (tenant, device), step, span in ((month, 60, 30 * DAY), (day, 10, DAY)):
            lines = [
                f"air_quality,device_id={device},tenant={tenant} pm25={5 + (t // 60) % 20}.5,"
                f"no2={20 + (t // 300) % 30}.0,seq={t}i {t * NS}"
                for t in range(now_s - span, now_s, step)
            ]
            for start in range(0, len(lines), 5000):
                await writer.write(lines[start : start + 5000], retention_policy="raw")
        await rebuild(client, writer, "air_quality", "1h", (now_s - 31 * DAY) * NS, now_s * NS)


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float, int]]:
    """(case, p50 ms, p99 ms, Observations or entities answered) per case."""
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
            air = [(d.tenant, d.device_id) for d in fleet.devices if d.kind == "air_quality"]
            month, day = air[0], air[1]
            await fill(config, month, day, now_s)
            port = free_port()
            stop = asyncio.Event()
            server = asyncio.create_task(
                serve_api(ApiConfig(registry_url, config, anonymous_read=True), ["::1"], port, stop)
            )
            last_day = (
                f"phenomenonTime ge {format_ns((now_s - DAY) * NS)} and "
                f"phenomenonTime lt {format_ns(now_s * NS)}"
            )
            last_month = (
                f"phenomenonTime ge {format_ns((now_s - 30 * DAY) * NS)} and "
                f"phenomenonTime lt {format_ns(now_s * NS)}"
            )
            sta = "/sta/v1.1"
            cases = {
                "1 day of one Datastream, raw every 60 s": (
                    f"{sta}/Datastreams('{month[1]}:pm25')/Observations",
                    {"$filter": last_day, "$top": "10000"},
                ),
                "1 day of one Datastream, raw every 10 s": (
                    f"{sta}/Datastreams('{day[1]}:pm25')/Observations",
                    {"$filter": last_day, "$top": "10000"},
                ),
                "the same, $select=phenomenonTime,result": (
                    f"{sta}/Datastreams('{day[1]}:pm25')/Observations",
                    {"$filter": last_day, "$top": "10000", "$select": "phenomenonTime,result"},
                ),
                "1 day, every 10 s, first page of 100 with $count": (
                    f"{sta}/Datastreams('{day[1]}:pm25')/Observations",
                    {"$filter": last_day, "$count": "true"},
                ),
                "30 days of the hourly mean (rollups)": (
                    f"{sta}/Datastreams('{month[1]}:pm25:mean_1h')/Observations",
                    {"$filter": last_month, "$top": "10000"},
                ),
                f"Things of one kind among {args.devices}": (
                    f"{sta}/Things",
                    {"$filter": "properties/kind eq 'air_quality'", "$top": "100"},
                ),
                "one Thing with its Datastreams expanded": (
                    f"{sta}/Things('{month[1]}')",
                    {"$expand": "Datastreams"},
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
                for name, (path, params) in cases.items():
                    first = await http.get(path, params=params)
                    assert first.status_code == 200, first.text[:500]
                    body = first.json()
                    answered = len(body.get("value", body.get("Datastreams", [])))
                    times = []
                    for _ in range(args.repeat):
                        started = time.perf_counter()
                        response = await http.get(path, params=params)
                        await response.aread()
                        times.append(time.perf_counter() - started)
                    results.append((name, statistics.median(times) * 1000,
                                    percentile(times, 0.99) * 1000, answered))  # fmt: skip
                # What of the 10-s day is InfluxDB's own: the same statement, straight to it.
                async with InfluxClient(config) as client:
                    statement = (
                        'SELECT "pm25" FROM "raw"."air_quality" '
                        f"WHERE time >= {(now_s - DAY) * NS} AND time < {now_s * NS} "
                        f"AND \"device_id\" = '{day[1]}' ORDER BY time ASC LIMIT 10001"
                    )
                    times = []
                    for _ in range(args.repeat):
                        started = time.perf_counter()
                        answer = await client.query(statement)
                        times.append(time.perf_counter() - started)
                    rows = sum(len(s.values) for s in answer[0])
                    results.append(("(InfluxDB alone: the 10-s day's query)",
                                    statistics.median(times) * 1000,
                                    percentile(times, 0.99) * 1000, rows))  # fmt: skip
            stop.set()
            await server
            return results
        finally:
            influx.stop()


def main() -> None:
    """Print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    print(f"## SensorThings queries, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"`{' '.join(['python -m bench.sta', *sys.argv[1:]])}` on {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {args.repeat} requests each\n"
    )
    print("| query | answered | p50 ms | p99 ms |\n| --- | --- | --- | --- |")
    for name, p50, p99, answered in results:
        print(f"| {name} | {answered} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
