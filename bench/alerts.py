"""The alert evaluator at fleet scale: how long a round takes, and how long from a condition
becoming true (its reading stored) to the webhook arriving.

A private InfluxDB, a SQLite registry with `--devices` devices over 10 tenants (air quality,
noise, water level) and `--rules` rules (thresholds on 1-hour and 15-minute means, 5-minute
maxima, energetic means, latest values, with boxes; silence and data quality per tenant). An
hour of readings (one a minute per device) and its 1-minute rollups are stored first; then,
as the ingest workers would, a reading per device every minute and the rollups of each closed
minute. The evaluator runs in this process (a round every `--interval` s) with a webhook channel
to a receiver here. Every so often one device's reading crosses a rule (a high water level, a
pm25 spike beyond a 5-minute maximum): the delay is from that write's answer to the webhook.

    .venv/bin/python -m bench.alerts --devices 10000 --rules 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from alerting import Evaluator, EvaluatorConfig
from alerting.channels import WebhookChannel
from alerting.conditions import selected
from devices import Device, Registry, Tenant
from devices.alert_rules import AlertRule, RuleType
from devices.model import BoundingBox
from lantaarn.localstack import private_influx
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.rollups import Coverage, rebuild, write_coverage
from timeseries.schema import RAW_RP

RESULTS = Path(__file__).resolve().parent / "results" / "alerts.md"
NS = 1_000_000_000
MINUTE = 60 * NS
TENANTS = [f"GM{n:04d}" for n in range(100, 110)]
KINDS = (("air_quality", "pm25", 10.0), ("noise", "laeq", 45.0), ("water_level", "level", 0.5))


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


@contextmanager
def _receiver(arrivals: dict[str, float]) -> Iterator[str]:
    """A webhook receiver recording when each device's firing notice arrived (monotonic s)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            alert = body["alert"]
            if body["event"] == "firing" and alert["deviceId"]:
                arrivals.setdefault(alert["deviceId"], time.monotonic())
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _V6Server(("::1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://[::1]:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _fleet(count: int) -> list[Device]:
    out = []
    for i in range(count):
        tenant = TENANTS[i % len(TENANTS)]
        kind = KINDS[0 if i % 5 < 2 else 1 if i % 5 < 4 else 2][0]
        out.append(
            Device(
                f"b-{i:06d}",
                tenant,
                kind,
                f"Device {i}",
                52.0 + (i % 100) * 0.01,
                4.0 + (i // 100 % 100) * 0.01,
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
    return out


def _rules(count: int) -> list[AlertRule]:
    """`count` rules spread over the tenants; baseline readings never cross them."""
    boxes = [
        BoundingBox(4.0, 52.0, 4.5, 52.5),
        BoundingBox(4.5, 52.0, 5.0, 52.5),
        BoundingBox(4.0, 52.5, 4.5, 53.0),
        BoundingBox(4.5, 52.5, 5.0, 53.0),
        None,
    ]
    templates = [
        {
            "kind": "air_quality",
            "metric": "pm25",
            "statistic": "mean",
            "window": "1h",
            "fire_at": 25.0,
            "resolve_at": 20.0,
            "for_s": 600,
        },
        {
            "kind": "air_quality",
            "metric": "pm25",
            "statistic": "mean",
            "window": "15m",
            "fire_at": 40.0,
            "resolve_at": 30.0,
        },
        {
            "kind": "air_quality",
            "metric": "pm25",
            "statistic": "max",
            "window": "5m",
            "fire_at": 100.0,
            "resolve_at": 80.0,
        },
        {
            "kind": "noise",
            "metric": "laeq",
            "statistic": "energetic_mean",
            "window": "15m",
            "fire_at": 65.0,
            "resolve_at": 60.0,
        },
        {
            "kind": "noise",
            "metric": "laeq",
            "statistic": "max",
            "window": "5m",
            "fire_at": 95.0,
            "resolve_at": 90.0,
        },
        {
            "kind": "water_level",
            "metric": "level",
            "statistic": "last",
            "window": "15m",
            "fire_at": 1.5,
            "resolve_at": 1.4,
        },
    ]
    out: list[AlertRule] = []
    for tenant in TENANTS:
        out.append(AlertRule(tenant, "silent", RuleType.SILENCE, factor=3.0))
        out.append(AlertRule(tenant, "garbage", RuleType.QUALITY, max_share=0.2))
    n = 0
    while len(out) < count:
        template = templates[n % len(templates)]
        box = boxes[(n // len(templates)) % len(boxes)]
        tenant = TENANTS[n % len(TENANTS)]
        out.append(
            AlertRule(tenant, f"rule {n}", RuleType.THRESHOLD, bbox=box, **template)  # type: ignore[arg-type]
        )
        n += 1
    return out[:count]


def _lines(devices: list[Device], at_ns: int, seq: int, rng: random.Random) -> list[str]:
    base = {k: (m, v) for k, m, v in KINDS}
    out = []
    for d in devices:
        metric, value = base[d.kind]
        key = series_key(d.kind, {"tenant": d.tenant, "device_id": d.device_id})
        jitter = rng.uniform(-0.1, 0.1) * value
        out.append(line(key, {metric: round(value + jitter, 3), "seq": seq}, at_ns))
    return out


async def _write(client: InfluxClient, lines: list[str]) -> None:
    for at in range(0, len(lines), 5000):
        body = ("\n".join(lines[at : at + 5000]) + "\n").encode()
        await client.write(body, retention_policy=RAW_RP)


async def _roll(client: InfluxClient, start_ns: int, end_ns: int) -> None:
    writer = BatchWriter(client)
    for kind, _, _ in KINDS:
        for at in range(start_ns, end_ns, 10 * MINUTE):
            await rebuild(client, writer, kind, "1m", at, min(end_ns, at + 10 * MINUTE))
    for kind, _, _ in KINDS:
        await write_coverage(writer, kind, "1m", Coverage(start_ns - 7200 * NS, end_ns))


async def bench(args: argparse.Namespace) -> str:
    rng = random.Random(7)
    folder = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    influx = private_influx(folder / "influx")
    try:
        devices = _fleet(args.devices)
        rules = _rules(args.rules)
        with Registry(f"sqlite:///{folder / 'registry.sqlite3'}") as registry:
            for tenant in TENANTS:
                registry.add_tenant(Tenant(tenant, tenant))
            registry.add_devices(devices)
            for rule in rules:
                registry.add_rule(rule)
            async with InfluxClient(InfluxConfig(influx.url, timeout_s=60)) as client:
                await ensure_schema(client, Retention())
                now_ns = time.time_ns()
                this_minute = now_ns - now_ns % MINUTE
                started = time.monotonic()
                history: list[str] = []
                for m in range(60, 0, -1):
                    history += _lines(devices, this_minute - m * MINUTE + 30 * NS, 60 - m, rng)
                await _write(client, history)
                seeded_s = time.monotonic() - started
                await _roll(client, this_minute - 60 * MINUTE, this_minute)
                prepared_s = time.monotonic() - started
                return await _measure(args, registry, client, devices, rng, seeded_s, prepared_s)
    finally:
        influx.stop()


async def _measure(
    args: argparse.Namespace,
    registry: Registry,
    client: InfluxClient,
    devices: list[Device],
    rng: random.Random,
    seeded_s: float,
    prepared_s: float,
) -> str:
    arrivals: dict[str, float] = {}
    rounds: list[float] = []
    stop = asyncio.Event()
    with _receiver(arrivals) as url:
        evaluator = Evaluator(
            registry,
            client,
            [WebhookChannel(url, b"bench")],
            EvaluatorConfig("bench", interval_s=args.interval),
        )

        async def evaluate() -> None:
            while not stop.is_set():
                report = await evaluator.step()
                if report is not None:
                    rounds.append(report.seconds)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.interval)

        async def ingest_like() -> None:
            """A reading per device each minute and the rollups of each closed minute."""
            seq = 100
            while not stop.is_set():
                now_ns = time.time_ns()
                await _write(client, _lines(devices, now_ns, seq, rng))
                seq += 1
                closed = now_ns - now_ns % MINUTE
                await _roll(client, closed - MINUTE, closed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 60)

        tasks = [asyncio.create_task(evaluate()), asyncio.create_task(ingest_like())]
        await asyncio.sleep(2 * args.interval)  # the first rounds read everything once
        # Devices some rule of their tenant watches, for each kind of trigger.
        rules = registry.rules(enabled_only=True)
        targets = {
            kind: sorted(
                {
                    d.device_id: d
                    for r in rules
                    if r.kind == kind and r.statistic == statistic
                    for d in selected(r, devices)
                }.values(),
                key=lambda d: d.device_id,
            )
            for kind, statistic in (("water_level", "last"), ("air_quality", "max"))
        }
        written: dict[str, float] = {}
        for n in range(args.triggers):
            await asyncio.sleep(rng.uniform(3, 3 * args.interval))
            kind = "water_level" if n % 2 == 0 or not targets["air_quality"] else "air_quality"
            device = targets[kind].pop(rng.randrange(len(targets[kind])))
            metric, value = ("level", 2.5) if kind == "water_level" else ("pm25", 400.0)
            key = series_key(kind, {"tenant": device.tenant, "device_id": device.device_id})
            await _write(client, [line(key, {metric: value, "seq": 999}, time.time_ns())])
            written[device.device_id] = time.monotonic()
        deadline = time.monotonic() + 90
        # The receiver is a thread: poll what it recorded.
        while time.monotonic() < deadline and not set(written) <= set(arrivals):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
    delays = sorted(arrivals[d] - t for d, t in written.items() if d in arrivals)
    missing = len(written) - len(delays)
    command = "python -m bench.alerts " + " ".join(sys.argv[1:])
    return f"""
## Alerts: {args.devices:,} devices, {args.rules} rules ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)

`{command}` on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}),
everything on one machine (InfluxDB 1.6, SQLite registry, evaluator, the writer standing in for
the ingest workers). Seeding an hour of readings took {seeded_s:.0f} s, with its rollups
{prepared_s:.0f} s.

| | value |
| --- | --- |
| rounds | {len(rounds)} (every {args.interval:g} s) |
| round time, median / max | {statistics.median(rounds):.2f} s / {max(rounds):.2f} s |
| conditions made true | {len(written)} |
| notified | {len(delays)} ({missing} missing) |
| delay write → webhook, median / max | {_median(delays):.1f} s / {_max(delays):.1f} s |
| delays (s) | {", ".join(f"{d:.1f}" for d in delays)} |
"""


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _max(values: list[float]) -> float:
    return max(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    parser.add_argument("--triggers", type=int, default=8)
    parser.add_argument("--no-save", action="store_true", help="do not append to the results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(bench(args))
    print(report)
    if not args.no_save:
        with RESULTS.open("a") as out:
            out.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
