"""Rollups on real services: two workers, shuffled and late readings, recomputed from raw."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from devices import DEVICE_KINDS, Aggregation
from ingest.rollups import RollupConfig, RollupJob, assigned_kinds
from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Publisher, make_fleet
from simulators.publisher import rfc3339_ms
from tests.platform import running_platform
from tests.timeseries.reference import reference
from timeseries import BatchWriter, InfluxClient
from timeseries.aggregate import STATS
from timeseries.rollups import read_coverage, window_ns
from timeseries.schema import RAW_RP, quote_ident

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
MINUTE = window_ns("1m")


def value_for(metric_name: str, kind: str, step: int, rng: random.Random) -> float:
    metric = DEVICE_KINDS[kind].metric(metric_name)
    assert metric is not None
    if metric.aggregation is Aggregation.COUNTER:
        return float(step * 3 if step < 20 else (step - 20) * 2)  # a reset at step 20
    if metric.aggregation is Aggregation.STATE:
        return float(rng.random() < 0.5)
    low, high = max(metric.minimum, 0.0), min(metric.maximum, 120.0)
    return round(rng.uniform(low, high), 3)


def make_readings(
    kind: str, start_ms: int, count: int, rng: random.Random
) -> list[dict[str, object]]:
    return [
        {
            "ts": rfc3339_ms(start_ms + step * 7_000),
            "seq": step,
            "metrics": {
                m.name: value_for(m.name, kind, step, rng) for m in DEVICE_KINDS[kind].metrics
            },
        }
        for step in range(count)
    ]


async def raw_samples(
    client: InfluxClient, kind: str, metric: str
) -> tuple[list[tuple[int, int, float]], dict[str, int]]:
    """The stored raw samples of one metric, with a series index per device."""
    q = (
        f"SELECT {quote_ident(metric)} FROM {quote_ident(RAW_RP)}.{quote_ident(kind)} "
        'GROUP BY "device_id"'
    )
    devices: dict[str, int] = {}
    out: list[tuple[int, int, float]] = []
    for series in (await client.query(q))[0]:
        index = devices.setdefault(series.tags["device_id"], len(devices))
        out.extend((index, int(t), float(v)) for t, v in series.values if v is not None)
    return out, devices


async def stored_rollups(
    client: InfluxClient, kind: str, metric: str, devices: dict[str, int]
) -> dict[tuple[int, int], dict[str, float]]:
    spec = DEVICE_KINDS[kind].metric(metric)
    assert spec is not None, f"{kind} has no metric {metric}"
    aggregation = spec.aggregation
    names = STATS[aggregation]
    fields = ", ".join(quote_ident(f"{metric}_{n}") for n in names)
    q = f'SELECT {fields} FROM "rollup_1m".{quote_ident(kind + "_1m")} GROUP BY "device_id"'
    out: dict[tuple[int, int], dict[str, float]] = {}
    for series in (await client.query(q))[0]:
        for row in series.values:
            out[(devices[series.tags["device_id"]], int(row[0]))] = {
                n: (float("nan") if v is None else float(v))
                for n, v in zip(names, row[1:], strict=True)
            }
    return out


async def test_rollups_equal_the_aggregation_of_the_raw_readings(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    rng = random.Random(5)
    kinds = ["weather", "noise", "lamppost", "parking", "air_quality"]
    fleet = make_fleet(len(kinds) * 2, tenants=2, seed=3)
    devices = [d for d in fleet.devices if d.kind in kinds][: len(kinds)]
    assert {d.kind for d in devices} == set(kinds)
    wall = time.time_ns()
    start_ms = (wall - 20 * MINUTE) // MINUTE * MINUTE // 1_000_000
    messages: list[tuple[str, bytes]] = []
    readings_per_device = 60  # seven seconds apart: seven 1-minute windows
    for device in devices:
        readings = make_readings(device.kind, start_ms, readings_per_device, rng)
        rng.shuffle(readings)  # out of order on purpose
        for n in range(0, len(readings), 9):
            payload = orjson.dumps({"readings": readings[n : n + 9]})
            messages.append((f"lantaarn/v1/{device.tenant}/{device.device_id}/telemetry", payload))
    rng.shuffle(messages)

    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet, workers=2) as platform:

        def publish(batch: list[tuple[str, bytes]]) -> None:
            with Publisher(BrokerAddress("::1", mosquitto.port), f"pub-{platform.group}") as p:
                for topic, payload in batch:
                    p.publish(topic, payload)
                assert p.flush(30)

        await asyncio.to_thread(publish, messages)
        async with InfluxClient(platform.influx) as client:
            expected_rows = len(devices) * readings_per_device
            async with asyncio.timeout(30):
                while True:
                    counted = 0
                    for kind in kinds:
                        first = DEVICE_KINDS[kind].metrics[0].name
                        result = await client.query(
                            f'SELECT count({quote_ident(first)}) FROM "raw".{quote_ident(kind)}'
                        )
                        counted += sum(int(s.values[0][1]) for s in result[0])
                    if counted >= expected_rows:
                        break
                    await asyncio.sleep(0.2)

            writer = BatchWriter(client)
            clock_ns = start_ms * 1_000_000 + 10 * MINUTE  # windows up to minute 10 are closed
            config = RollupConfig(windows=("1m",), grace_s=0, first_windows=15)
            jobs = [
                RollupJob(client, writer, config, assigned_kinds(i, 2), clock=lambda: clock_ns)
                for i in range(2)
            ]
            assert set(jobs[0].kinds) | set(jobs[1].kinds) == set(DEVICE_KINDS)
            assert not set(jobs[0].kinds) & set(jobs[1].kinds)
            assert sum([await job.tick() for job in jobs]) > 0

            for kind in kinds:
                for metric in DEVICE_KINDS[kind].metrics:
                    samples, index = await raw_samples(client, kind, metric.name)
                    want = reference(metric.aggregation, samples, start_ms * 1_000_000, MINUTE)
                    got = await stored_rollups(client, kind, metric.name, index)
                    assert got.keys() == want.keys(), (kind, metric.name)
                    for key, stats in want.items():
                        for name, value in stats.items():
                            if value != value:  # NaN: not stored
                                assert got[key][name] != got[key][name]
                            elif name == "circular_mean" and stats["r"] < 1e-9:
                                continue
                            else:
                                assert got[key][name] == pytest.approx(value, rel=1e-9, abs=1e-9), (
                                    kind,
                                    metric.name,
                                    key,
                                    name,
                                )

            # A late reading in a window already rolled up: stored raw, counted, and the rollup
            # is right again after a rebuild.
            late = devices[0]
            late_reading = make_readings(late.kind, start_ms + 1_000, 1, rng)
            await asyncio.to_thread(
                publish,
                [
                    (
                        f"lantaarn/v1/{late.tenant}/{late.device_id}/telemetry",
                        orjson.dumps({"readings": late_reading}),
                    )
                ],
            )
            metric = DEVICE_KINDS[late.kind].metrics[0]
            async with asyncio.timeout(15):
                while True:
                    samples, index = await raw_samples(client, late.kind, metric.name)
                    if len(samples) > readings_per_device:
                        break
                    await asyncio.sleep(0.1)
            want = reference(metric.aggregation, samples, start_ms * 1_000_000, MINUTE)
            first_window = (index[late.device_id], start_ms * 1_000_000)
            before = await stored_rollups(client, late.kind, metric.name, index)
            assert before[first_window]["count"] == want[first_window]["count"] - 1
            # As an operator would: the command, against this database.
            env = {
                **os.environ,
                "LANTAARN_INFLUX__URL": platform.influx.url,
                "LANTAARN_INFLUX__DATABASE": platform.influx.database,
            }
            command = [
                sys.executable, "-m", "lantaarn", "rollups", "rebuild", "--window", "1m",
                "--kind", late.kind, "--start", rfc3339_ms(start_ms - 30 * 60_000),
                "--end", rfc3339_ms(clock_ns // 1_000_000),
            ]  # fmt: skip
            rebuilt = await asyncio.to_thread(
                subprocess.run, command, env=env, capture_output=True, text=True, check=False
            )
            assert rebuilt.returncode == 0, rebuilt.stderr
            assert "rebuilt" in rebuilt.stdout
            after = await stored_rollups(client, late.kind, metric.name, index)
            assert after[first_window]["count"] == want[first_window]["count"]
            # ...and rollups are now known good from the rebuilt start on.
            coverage = (await read_coverage(client, late.kind, "1m"))[(late.kind, "1m")]
            assert coverage.since <= (start_ms - 30 * 60_000) * 1_000_000
    assert sum(s.late_values for s in platform.stats) >= len(DEVICE_KINDS[late.kind].metrics)


async def test_a_late_reading_is_rolled_up_again_by_itself(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(8, tenants=1, seed=4)
    device = next(d for d in fleet.devices if d.kind == "noise")
    topic = f"lantaarn/v1/{device.tenant}/{device.device_id}/telemetry"
    minute_ms = MINUTE // 1_000_000
    start_ms = (time.time_ns() // 1_000_000 - 20 * minute_ms) // minute_ms * minute_ms
    first = [
        {"ts": rfc3339_ms(start_ms + n * 10_000), "metrics": {"laeq": 50.0 + n}}
        for n in range(12)  # two minutes
    ]
    rollups = RollupConfig(windows=("1m",), grace_s=0, tick_s=0.2, first_windows=40)
    async with running_platform(
        mosquitto, influx, tmp_path, fleet=fleet, rollups=rollups
    ) as platform:
        with Publisher(BrokerAddress("::1", mosquitto.port), f"p-{platform.group}") as p:
            p.publish(topic, orjson.dumps({"readings": first}))
            assert p.flush(30)

        async def first_minute_count() -> int:
            async with InfluxClient(platform.influx) as client:
                result = await client.query(
                    f'SELECT "laeq_count" FROM "rollup_1m"."noise_1m" WHERE time = {start_ms}ms'
                )
            return int(result[0][0].values[0][1]) if result[0] else 0

        async with asyncio.timeout(20):
            while True:
                if await first_minute_count() >= 6:
                    break
                await asyncio.sleep(0.2)
        late = {"ts": rfc3339_ms(start_ms + 5_000), "metrics": {"laeq": 90.0}}
        with Publisher(BrokerAddress("::1", mosquitto.port), f"q-{platform.group}") as p:
            p.publish(topic, orjson.dumps(late))
            assert p.flush(30)
        async with asyncio.timeout(20):
            while True:
                if await first_minute_count() >= 7:
                    break
                await asyncio.sleep(0.2)
        assert await first_minute_count() == 7
    assert sum(s.late_values for s in platform.stats) >= 1
