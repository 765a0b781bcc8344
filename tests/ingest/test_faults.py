"""Fault tests on real processes: crashes, a database outage, a broker restart, a refused batch.

Each one reconciles what was published with what was stored and set aside: every reading is
stored exactly once with the values sent, or rejected with its reason; none is lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from devices import Registry
from lantaarn.localstack import Influx, Mosquitto, free_port, private_influx, private_mosquitto
from lantaarn.seed import register_fleet
from simulators import make_fleet
from simulators.publisher import rfc3339_ms
from tests.conftest import require_program
from tests.ingest.processes import WorkerProcess, publish_all
from timeseries import InfluxClient, InfluxConfig, InfluxError
from timeseries.schema import RAW_RP, quote_ident

pytestmark = pytest.mark.slow

KINDS = ("air_quality", "weather", "noise")


@dataclass
class Stack:
    """A private broker, database, registry and the environment for worker processes."""

    folder: Path
    mosquitto: Mosquitto
    influx: Influx
    env: dict[str, str]
    devices: list[tuple[str, str, str]]  # (tenant, device id, kind)
    workers: list[WorkerProcess]

    def worker(self, index: int = 0) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.folder / f"worker-{index}.log", index)
        self.workers.append(worker)
        return worker


@contextmanager
def private_stack(tmp_path: Path, *, seed: int, metrics_port: int) -> Iterator[Stack]:
    """A private broker, database and registry, and the environment for worker processes."""
    require_program("mosquitto", "mosquitto")
    require_program("influxd", "influxdb")
    mosquitto = private_mosquitto(tmp_path / "mosquitto")
    influx = private_influx(tmp_path / "influxdb")
    fleet = make_fleet(60, tenants=2, seed=seed)
    registry_url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(registry_url) as registry:
        register_fleet(registry, fleet)
    env = {
        "LANTAARN_REGISTRY_URL": registry_url,
        "LANTAARN_MQTT__HOST": "::1",
        "LANTAARN_MQTT__PORT": str(mosquitto.port),
        "LANTAARN_INFLUX__URL": influx.url,
        "LANTAARN_INGEST__RECEIVE_MAXIMUM": "500",
        "LANTAARN_INGEST__BATCH_MESSAGES": "250",
        "LANTAARN_INGEST__ROLLUP_WINDOWS": "[]",
        "LANTAARN_LOG_LEVEL": "INFO",
        "LANTAARN_INGEST__METRICS_PORT": str(metrics_port),
    }
    devices = [(d.tenant, d.device_id, d.kind) for d in fleet.devices if d.kind in KINDS]
    stack = Stack(tmp_path, mosquitto, influx, env, devices, [])
    try:
        yield stack
    finally:
        for worker in stack.workers:
            worker.stop()
        mosquitto.stop()
        influx.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with private_stack(tmp_path, seed=21, metrics_port=free_port()) as made:
        yield made


VALUES = {
    "air_quality": lambda n: {"pm25": 1.0 + n % 97, "no2": 0.5 * (n % 311), "temperature": -3.25},
    "weather": lambda n: {"wind_speed": (n % 50) / 2, "wind_direction": float(n % 360)},
    "noise": lambda n: {"laeq": 40.0 + n % 60, "lamax": 70.5},
}


def readings(stack: Stack, count: int, first: int = 0) -> dict[tuple[str, int], dict[str, float]]:
    """`count` readings spread over the devices: (device id, ts ns) -> metrics."""
    base_ms = (time.time_ns() // 1_000_000) - 3_600_000
    out = {}
    for n in range(first, first + count):
        _tenant, device_id, kind = stack.devices[n % len(stack.devices)]
        out[(device_id, (base_ms + n) * 1_000_000)] = VALUES[kind](n)
    return out


def messages(
    stack: Stack, sent: dict[tuple[str, int], dict[str, float]]
) -> list[tuple[str, bytes]]:
    owner = {d: t for t, d, _k in stack.devices}
    return [
        (
            f"lantaarn/v1/{owner[device_id]}/{device_id}/telemetry",
            orjson.dumps({"ts": rfc3339_ms(ts // 1_000_000), "metrics": metrics}),
        )
        for (device_id, ts), metrics in sent.items()
    ]


# What InfluxDB holds: (device id, ts ns) -> metrics; a string value only in the poisoned test.
Stored = dict[tuple[str, int], dict[str, float | str]]


async def stored(stack: Stack) -> Stored:
    out: Stored = {}
    async with InfluxClient(InfluxConfig(stack.influx.url)) as client:
        for kind in KINDS:
            q = f'SELECT * FROM {quote_ident(RAW_RP)}.{quote_ident(kind)} GROUP BY "device_id"'
            for series in (await client.query(q))[0]:
                names = series.columns
                for row in series.values:
                    metrics = {
                        n: v if isinstance(v, str) else float(v)
                        for n, v in zip(names, row, strict=True)
                        if v is not None and n not in ("time", "tenant", "seq", "ts_assigned")
                    }
                    out[(series.tags["device_id"], int(row[0]))] = metrics
    return out


async def rejected(stack: Stack) -> dict[str, int]:
    async with InfluxClient(InfluxConfig(stack.influx.url)) as client:
        q = f'SELECT sum("values") FROM {quote_ident(RAW_RP)}."rejection" GROUP BY "reason"'
        result = (await client.query(q))[0]
    return {s.tags["reason"]: int(s.values[0][1]) for s in result}


async def wait_until_stored(stack: Stack, want: int, timeout_s: float = 90.0) -> Stored:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = await stored(stack)
        except InfluxError:
            got = {}
        if len(got) >= want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.3)


def in_background(stack: Stack, payloads: list[tuple[str, bytes]], rate: float) -> threading.Thread:
    thread = threading.Thread(
        target=publish_all, args=(stack.mosquitto.port, payloads, rate), daemon=True
    )
    thread.start()
    return thread


def assert_reconciled(sent: dict[tuple[str, int], dict[str, float]], got: Stored) -> None:
    missing = sent.keys() - got.keys()
    extra = got.keys() - sent.keys()
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} readings stored that were never sent"
    wrong = [k for k in sent if got[k] != sent[k]]
    assert not wrong, f"{len(wrong)} readings stored with other values, e.g. {wrong[:2]}"


@pytest.mark.anyio
async def test_a_worker_killed_mid_stream_loses_nothing(stack: Stack) -> None:
    sent = readings(stack, 12_000)
    worker = stack.worker()
    worker.start()
    publisher = in_background(stack, messages(stack, sent), rate=4000)
    await asyncio.sleep(1.2)
    worker.kill()  # kill -9: whatever it held unacknowledged must come back
    await asyncio.sleep(0.5)
    worker.start()
    await asyncio.to_thread(publisher.join, 60)
    got = await wait_until_stored(stack, len(sent))
    assert_reconciled(sent, got)
    # And a clean stop (SIGTERM) mid-stream is quick and loses nothing either.
    more = readings(stack, 6000, first=len(sent))
    publisher = in_background(stack, messages(stack, more), rate=4000)
    await asyncio.sleep(0.7)
    assert worker.terminate() < 10.0
    worker.start()
    await asyncio.to_thread(publisher.join, 60)
    got = await wait_until_stored(stack, len(sent) + len(more))
    worker.terminate()
    assert_reconciled(sent | more, got)
    assert await rejected(stack) == {}


@pytest.mark.anyio
async def test_an_influxdb_outage_under_load_loses_nothing(stack: Stack) -> None:
    sent = readings(stack, 70_000)  # 70 s at 1,000/s: it goes on after the outage
    worker = stack.worker()
    worker.start()
    publisher = in_background(stack, messages(stack, sent), rate=1000)
    await asyncio.sleep(1.0)
    stack.influx.stop()
    await asyncio.sleep(20.0)  # the worker holds its acks, the broker the backlog
    # Stopping while a batch cannot be stored still takes less than 10 s (it stays unacked).
    assert worker.terminate() < 10.0
    await asyncio.sleep(40.0)  # a minute in all
    stack.influx.start()
    worker.start()
    await asyncio.to_thread(publisher.join, 60)
    got = await wait_until_stored(stack, len(sent))
    worker.terminate()
    assert_reconciled(sent, got)
    log = (stack.folder / "worker-0.log").read_text()
    assert "retry" in log  # it did see the outage


@pytest.mark.anyio
async def test_a_broker_restart_loses_nothing(stack: Stack) -> None:
    first = readings(stack, 5000)
    worker = stack.worker()
    worker.start()
    # Queue a backlog in the broker while the worker is down, then restart the broker.
    worker.terminate()
    await asyncio.to_thread(publish_all, stack.mosquitto.port, messages(stack, first))
    stack.mosquitto.stop()
    stack.mosquitto.start()
    worker.start()
    second = readings(stack, 3000, first=len(first))
    await asyncio.to_thread(publish_all, stack.mosquitto.port, messages(stack, second))
    got = await wait_until_stored(stack, len(first) + len(second))
    worker.terminate()
    assert_reconciled(first | second, got)


@pytest.mark.anyio
async def test_a_batch_influxdb_refuses_in_part_keeps_the_rest(stack: Stack) -> None:
    sent = readings(stack, 900)
    worker = stack.worker()
    worker.start()  # it sets up the database and retention policies
    # A string where ingest writes floats: InfluxDB refuses every air_quality line in that shard.
    async with InfluxClient(InfluxConfig(stack.influx.url)) as client:
        first_ts = min(ts for _d, ts in sent)
        await client.write(
            f'air_quality,tenant=X,device_id=poison pm25="text" {first_ts}\n'.encode(),
            retention_policy=RAW_RP,
        )
    await asyncio.to_thread(publish_all, stack.mosquitto.port, messages(stack, sent))
    kinds = {d: k for _t, d, k in stack.devices}
    fine = {k: v for k, v in sent.items() if kinds[k[0]] != "air_quality"}
    refused_values = sum(len(v) for k, v in sent.items() if kinds[k[0]] == "air_quality")
    got = await wait_until_stored(stack, len(fine) + 1, timeout_s=60)
    del got[("poison", first_ts)]
    deadline = time.monotonic() + 30
    while (await rejected(stack)).get("storage_refused", 0) < refused_values:
        assert time.monotonic() < deadline, await rejected(stack)
        await asyncio.sleep(0.3)
    # The worker counts them on /metrics too.
    port = stack.env["LANTAARN_INGEST__METRICS_PORT"]
    async with httpx.AsyncClient(timeout=5) as http:
        metrics = (await http.get(f"http://[::1]:{port}/metrics")).text
    counted = (
        'lantaarn_ingest_values_rejected_total{reason="storage_refused",worker="ingest-0"} '
        f"{float(refused_values)}"
    )
    assert counted in metrics
    worker.terminate()
    assert_reconciled(fine, got)
    assert await rejected(stack) == {"storage_refused": refused_values}
