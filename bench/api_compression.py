"""The API's CPU per answer and the answer's size under each gzip of its answers.

A SQLite registry of `--devices` devices with their states (bench.latest_scale's fleet: the big
city GM0000 holds a third), and one API process per variant, all running at once (uvicorn on
::1, each a child process of its own so that its CPU is its own):
- `none`: no compression at all (what the route itself costs);
- `zlib-5`: Starlette's GZipMiddleware at level 5 (zlib; large bodies in a worker thread);
- `isal-1`, `isal-2`: bench.isal_gzip.GzipAnswers (ISA-L, inline) at that level.
With InfluxDB installed, also one lamppost's day of readings every 10 s (8,640) from a private
InfluxDB: a page of them as JSON, and the whole day as CSV (a streamed answer).
The requests (`Accept-Encoding: gzip`) go round the variants in turns, so that whatever else
the machine does weighs on each alike. Measured per answer: the API process's CPU (ms, from
/proc: user + system, the worker threads included), the p50 time (ms) and the bytes sent.

    .venv/bin/python -m bench.api_compression --devices 30000 --rounds 10 --per-round 5
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from starlette.middleware import Middleware
from starlette.types import Message, Receive, Scope, Send

from api import ApiConfig, create_app
from bench.isal_gzip import GzipAnswers
from bench.latest_scale import cpu_seconds, fill, fleet, wait_live
from devices import DEVICE_KINDS
from lantaarn.localstack import free_port, private_influx
from lantaarn.serve import bind
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.schema import RAW_RP, raw_measurement

NS = 1_000_000_000
SERIES_DEVICE = "dev-0000000"  # a lamppost of GM0000 in bench.latest_scale's fleet

JSON = "application/json"
VARIANTS = ("none", "zlib-5", "isal-1", "isal-2")
# (label, path, Accept): answers of 2-3 MB, a few hundred kB and a few tens of kB.
QUERIES = (
    ("/v1/latest, 10,000 devices, JSON", "/v1/latest?tenant=GM0000", JSON),
    ("/v1/latest, 10,000 devices, GeoJSON", "/v1/latest?tenant=GM0000", "application/geo+json"),
    ("/v1/latest, 1,000 devices, JSON", "/v1/latest?tenant=GM0000&limit=1000", JSON),
    ("/v1/latest, 100 devices, JSON", "/v1/latest?tenant=GM0000&limit=100", JSON),
)


def series_queries(now_ns: int) -> list[tuple[str, str, str]]:
    """The day written by `write_day`, named by its bounds: the same readings all the run."""
    start = datetime.fromtimestamp(now_ns / NS - 86400 - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = datetime.fromtimestamp(now_ns / NS + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = f"/v1/devices/{SERIES_DEVICE}/readings?start={start}&end={end}"
    return [
        ("a lamppost's day every 10 s, JSON (limit 10,000)", f"{path}&limit=10000", JSON),
        ("a lamppost's day every 10 s, CSV (streamed)", path, "text/csv"),
    ]


async def write_day(config: InfluxConfig, now_ns: int) -> None:
    """A day of `SERIES_DEVICE`'s readings, one every 10 s."""
    kind = DEVICE_KINDS["lamppost"]
    series = series_key(
        raw_measurement(kind.name), {"tenant": "GM0000", "device_id": SERIES_DEVICE}
    )
    lines = []
    for i in range(8640):
        fields: dict[str, float | int | bool | str] = {
            m.name: round(m.minimum + (m.maximum - m.minimum) * ((i * 37) % 100) / 100, 3)
            for m in kind.metrics
        }
        fields["seq"] = i
        lines.append(line(series, fields, now_ns - (8640 - i) * 10 * NS))
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        writer = BatchWriter(client)
        for start in range(0, len(lines), 5000):
            await writer.write(lines[start : start + 5000], retention_policy=RAW_RP)


def compression(variant: str) -> Middleware | None:
    """`variant`'s gzip middleware as the app adds it; None for `none`."""
    if variant == "zlib-5":
        return Middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    if variant.startswith("isal-"):
        return Middleware(GzipAnswers, minimum_size=1024, level=int(variant.removeprefix("isal-")))
    return None


def with_compression(app: FastAPI, variant: str) -> FastAPI:
    """`app` with its gzip middleware replaced by `variant`'s (or removed: `none`)."""
    kept: list[Middleware] = []
    for entry in app.user_middleware:
        kind: object = entry.cls
        if kind is not GZipMiddleware and kind is not GzipAnswers:
            kept.append(entry)
        elif (chosen := compression(variant)) is not None:
            kept.append(chosen)
    app.user_middleware[:] = kept
    return app


async def _middleware_ms(variant: str, start: Message, chunks: list[bytes], repeat: int) -> float:
    """CPU ms (this process, its threads included) of one answer of `chunks` through `variant`'s
    middleware alone, beyond the same answer without it."""

    async def answer(_scope: Scope, _receive: Receive, send: Send) -> None:
        # A fresh start each time: the middleware changes its headers in place.
        await send({**start, "headers": list(start["headers"])})
        for n, chunk in enumerate(chunks, 1):
            await send({"type": "http.response.body", "body": chunk, "more_body": n < len(chunks)})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Message) -> None:
        return None

    scope: Scope = {"type": "http", "method": "GET", "headers": [(b"accept-encoding", b"gzip")]}
    spent = {}
    chosen = compression(variant)
    for label, app in (
        ("plain", answer),
        (
            "through",
            answer if chosen is None else chosen.cls(answer, *chosen.args, **chosen.kwargs),
        ),
    ):
        await app(scope, receive, send)  # warm
        started = time.process_time()
        for _ in range(repeat):
            await app(scope, receive, send)
        spent[label] = (time.process_time() - started) / repeat * 1000
    return spent["through"] - spent["plain"]


def _serve(url: str, influx: InfluxConfig, port: int, variant: str) -> None:
    # uvicorn as the command runs it (lantaarn.serve), with the app's middleware swapped.
    app = with_compression(create_app(ApiConfig(url, influx, anonymous_read=True)), variant)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    )
    asyncio.run(server.serve(sockets=bind(["::1"], port)))


@contextmanager
def api_process(url: str, influx: InfluxConfig, variant: str) -> Iterator[tuple[str, int]]:
    """The API with `variant`'s compression in a child process; yields its base URL and pid."""
    port = free_port()
    child = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(url, influx, port, variant), name=f"api-{variant}"
    )
    child.start()
    base = f"http://[::1]:{port}"
    try:
        wait_live(base, f"the API ({variant})")
    except TimeoutError:
        child.terminate()
        raise
    try:
        assert child.pid is not None
        yield base, child.pid
    finally:
        child.terminate()
        child.join(20)


def _count(answer: httpx.Response) -> int:
    """How many devices or readings an answer holds."""
    if answer.headers["content-type"].startswith("text/csv"):
        return answer.text.count("\n")
    decoded = answer.json()
    if isinstance(decoded, list):
        return len(decoded)
    return len(decoded["features"] if "features" in decoded else decoded["items"])


def measure(
    apis: dict[str, tuple[httpx.Client, int]], path: str, accept: str, rounds: int, per_round: int
) -> dict[str, dict[str, Any]]:
    """Per variant: API CPU ms per answer, p50 ms, bytes sent, and whether it was gzip'd."""
    headers = {"Accept": accept, "Accept-Encoding": "gzip"}
    cpu = dict.fromkeys(apis, 0.0)
    times: dict[str, list[float]] = {v: [] for v in apis}
    sent: dict[str, int] = {}
    encoding: dict[str, str] = {}
    items: set[int] = set()
    size = 0
    plain: httpx.Response | None = None
    for client, _ in apis.values():
        client.get(path, headers=headers)  # warm: the first request compiles the queries
    for _ in range(rounds):
        for variant, (client, pid) in apis.items():
            before = cpu_seconds(pid)
            for _ in range(per_round):
                started = time.perf_counter()
                answer = client.get(path, headers=headers)
                times[variant].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text[:300]
            cpu[variant] += cpu_seconds(pid) - before
            sent[variant] = answer.num_bytes_downloaded
            encoding[variant] = answer.headers.get("content-encoding", "identity")
            # Every variant answers as many devices, whatever its encoding on the wire (the
            # bytes may differ: a device's status moves with the clock).
            items.add(_count(answer))
            size = len(answer.content)
            if variant == "none":
                plain = answer
    assert len(items) == 1, f"the variants answered {sorted(items)} devices"
    assert plain is not None
    # The uncompressed answer again, through each middleware alone, in this process: the
    # compression's own CPU, with none of the route's noise. A streamed answer (no length)
    # as one chunk and the closing empty one, as the CSV route sends a day.
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", plain.headers["content-type"].encode())],
    }
    if "content-length" in plain.headers:
        start["headers"].append((b"content-length", plain.headers["content-length"].encode()))
        chunks = [plain.content]
    else:
        chunks = [plain.content, b""]
    alone = {
        v: asyncio.run(_middleware_ms(v, start, chunks, repeat=rounds * per_round))
        for v in apis
        if v != "none"
    }
    return {
        v: {
            "cpu_ms": cpu[v] / (rounds * per_round) * 1000,
            "p50_ms": statistics.median(times[v]),
            "bytes": sent[v],
            "encoding": encoding[v],
            "json_bytes": size,
            "alone_ms": f"{alone[v]:.2f}" if v in alone else "-",
        }
        for v in apis
    }


def main() -> None:
    """Run the comparison and print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--answers", default="latest,series", help="latest, series or both")
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"## api_compression on {platform.node()}, {os.cpu_count()} cores, load {load}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"`{' '.join(['python -m bench.api_compression', *sys.argv[1:]])}`; "
          f"{args.rounds} rounds of {args.per_round} requests per variant and query\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        url = f"sqlite:///{Path(folder) / 'registry.sqlite3'}"
        now_ns = time.time_ns()
        fill(url, fleet(args.devices), now_ns)
        queries = list(QUERIES) if "latest" in args.answers else []
        influx_config = InfluxConfig("http://[::1]:9", "unused")
        if "series" not in args.answers:
            pass
        elif shutil.which("influxd") or Path("/usr/sbin/influxd").exists():
            influx = private_influx(Path(folder) / "influx")
            stack.callback(influx.stop)
            influx_config = InfluxConfig(influx.url)
            asyncio.run(write_day(influx_config, now_ns))
            queries.extend(series_queries(now_ns))
        else:
            print("(no influxd: the series answers are left out)\n")
        apis: dict[str, tuple[httpx.Client, int]] = {}
        for variant in VARIANTS:
            base, pid = stack.enter_context(api_process(url, influx_config, variant))
            client = stack.enter_context(httpx.Client(base_url=base, timeout=120))
            apis[variant] = (client, pid)
        print("| answer | bytes | variant | API CPU ms/answer | p50 ms | bytes sent | "
              "CPU vs zlib-5 | middleware alone, CPU ms | size vs zlib-5 |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for label, path, accept in queries:
            found = measure(apis, path, accept, args.rounds, args.per_round)
            zlib = found["zlib-5"]
            for variant, row in found.items():
                cpu_change = (row["cpu_ms"] / zlib["cpu_ms"] - 1) * 100
                size_change = (row["bytes"] / zlib["bytes"] - 1) * 100
                print(f"| {label} | {row['json_bytes']:,} | {variant} ({row['encoding']}) | "
                      f"{row['cpu_ms']:.1f} | {row['p50_ms']:.1f} | {row['bytes']:,} | "
                      f"{cpu_change:+.0f} % | {row['alone_ms']} | "
                      f"{size_change:+.0f} % |")  # fmt: skip


if __name__ == "__main__":
    main()
