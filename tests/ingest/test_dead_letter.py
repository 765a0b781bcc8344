"""The dead-letter keeps every rejection, also many from one message at one receive time.

(It used to number them modulo 1,000 from the receive time: the 1,001st overwrote the first.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Publisher, make_fleet
from tests.platform import running_platform
from timeseries import InfluxClient

pytestmark = pytest.mark.anyio


async def test_seven_hundred_readings_with_two_bad_metrics_each_keep_all_their_rejections(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(4, tenants=1, seed=2)
    aq = next(d for d in fleet.devices if d.kind == "air_quality")
    base_ms = time.time_ns() // 1_000_000 - 3_600_000
    readings = [
        {"ts": (base_ms + n) / 1000, "metrics": {"pm25": -1, "no2": 9e9, "pm10": 3}}
        for n in range(700)
    ]
    payload = orjson.dumps({"readings": readings})
    assert len(payload) < 64 * 1024
    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet) as platform:
        with Publisher(BrokerAddress("::1", mosquitto.port), f"p-{platform.group}") as publisher:
            publisher.publish(f"lantaarn/v1/{aq.tenant}/{aq.device_id}/telemetry", payload)
            assert publisher.flush(30)
        async with InfluxClient(platform.influx) as client:
            async with asyncio.timeout(20):
                while True:
                    result = await client.query(
                        'SELECT count("values"), sum("values") FROM "raw"."rejection"'
                    )
                    rows = result[0][0].values if result[0] else [[0, 0, 0]]
                    if rows[0][1] >= 1400:
                        break
                    await asyncio.sleep(0.2)
            stored = await client.query('SELECT count("pm10") FROM "raw"."air_quality"')
    assert rows[0][1] == 1400  # points: not one overwritten by another
    assert rows[0][2] == 1400  # metric values they stand for
    assert stored[0][0].values[0][1] == 700  # and every neighbour kept
    assert sum(s.rejected["out_of_range"] for s in platform.stats) == 1400
