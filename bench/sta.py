"""Latency of the SensorThings API on this machine: p50 and p99 of what clients ask most.

A private InfluxDB and a SQLite registry of `--devices` devices, filled directly with line
protocol; the API (uvicorn, in this process) on ::1; requests one after another over HTTP:
- the Observations of one Datastream over a day, from raw readings (a device reporting every
  60 s: 1,440; one reporting every 10 s: 8,640), whole and as a first page of 100;
- a month of the hourly-mean Datastream (720 Observations from the stored rollups);
- Things filtered by kind, and one Thing with its Datastreams expanded.

    .venv/bin/python -m bench.sta --devices 2000 --repeat 30

With `--against TREE` (another checkout of lantaarn, e.g. a worktree of an older commit) it
compares instead: the API of this tree and of TREE run as two processes over the same InfluxDB
and registry, and each round asks both the same Observations queries in alternating order, so
load that comes and goes on a shared machine falls on both alike. It first checks that both
answer every query with the same bytes (after gzip), then reports p50, p95 and the lowest time
of each, and the p50 over the quarter of rounds run at the lowest load average.

    .venv/bin/python -m bench.sta --devices 2000 --repeat 40 --against ../sta-old
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
import orjson

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
HERE = Path(__file__).resolve().parent.parent  # this tree
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


async def prepare(
    devices: int, folder: Path, config: InfluxConfig
) -> tuple[str, int, tuple[str, str], tuple[str, str]]:
    """A registry of `devices` in `folder` and the readings of `fill`: the registry's URL, the
    hour the readings end, and (tenant, device) of the month-long and the 10-s device."""
    fleet = make_fleet(devices, tenants=4, seed=9)
    registry_url = f"sqlite:///{folder / 'registry.sqlite3'}"
    with Registry(registry_url) as registry:
        register_fleet(registry, fleet)
    now_s = int(time.time()) // 3600 * 3600
    air = [(d.tenant, d.device_id) for d in fleet.devices if d.kind == "air_quality"]
    await fill(config, air[0], air[1], now_s)
    return registry_url, now_s, air[0], air[1]


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float, int]]:
    """(case, p50 ms, p99 ms, Observations or entities answered) per case."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        influx = private_influx(folder / "influx")
        try:
            config = InfluxConfig(influx.url)
            registry_url, now_s, month, day = await prepare(args.devices, folder, config)
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


# One API process of a tree: serves until its standard input closes.
_CHILD = """
import asyncio, sys
from api import ApiConfig
from lantaarn.serve import serve_api
from timeseries import InfluxConfig

async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    config = ApiConfig(sys.argv[1], InfluxConfig(sys.argv[2]), anonymous_read=True)
    await serve_api(config, ["::1"], int(sys.argv[3]), stop)

asyncio.run(main())
"""


async def _started(http: httpx.AsyncClient, proc: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        if proc.returncode is not None:
            raise RuntimeError(f"an API process ended with {proc.returncode}")
        try:
            if (await http.get("/v1/health/live")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("an API process did not start in 60 s")


Timings = dict[tuple[str, str], list[tuple[float, float]]]  # (case, tree) -> (s, load)
CpuSpent = dict[tuple[str, str], list[float]]  # (case, tree) -> [API s, InfluxDB s] in all rounds
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def compare(args: argparse.Namespace) -> tuple[Timings, CpuSpent, dict[str, int]]:
    """Both trees' APIs over one store, asked each case alternately `--repeat` rounds; with the
    CPU time each API process and InfluxDB spent on each case (wall time waits for whatever
    else the machine runs, CPU time mostly does not)."""
    trees = {"this tree": HERE, "--against": args.against}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        influx = private_influx(folder / "influx")
        procs: list[asyncio.subprocess.Process] = []
        try:
            registry_url, now_s, month, day = await prepare(
                args.devices, folder, InfluxConfig(influx.url)
            )
            last_day = (
                f"phenomenonTime ge {format_ns((now_s - DAY) * NS)} and "
                f"phenomenonTime lt {format_ns(now_s * NS)}"
            )
            every_10s = f"/sta/v1.1/Datastreams('{day[1]}:pm25')/Observations"
            whole_day = {"$filter": last_day, "$top": "10000"}
            gzip_ok, identity = {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "identity"}
            cases = {
                "1 day every 10 s, whole, gzip": (every_10s, whole_day, gzip_ok),
                "1 day every 10 s, whole, no gzip": (every_10s, whole_day, identity),
                "1 day every 60 s, whole, gzip": (
                    f"/sta/v1.1/Datastreams('{month[1]}:pm25')/Observations", whole_day, gzip_ok
                ),
                "1 day every 10 s, first 100 with $count, gzip": (
                    every_10s, {"$filter": last_day, "$count": "true"}, gzip_ok
                ),
            }  # fmt: skip
            clients: dict[str, httpx.AsyncClient] = {}
            pids: dict[str, int] = {}
            for name, tree in trees.items():
                port = free_port()
                env = {**os.environ, "PYTHONPATH": str(tree)}
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-c", _CHILD, registry_url, influx.url, str(port),
                        cwd=tree, env=env, stdin=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )  # fmt: skip
                clients[name] = httpx.AsyncClient(base_url=f"http://[::1]:{port}", timeout=120)
                pids[name] = procs[-1].pid
                await _started(clients[name], procs[-1])
            assert influx.service.process is not None
            influx_pid = influx.service.process.pid
            answered: dict[str, int] = {}
            for case, (path, params, headers) in cases.items():
                bodies = {  # links name the server: compare with them set aside
                    name: (await http.get(path, params=params, headers=headers)).content.replace(
                        str(http.base_url).rstrip("/").encode(), b"BASE"
                    )
                    for name, http in clients.items()
                }
                first, second = bodies.values()
                if first != second:
                    raise AssertionError(f"{case}: the two trees answer differently")
                answered[case] = len(orjson.loads(first)["value"])
            timings: Timings = {(c, n): [] for c in cases for n in clients}
            spent: CpuSpent = {(c, n): [0.0, 0.0] for c in cases for n in clients}
            order = list(clients)
            for _ in range(args.repeat):
                order.reverse()
                for case, (path, params, headers) in cases.items():
                    for name in order:
                        load = os.getloadavg()[0]
                        api_cpu, influx_cpu = cpu_seconds(pids[name]), cpu_seconds(influx_pid)
                        started = time.perf_counter()
                        response = await clients[name].get(path, params=params, headers=headers)
                        await response.aread()
                        timings[case, name].append((time.perf_counter() - started, load))
                        spent[case, name][0] += cpu_seconds(pids[name]) - api_cpu
                        spent[case, name][1] += cpu_seconds(influx_pid) - influx_cpu
            for http in clients.values():
                await http.aclose()
            return timings, spent, answered
        finally:
            for proc in procs:
                if proc.stdin is not None:
                    proc.stdin.close()
                await proc.wait()
            influx.stop()


def compare_report(
    args: argparse.Namespace, timings: Timings, spent: CpuSpent, answered: dict[str, int]
) -> None:
    """Print the comparison as Markdown."""
    loads = sorted(load for runs in timings.values() for _, load in runs)
    calm = loads[len(loads) // 4]
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"## SensorThings Observations, this tree against another, {when}")
    print(
        f"`{' '.join(['python -m bench.sta', *sys.argv[1:]])}` on {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {args.repeat} rounds; "
        f"load average (1 min) during the run {loads[0]:.1f}-{loads[-1]:.1f}, "
        f"median {statistics.median(loads):.1f}\n"
    )  # fmt: skip
    print(
        "| query | answered | tree | p50 ms | p95 ms | min ms | p50 ms at load ≤ "
        f"{calm:.1f} | API CPU ms | InfluxDB CPU ms |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for (case, name), runs in timings.items():
        ms = [t * 1000 for t, _ in runs]
        quiet = [t * 1000 for t, load in runs if load <= calm]
        print(
            f"| {case} | {answered[case]} | {name} | {statistics.median(ms):.1f} | "
            f"{percentile(ms, 0.95):.1f} | {min(ms):.1f} | {statistics.median(quiet):.1f} | "
            f"{spent[case, name][0] / len(runs) * 1000:.1f} | "
            f"{spent[case, name][1] / len(runs) * 1000:.1f} |"
        )
    print(
        "\n(API CPU and InfluxDB CPU: the mean CPU time per request of the API's process and of "
        "InfluxDB's, from /proc, summed over all rounds.)"
    )


def main() -> None:
    """Print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--against", type=Path, help="another lantaarn tree to compare with")
    args = parser.parse_args()
    if args.against is not None:
        compare_report(args, *asyncio.run(compare(args)))
        return
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
