"""Aggregates, rejections and activity on real services, from raw readings and from rollups."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import orjson
import pytest

from devices import Aggregation
from ingest.rollups import RollupConfig, RollupJob
from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Publisher, make_fleet
from simulators.publisher import rfc3339_ms
from tests.platform import running_platform
from tests.timeseries.reference import reference
from timeseries import BatchWriter, InfluxClient

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
HOUR_MS = 3_600_000


async def test_aggregates_from_raw_and_rollups_agree_with_the_readings_sent(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(12, tenants=2, seed=11)
    noise = next(d for d in fleet.devices if d.kind == "noise")
    other_tenant = next(d for d in fleet.devices if d.tenant != noise.tenant)
    start_ms = (time.time_ns() // 1_000_000 - 4 * HOUR_MS) // HOUR_MS * HOUR_MS
    sent: list[tuple[int, int, float]] = []  # series 0, time ns, laeq
    readings = []
    for step in range(90):  # every two minutes for three hours
        ts_ms = start_ms + step * 120_000
        laeq = 45.0 + (step * 7) % 30
        sent.append((0, ts_ms * 1_000_000, laeq))
        readings.append({"ts": rfc3339_ms(ts_ms), "metrics": {"laeq": laeq, "lamax": laeq + 10}})
    topic = f"lantaarn/v1/{noise.tenant}/{noise.device_id}/telemetry"
    messages = [(topic, orjson.dumps({"readings": readings[n : n + 30]})) for n in (0, 30, 60)]
    bad = {"metrics": {"laeq": 999.0, "lamax": 60.0, "pm25": 3.0}}
    messages.append((topic, orjson.dumps(bad)))

    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet) as platform:
        with Publisher(BrokerAddress("::1", mosquitto.port), f"p-{platform.group}") as publisher:
            for name, payload in messages:
                publisher.publish(name, payload)
            assert publisher.flush(30)
        http = platform.http
        start = rfc3339_ms(start_ms)
        end = rfc3339_ms(start_ms + 3 * HOUR_MS)
        url = f"/v1/devices/{noise.device_id}/aggregates"
        async with asyncio.timeout(20):
            while True:
                response = await http.get(
                    url, params={"metric": "laeq", "interval": "15m", "start": start, "end": end}
                )
                assert response.status_code == 200, response.text
                body = response.json()
                if sum(item["count"] for item in body["items"]) >= len(sent):
                    break
                await asyncio.sleep(0.2)
        assert body["source"] == "raw"
        assert body["aggregation"] == "level_db"
        assert body["unit"] == "dB"
        want = reference(Aggregation.LEVEL_DB, sent, start_ms * 1_000_000, 900 * NS)
        assert len(body["items"]) == len(want) == 12
        for item in body["items"]:
            stats = want[(0, _ns(item["start"]))]
            assert item["count"] == stats["count"]
            assert item["energeticMean"] == pytest.approx(stats["energetic_mean"], rel=1e-12)
            assert item["max"] == stats["max"]
            assert "mean" not in item
        raw_quarters = body["items"]

        # Decibels never average arithmetically; every problem is named.
        response = await http.get(url, params={"metric": "laeq", "functions": "mean,median"})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        reasons = [p["reason"] for p in response.json()["invalidParams"]]
        assert len(reasons) == 2
        assert "energeticMean" in reasons[0]

        # Once the rollups cover the range, answers come from them, with the same figures.
        async with InfluxClient(platform.influx) as client:
            clock = start_ms * 1_000_000 + 5 * HOUR_MS * 1_000_000
            job = RollupJob(
                client,
                BatchWriter(client),
                RollupConfig(windows=("1m", "1h"), grace_s=0, first_windows=400),
                ("noise",),
                clock=lambda: clock,
            )
            assert await job.tick() > 0
        response = await http.get(
            url, params={"metric": "laeq", "interval": "15m", "start": start, "end": end}
        )
        rolled = response.json()
        assert rolled["source"] == "rollup"
        assert len(rolled["items"]) == len(raw_quarters)
        for a, b in zip(rolled["items"], raw_quarters, strict=True):
            assert a["start"] == b["start"]
            assert a["count"] == b["count"]
            assert a["energeticMean"] == pytest.approx(b["energeticMean"], rel=1e-9)
        response = await http.get(
            url, params={"metric": "laeq", "interval": "1h", "start": start, "end": end}
        )
        hourly = response.json()
        assert hourly["source"] == "rollup"
        want_hours = reference(Aggregation.LEVEL_DB, sent, start_ms * 1_000_000, 3600 * NS)
        assert [i["count"] for i in hourly["items"]] == [30, 30, 30]
        for item in hourly["items"]:
            expected = want_hours[(0, _ns(item["start"]))]["energetic_mean"]
            assert item["energeticMean"] == pytest.approx(expected, rel=1e-9)

        # Calendar days in Amsterdam begin at 23:00 or 22:00 UTC.
        response = await http.get(
            url,
            params={
                "metric": "laeq",
                "interval": "1d",
                "timeZone": "Europe/Amsterdam",
                "start": start,
                "end": end,
            },
        )
        assert response.status_code == 200, response.text
        days = response.json()["items"]
        assert sum(d["count"] for d in days) == len(sent)
        assert all(d["start"][11:] in ("23:00:00Z", "22:00:00Z") for d in days)

        # Across a tenant's devices of a kind.
        response = await http.get(
            "/v1/aggregates",
            params={
                "kind": "noise",
                "metric": "laeq",
                "tenant": noise.tenant,
                "interval": "1h",
                "start": start,
                "end": end,
            },
        )
        fleet_answer = response.json()
        assert response.status_code == 200
        assert fleet_answer["devices"] >= 1
        assert sum(i["count"] for i in fleet_answer["items"]) == len(sent)

        # The out-of-range value and the unknown metric were set aside; lamax was kept.
        async with asyncio.timeout(10):
            while True:
                response = await http.get("/v1/rejections", params={"deviceId": noise.device_id})
                items = response.json()["items"]
                if len(items) >= 2:
                    break
                await asyncio.sleep(0.2)
        assert {(i["reason"], i["metric"]) for i in items} == {
            ("out_of_range", "laeq"),
            ("unknown_metric", "pm25"),
        }
        assert all(i["tenant"] == noise.tenant for i in items)
        only = await http.get("/v1/rejections", params={"reason": "out_of_range"})
        assert {i["reason"] for i in only.json()["items"]} == {"out_of_range"}
        elsewhere = await http.get("/v1/rejections", params={"tenant": other_tenant.tenant})
        assert elsewhere.json()["items"] == []
        # The device itself: its newest reading is the one without `ts`, stamped on arrival,
        # which kept lamax; it is online. Its neighbours of the same kind sent nothing: silent.
        device = (await http.get(f"/v1/devices/{noise.device_id}")).json()
        assert device["latest"] == {"lamax": 60.0}
        assert device["lastSeen"] > rfc3339_ms(start_ms + 4 * HOUR_MS - 60_000)
        assert device["status"] == "online"
        listed = (await http.get("/v1/devices", params={"kind": "noise"})).json()["items"]
        states = {d["deviceId"]: (d["status"], d["lastSeen"]) for d in listed}
        assert states[noise.device_id][0] == "online"
        assert all(s == ("silent", None) for d, s in states.items() if d != noise.device_id)
        compressed = await http.get("/v1/latest", headers={"Accept-Encoding": "gzip"})
        assert compressed.headers.get("content-encoding") == "gzip"  # 12 devices: > 1 kB
        assert compressed.json() == (await http.get("/v1/latest")).json()  # httpx inflates
        geo = await http.get("/v1/latest", headers={"Accept": "application/geo+json"})
        assert geo.headers["content-type"] == "application/geo+json"
        features = {f["id"]: f for f in geo.json()["features"]}
        assert len(features) == len(fleet.devices)
        assert features[noise.device_id]["geometry"] == {
            "type": "Point",
            "coordinates": [noise.longitude, noise.latitude],
        }
        assert features[noise.device_id]["properties"]["metrics"] == {"lamax": 60.0}
        activity = await http.get("/v1/fleet/activity", params={"minutes": 5})
        assert activity.status_code == 200
        counted = sum(m["rejections"].get("out_of_range", 0) for m in activity.json()["items"])
        assert counted == 1


def _ns(text: str) -> int:
    from datetime import datetime

    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def test_reference_is_not_arithmetic() -> None:
    # Guard for the test above: its samples differ enough for the two means to differ.
    samples = [(0, 0, 45.0), (0, 1, 74.0)]
    energetic = reference(Aggregation.LEVEL_DB, samples, 0, 10)[(0, 0)]["energetic_mean"]
    assert not math.isclose(energetic, 59.5)
