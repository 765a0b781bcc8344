"""Each message is stored once: readings without `ts` that arrive together, and a rejected
message the broker hands out again after a restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from devices import Registry
from ingest import BrokerConfig, Worker, run_worker
from lantaarn.localstack import Influx, Mosquitto, private_mosquitto
from lantaarn.seed import register_fleet
from lantaarn.settings import IngestSettings
from simulators import make_fleet
from tests.conftest import require_program
from tests.ingest.processes import publish_all
from tests.platform import running_platform
from timeseries import InfluxClient, InfluxConfig, Retention

pytestmark = pytest.mark.anyio


async def count(client: InfluxClient, query: str) -> int:
    result = await client.query(query)
    return int(result[0][0].values[0][1]) if result[0] else 0


async def received(workers: list[Worker], messages: int, timeout_s: float = 60) -> None:
    """Wait until the second run of the worker took `messages` messages."""
    async with asyncio.timeout(timeout_s):
        while True:
            if workers[1:] and workers[1].stats.messages >= messages:
                return
            await asyncio.sleep(0.1)


async def test_fifty_readings_without_ts_sent_at_once_are_all_stored(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(4, tenants=1, seed=3)
    aq = next(d for d in fleet.devices if d.kind == "air_quality")
    topic = f"lantaarn/v1/{aq.tenant}/{aq.device_id}/telemetry"
    messages = [(topic, orjson.dumps({"metrics": {"pm25": float(n)}})) for n in range(50)]
    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet) as platform:
        await asyncio.to_thread(publish_all, mosquitto.port, messages)  # all acknowledged
        query = 'SELECT count("pm25") FROM "raw"."air_quality" WHERE "ts_assigned" = true'
        async with InfluxClient(platform.influx) as client:
            deadline = time.monotonic() + 15
            while True:
                stored = await count(client, query)
                if stored >= 50 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            values = await client.query('SELECT "pm25" FROM "raw"."air_quality"')
    assert sum(s.messages for s in platform.stats) == 50
    assert stored == 50  # each its own time, still marked as stamped on arrival
    assert sorted(row[1] for row in values[0][0].values) == [float(n) for n in range(50)]


async def test_a_rejected_message_redelivered_after_a_broker_crash_is_recorded_once(
    influx: Influx, tmp_path: Path
) -> None:
    require_program("mosquitto", "mosquitto")
    broker = private_mosquitto(tmp_path / "mosquitto")
    fleet = make_fleet(4, tenants=1, seed=4)
    aq = next(d for d in fleet.devices if d.kind == "air_quality")
    bad = (f"lantaarn/v1/{aq.tenant}/{aq.device_id}/telemetry", b"{not json")
    tag = uuid.uuid4().hex[:8]
    database = InfluxConfig(influx.url, database=f"test_{tag}")
    config = replace(
        IngestSettings(share_group=f"g{tag}", client_id_prefix=f"w{tag}").worker(0),
        rollups=replace(IngestSettings().worker(0).rollups, windows=()),
    )
    broker_config = BrokerConfig("::1", broker.port, session_expiry_s=300)
    workers: list[Worker] = []
    try:
        with Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}") as registry:
            register_fleet(registry, fleet)

            async def run_until(stop: asyncio.Event, *, leave_at_once: bool = False) -> None:
                ready = asyncio.Event()
                run = asyncio.create_task(
                    run_worker(
                        config,
                        broker_config,
                        database,
                        registry,
                        Retention(),
                        stop,
                        ready,
                        observe=workers.append,
                    )
                )
                async with asyncio.timeout(30):
                    await ready.wait()
                if leave_at_once:
                    stop.set()
                await run

            # A first run makes the worker's session and subscription; the broker saves them.
            await run_until(asyncio.Event(), leave_at_once=True)
            # The bad message waits for the worker in its session, and is saved with it.
            await asyncio.to_thread(publish_all, broker.port, [bad])
            broker.stop()
            broker.start()
            stop = asyncio.Event()
            running = asyncio.create_task(run_until(stop))
            await received(workers, 1)
            # Rejected, stored and acknowledged; the broker dies before it saves that (it
            # saves every 30 s) and hands the message out again once it is back.
            await asyncio.sleep(1.0)
            broker.service.kill()
            broker.start()
            await received(workers, 2)
            stop.set()
            await running
        async with InfluxClient(database) as client:
            points = await count(client, 'SELECT count("values") FROM "raw"."rejection"')
    finally:
        broker.stop()
    assert workers[1].stats.rejected["bad_json"] == 2  # seen twice...
    assert points == 1  # ...stored once
