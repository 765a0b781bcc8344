"""/v1/latest, /v1/summary and /v1/events at city scale, from the device-state store.

For each fleet size: a SQLite registry (or `--postgres URL`, a schema per size) holding the
devices of 15 tenants (the first, a big city, holds a third of the fleet) and each device's
state, written directly (as the workers' flushes would: 94 % online, 5 % silent, 1 % offline).
The API runs in a child process of its own (uvicorn on ::1), so that its memory and CPU are its
own. Measured, one request after another over HTTP:
- `/v1/latest?tenant=<big city>&limit=1000`, the first page (p50, p99);
- `/v1/latest?tenant=<big city>`, the default page (10,000 devices);
- `/v1/summary?tenant=<big city>` computed afresh (in this process: the registry queries) and
  over HTTP (mostly answered from the API's cache, as dashboards see it);
- the API process's resident memory after these (MB), and per device between sizes;
- one and ten open dashboards of the big city (each a `/v1/events` stream naming the 100
  devices of the overview's page, and that page asked for again every 30 s with
  If-None-Match, as the dashboard does) while a writer records the whole fleet's readings at
  the rate they arrive (every device every 60 s, in flushes of one second), after a first
  stream of 5 s (not measured) has warmed the API: the API's CPU to open them (until each
  stream has its first summary: the feed reads its status board then), and over the next
  `--stream-s` seconds, per dashboard, beyond the same time without any; then one stream of
  every change of the big city (no devices named, as an API client may follow them);
- the worker's side: `StateRecorder.note` per message (a batch of 1,000 points) and its flush
  per changed device, in this process.

    .venv/bin/python -m bench.latest_scale --sizes 10000,50000,150000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, text

from api import ApiConfig
from api.routes.events import TICK_S
from api.summary import compute
from devices import DEVICE_KINDS, Device, Registry, Tenant
from devices.registry import ReadingUpdate, StatusUpdate
from devices.registry.rows import DeviceRow, device_values
from ingest.device_state import StateRecorder
from lantaarn.localstack import free_port
from timeseries import InfluxConfig
from timeseries.lineprotocol import Point, tags
from timeseries.schema import raw_measurement

NS = 1_000_000_000
TENANTS = 15
PAGE_SIZE = 100  # the overview's table (dashboards/static/overview.js)
POLL_S = 30.0  # how often an open overview asks for its page again (PAGE_RECHECK_S, app.js)
KINDS = ("lamppost", "air_quality", "noise", "parking")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def tenant_of(n: int, size: int) -> str:
    """The big city holds the first third; the other tenants share the rest."""
    third = size // 3
    if n < third:
        return "GM0000"
    return f"GM{1 + (n - third) % (TENANTS - 1):04d}"


def fleet(size: int) -> list[Device]:
    created = datetime.now(UTC)
    return [
        Device(
            device_id=f"dev-{n:07d}",
            tenant=tenant_of(n, size),
            kind=KINDS[n % len(KINDS)],
            name=f"device {n}",
            latitude=52.0 + (n % 1000) / 10_000,
            longitude=4.5 + (n // 1000) / 10_000,
            created_at=created,
        )
        for n in range(size)
    ]


def fill(url: str, devices: list[Device], now: int) -> None:
    """Register the tenants and devices and give every device a state."""
    with Registry(url) as registry:
        for t in sorted({d.tenant for d in devices}):
            registry.add_tenant(Tenant(t, f"tenant {t}"))
    engine = create_engine(url)
    with engine.begin() as conn:
        for start in range(0, len(devices), 5000):
            rows = []
            for device in devices[start : start + 5000]:
                values = device_values(device)
                rows.append({**values, "revision": 1, "broker_password_hash": None})
            conn.execute(insert(DeviceRow), rows)
    engine.dispose()
    readings, statuses = [], []
    for n, device in enumerate(devices):
        interval = DEVICE_KINDS[device.kind].interval_s
        age = int((4 * interval if n % 20 == 0 else interval / 2) * NS)  # 5 % silent
        readings.append(ReadingUpdate(device.device_id, device.tenant, now - age, {"x": 1.0}))
        if n % 100 == 1:
            statuses.append(StatusUpdate(device.device_id, device.tenant, "offline", now))
    with Registry(url) as registry:
        for start in range(0, len(readings), 20_000):
            registry.record_states(readings[start : start + 20_000], now_ns=now)
        registry.record_states([], statuses, now_ns=now)


def _serve(url: str, port: int) -> None:
    from lantaarn.serve import serve_api

    config = ApiConfig(url, InfluxConfig("http://[::1]:9", "unused"), anonymous_read=True)
    asyncio.run(serve_api(config, ["::1"], port, asyncio.Event()))


def wait_live(base: str, what: str, seconds: float = 60.0) -> None:
    """Wait until the API at `base` answers its liveness check; TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/v1/health/live").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up")
        time.sleep(0.1)


@contextmanager
def api_process(url: str, tree: str | None = None) -> Iterator[tuple[str, int]]:
    """The API in a child process; yields its base URL and pid. `tree`: run the API of that
    checkout instead of this one (its `bench.latest_scale._serve`), to compare two trees."""
    port = free_port()
    child: multiprocessing.process.BaseProcess | subprocess.Popen[bytes]
    if tree is None:
        child = multiprocessing.get_context("spawn").Process(target=_serve, args=(url, port))
        child.start()
    else:
        code = f"from bench.latest_scale import _serve; _serve({url!r}, {port})"
        env = {**os.environ, "PYTHONPATH": tree}
        child = subprocess.Popen([sys.executable, "-c", code], cwd=tree, env=env)
    base = f"http://[::1]:{port}"
    wait_live(base, "the API")
    try:
        assert child.pid is not None
        yield base, child.pid
    finally:
        child.terminate()
        if isinstance(child, subprocess.Popen):
            child.wait(20)
        else:
            child.join(20)


def timed(
    client: httpx.Client, path: str, repeat: int, pid: int
) -> tuple[float, float, int, float]:
    """p50 and p99 (ms) of `repeat` requests, the answer's size (bytes) and the API's CPU per
    request (ms: what the request costs whatever else the machine is doing)."""
    times = []
    size = 0
    client.get(path)  # warm: the first request compiles the queries
    cpu = cpu_seconds(pid)
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:300]
        size = len(answer.content)
    spent = (cpu_seconds(pid) - cpu) / repeat * 1000
    return percentile(times, 0.5), percentile(times, 0.99), size, spent


def writer(url: str, devices: list[Device], stop: threading.Event) -> None:
    """Record every device's reading once a minute, in one-second flushes (as workers do), the
    tenants mixed as they report (the streamed tenant's share of each flush is its share of the
    fleet)."""
    devices = random.Random(7).sample(devices, len(devices))
    per_flush = max(1, len(devices) // 60)
    offset = 0
    with Registry(url) as registry:
        while not stop.is_set():
            started = time.monotonic()
            now = time.time_ns()
            chunk = [devices[(offset + i) % len(devices)] for i in range(per_flush)]
            offset += per_flush
            registry.record_states(
                [ReadingUpdate(d.device_id, d.tenant, now, {"x": 2.0}) for d in chunk], now_ns=now
            )
            stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def stream_cost(
    base: str, pid: int, streams: int, seconds: float, named: bool = True
) -> tuple[float, float, int]:
    """Open `streams` dashboards: each an event stream naming the devices of the overview's
    table (its first page of PAGE_SIZE devices; `named` False: a stream of every change, as an
    API client may open), and that page asked for again every POLL_S seconds with
    If-None-Match, as dashboards/static/app.js and overview.js do. The API's CPU seconds from
    opening the streams until each has had its first summary (what opening costs, once); its
    CPU seconds over the next `seconds` (what they cost while open); and the device states
    each stream received in that time."""
    params = {"tenant": "GM0000"}
    if named and streams:
        first = httpx.get(f"{base}/v1/latest", params={**params, "limit": PAGE_SIZE}, timeout=60)
        params["devices"] = ",".join(sorted(d["deviceId"] for d in first.json()))
    received = [0]
    stop = threading.Event()
    measuring = threading.Event()
    opened = [threading.Event() for _ in range(streams)]

    def poll() -> None:
        tag = None
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.wait(POLL_S):
                answer = client.get(
                    "/v1/latest",
                    params={"tenant": "GM0000", "limit": PAGE_SIZE},
                    headers={"If-None-Match": tag} if tag else {},
                )
                assert answer.status_code in (200, 304), answer.text[:300]
                tag = answer.headers.get("ETag", tag)

    def read(n: int) -> None:
        with httpx.stream("GET", f"{base}/v1/events", params=params, timeout=30) as response:
            for line in response.iter_lines():
                if line.startswith('data: {"devices"') and measuring.is_set():
                    received[0] += line.count('"deviceId"')
                elif line.startswith("event: summary"):
                    opened[n].set()
                if stop.is_set():
                    return

    readers = [threading.Thread(target=read, args=(n,), daemon=True) for n in range(streams)]
    readers += [threading.Thread(target=poll, daemon=True) for _ in range(streams)]
    before = cpu_seconds(pid)
    for t in readers:
        t.start()
    for event in opened:
        if not event.wait(60):
            raise TimeoutError("a stream had no summary within 60 s")
    at_open = cpu_seconds(pid)
    measuring.set()
    time.sleep(seconds)
    stop.set()
    spent = cpu_seconds(pid) - at_open
    for t in readers:
        t.join(20)
    return at_open - before, spent, received[0] // max(1, streams)  # every stream adds to it


def streams(
    url: str, devices: list[Device], base: str, pid: int, seconds: float
) -> tuple[float, float, float, float, float, int, float, int]:
    """The API's CPU seconds over `seconds`: idle, with the writer; opening one dashboard;
    with the writer and one open dashboard, and with ten; the device states one dashboard's
    stream received; and the CPU seconds and device states of one stream of every change
    instead (no devices named)."""
    stop = threading.Event()
    writing = threading.Thread(target=writer, args=(url, devices, stop), daemon=True)
    _, idle, _ = stream_cost(base, pid, 0, seconds)
    writing.start()
    try:
        # Not measured: a stream's first seconds (the API compiles the feed's and the
        # summary's queries), paid once per API process.
        stream_cost(base, pid, 1, 5)
        time.sleep(2 * TICK_S)  # that stream's feed has ended
        _, base_cpu, _ = stream_cost(base, pid, 0, seconds)
        opening, one, got_one = stream_cost(base, pid, 1, seconds)
        time.sleep(2 * TICK_S)
        _, ten, _ = stream_cost(base, pid, 10, seconds)
        time.sleep(2 * TICK_S)
        _, every, got_every = stream_cost(base, pid, 1, seconds, named=False)
    finally:
        stop.set()
        writing.join(10)
    return idle, base_cpu, opening, one, ten, got_one, every, got_every


def _points(devices: int, count: int = 1000, at: int = 0) -> list[Point]:
    """`count` lamppost points of `devices` devices (round robin), at times from `at` (ns)."""
    return [
        Point(
            raw_measurement("lamppost"),
            tags(tenant="GM0000", device_id=f"dev-{n % devices:07d}"),
            {"dim_level": 50.0, "seq": n},
            at + n,
        )
        for n in range(count)
    ]


def measure_flush(devices: int = 5000) -> float:
    """µs of CPU per changed device of one StateRecorder flush into SQLite (a thread)."""
    with (
        tempfile.TemporaryDirectory() as folder,
        Registry(f"sqlite:///{Path(folder) / 'r.sqlite3'}") as registry,
    ):
        recorder = StateRecorder(registry)
        recorder.note(_points(devices, devices))
        asyncio.run(recorder.flush())  # the first inserts; then updates, as in steady state
        recorder.note(_points(devices, devices))
        started = time.process_time()  # of every thread of this process
        asyncio.run(recorder.flush())
        return (time.process_time() - started) / devices * 1e6


def measure_note(batches: int = 200) -> float:
    """µs per point of StateRecorder.note alone: batches of 1,000 points of 5,000 devices,
    each newer than the last (the common case: a device's next reading)."""
    prepared = [_points(5000, 1000, at=b * 1000) for b in range(batches)]
    recorder = StateRecorder(None)  # type: ignore[arg-type]  # never flushed here
    started = time.process_time()  # CPU time: the machine may be busy with others
    for batch in prepared:
        recorder.note(batch)
    return (time.process_time() - started) / (batches * 1000) * 1e6


def main() -> None:
    """Run the scenarios and print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,150000")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--stream-s", type=float, default=30.0)
    parser.add_argument(
        "--compare",
        default=None,
        help="another checkout whose API's streams to measure first (of the same registry "
        "migrations: else run this file in that checkout)",
    )
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL instead of SQLite")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# latest_scale on {platform.node()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{'PostgreSQL' if args.postgres else 'SQLite'}")  # fmt: skip
    print(f"command: {' '.join(sys.argv)}\n")
    print("| devices | latest 1st page (1,000) p50 / p99 ms, API CPU ms | latest default page "
          "p50 ms (size), API CPU ms | summary compute CPU ms | summary HTTP p50 ms "
          "| API RSS MB |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    stream_rows: list[str] = []
    memory: list[tuple[int, float]] = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            if args.postgres:
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                engine = create_engine(args.postgres)
                with engine.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            else:
                url = f"sqlite:///{Path(folder) / 'registry.sqlite3'}"
            devices = fleet(size)
            fill(url, devices, time.time_ns())
            if args.postgres:  # statistics, as autovacuum would gather them on a real server
                with engine.begin() as conn:
                    conn.execute(text(f'ANALYZE "{schema}".devices, "{schema}".device_state'))
            with Registry(url) as registry:
                started = time.process_time()
                for _ in range(5):
                    compute(registry, ["GM0000"], time.time_ns())
                summary_ms = (time.process_time() - started) / 5 * 1000
            with api_process(url) as (base, pid), httpx.Client(base_url=base, timeout=60) as c:
                first = timed(c, "/v1/latest?tenant=GM0000&limit=1000", args.repeat, pid)
                whole = timed(c, "/v1/latest?tenant=GM0000", max(3, args.repeat // 10), pid)
                summary_http = timed(c, "/v1/summary?tenant=GM0000", args.repeat, pid)
                rss = rss_mb(pid)
                memory.append((size, rss))
            rounds = [("this tree", None)]
            if args.compare:
                rounds.insert(0, (f"{args.compare} (before)", args.compare))
            for label, tree in rounds:
                with api_process(url, tree) as (base, pid):
                    idle, base_cpu, opening, one, ten, got_one, every, got_every = streams(
                        url, devices, base, pid, args.stream_s
                    )
                one_pct = max(0.0, one - base_cpu) / args.stream_s * 100
                ten_pct = max(0.0, ten - base_cpu) / args.stream_s * 100 / 10
                every_pct = max(0.0, every - base_cpu) / args.stream_s * 100
                stream_rows.append(
                    f"| {size:,} | {label} | {opening * 1000:.0f} | {one_pct:.2f} | "
                    f"{ten_pct:.2f} | {got_one} | {every_pct:.2f} ({got_every}) | "
                    f"{idle:.2f} / {base_cpu:.2f} s |"
                )
            print(
                f"| {size:,} | {first[0]:.1f} / {first[1]:.1f}, {first[3]:.1f} | "
                f"{whole[0]:.0f} ({whole[2] // 1024} KiB), {whole[3]:.0f} | {summary_ms:.0f} | "
                f"{summary_http[0]:.1f} | {rss:.0f} |"
            )
            if args.postgres:
                with engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                engine.dispose()
    print(f"\nOpen dashboards of GM0000 (an event stream, and the table's page of {PAGE_SIZE} "
          f"asked for every {POLL_S:.0f} s) while the writer records the fleet: the API's CPU "
          f"to open one (until its stream's first summary), and over the next {args.stream_s} s "
          "beyond the same time without dashboards")  # fmt: skip
    print("\n| devices | API | opening 1 dashboard, CPU ms | 1 dashboard CPU % | 10 dashboards "
          "CPU % per dashboard | device states/stream | 1 stream of every change: CPU % "
          "(device states) | API CPU idle / with the writer, none open |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in stream_rows:
        print(row)
    if len(memory) > 1:
        (small, low), (large, high) = memory[0], memory[-1]
        per_device = (high - low) * 1024 * 1024 / (large - small)
        print(f"\nAPI memory per device between {small:,} and {large:,}: {per_device:.0f} bytes")
    note_us = statistics.median(measure_note() for _ in range(3))
    flush_us = measure_flush()
    print(f"\nWorker: StateRecorder.note {note_us:.3f} µs per point (batches of 1,000); "
          f"a flush {flush_us:.1f} µs per changed device (SQLite, in a thread)")  # fmt: skip


if __name__ == "__main__":
    main()
