"""A device registered or retired while the platform runs: the worker's view and the API's fleet
follow the change (Mosquitto, ingest worker, InfluxDB, API; no restart)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from devices import Device, topic
from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Publisher, make_fleet
from tests.platform import running_platform

pytestmark = pytest.mark.anyio


async def _latest_ids(http: httpx.AsyncClient) -> set[str]:
    response = await http.get("/v1/latest")
    assert response.status_code == 200, response.text
    return {item["deviceId"] for item in response.json()}


async def test_a_device_added_then_retired_at_run_time_is_taken_then_refused(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(4, tenants=1, seed=5)
    new = Device("gm-late-00001", fleet.tenants[0].code, "air_quality", "Late sensor", 52.37, 4.89)
    seq = itertools.count(1)
    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet) as platform:
        publisher = Publisher(BrokerAddress("::1", mosquitto.port), f"late-{platform.group}")

        def send() -> None:
            reading = {"ts": datetime.now(UTC).isoformat(), "seq": next(seq)}
            payload = orjson.dumps({**reading, "metrics": {"pm25": 9.5}})
            publisher.publish(topic(new.tenant, new.device_id), payload)
            assert publisher.flush(10)

        async def until(check: str) -> None:
            """Publish a reading every 0.3 s until the API shows `check` happened."""
            url, wanted = {
                "stored": (f"/v1/devices/{new.device_id}/readings", "items"),
                "refused": ("/v1/rejections", "items"),
            }[check]
            params = (
                {} if check == "stored" else {"deviceId": new.device_id, "reason": "device_retired"}
            )
            async with asyncio.timeout(30):
                while True:
                    await asyncio.to_thread(send)
                    await asyncio.sleep(0.3)
                    response = await platform.http.get(url, params=params)
                    if response.status_code == 200 and response.json()[wanted]:
                        return

        with publisher:
            await asyncio.to_thread(platform.registry.add_device, new)
            await until("stored")
            assert new.device_id in await _latest_ids(platform.http)

            await asyncio.to_thread(platform.registry.retire, new.device_id)
            await until("refused")
            assert new.device_id not in await _latest_ids(platform.http)
            rejections = (
                await platform.http.get("/v1/rejections", params={"deviceId": new.device_id})
            ).json()["items"]
            # Readings sent before the worker saw the device at all were unknown to it.
            assert {r["reason"] for r in rejections} <= {"device_retired", "unknown_device"}

    stats = platform.stats[0]
    assert stats.rejected["device_retired"] >= 1
    assert set(stats.rejected) <= {"device_retired", "unknown_device"}
