"""One tenant's key never learns about another tenant; aggregates mix rollups and raw rightly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from api.keys import KeyStore, Role
from ingest.rollups import RollupConfig, RollupJob
from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Publisher, make_fleet
from simulators.publisher import rfc3339_ms
from tests.platform import running_platform
from timeseries import BatchWriter, InfluxClient
from timeseries.rollups import Coverage, write_coverage

pytestmark = pytest.mark.anyio

HOUR_MS = 3_600_000


async def test_keys_see_their_tenants_only_and_sources_merge(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(12, tenants=2, seed=11)
    amsterdam = next(d for d in fleet.devices if d.kind == "noise" and d.tenant == "GM0363")
    assert not [d for d in fleet.devices if d.kind == "noise" and d.tenant == "GM0344"]
    start_ms = (time.time_ns() // 1_000_000 - 3 * HOUR_MS) // HOUR_MS * HOUR_MS
    readings = [
        {"ts": rfc3339_ms(start_ms + n * 60_000), "metrics": {"laeq": 50.0 + n % 20}}
        for n in range(150)
    ]
    topic = f"lantaarn/v1/GM0363/{amsterdam.device_id}/telemetry"
    messages = [(topic, orjson.dumps({"readings": readings[n : n + 50]})) for n in (0, 50, 100)]
    messages.append((topic, orjson.dumps({"metrics": {"laeq": 500.0}})))  # out of range

    async with running_platform(
        mosquitto, influx, tmp_path, fleet=fleet, anonymous_read=False
    ) as platform:
        with KeyStore(platform.registry.url) as keys:
            _k, admin = keys.create(Role.ADMIN)
            _k, utrecht = keys.create(Role.VIEWER, ["GM0344"])
        as_admin = {"Authorization": f"Bearer {admin}"}
        as_utrecht = {"Authorization": f"Bearer {utrecht}"}
        http = platform.http
        with Publisher(BrokerAddress("::1", mosquitto.port), f"p-{platform.group}") as publisher:
            for name, payload in messages:
                publisher.publish(name, payload)
            assert publisher.flush(30)
        window = {
            "kind": "noise",
            "metric": "laeq",
            "interval": "15m",
            "start": rfc3339_ms(start_ms),
            "end": rfc3339_ms(start_ms + 3 * HOUR_MS),
        }
        async with asyncio.timeout(20):
            while True:
                answer = (await http.get("/v1/aggregates", params=window, headers=as_admin)).json()
                if sum(i["count"] for i in answer["items"]) >= len(readings):
                    break
                await asyncio.sleep(0.2)
        assert answer["source"] == "raw"
        raw = answer["items"]

        # Utrecht has no noise devices: nothing, not Amsterdam's figures.
        theirs = (await http.get("/v1/aggregates", params=window, headers=as_utrecht)).json()
        assert theirs["devices"] == 0
        assert theirs["items"] == []
        nowhere = {**window, "bbox": "0.0,0.0,0.1,0.1"}
        empty_box = (await http.get("/v1/aggregates", params=nowhere, headers=as_admin)).json()
        assert empty_box["items"] == []
        other = {**window, "tenant": "GM0363"}
        assert (
            await http.get("/v1/aggregates", params=other, headers=as_utrecht)
        ).status_code == 403
        device = f"/v1/devices/{amsterdam.device_id}"
        assert (await http.get(device, headers=as_utrecht)).status_code == 404
        assert (await http.get(f"{device}/readings", headers=as_utrecht)).status_code == 404
        assert (await http.get(f"{device}/aggregates", params={"metric": "laeq"},
                               headers=as_utrecht)).status_code == 404  # fmt: skip
        async with asyncio.timeout(10):
            while True:
                if (await http.get("/v1/rejections", headers=as_admin)).json()["items"]:
                    break
                await asyncio.sleep(0.2)
        assert (await http.get("/v1/rejections", headers=as_utrecht)).json()["items"] == []
        activity = (await http.get("/v1/fleet/activity", headers=as_utrecht)).json()["items"]
        assert all(m["readings"] is None and m["messages"] is None for m in activity)
        assert all(not m["rejections"] for m in activity)
        tenants = (await http.get("/v1/tenants", params={"limit": 1}, headers=as_utrecht)).json()
        assert [t["code"] for t in tenants["items"]] == ["GM0344"]
        assert tenants["next"] is None
        assert (
            await http.get("/v1/latest", headers={"Authorization": "Bearer nope"})
        ).status_code == 401

        # Rollups cover the first hour and a half; the rest comes from raw readings.
        async with InfluxClient(platform.influx) as client:
            writer = BatchWriter(client)
            half_way = start_ms * 1_000_000 + 90 * 60 * 1_000_000_000
            job = RollupJob(
                client,
                writer,
                RollupConfig(windows=("1m",), grace_s=0, first_windows=300),
                ("noise",),
                clock=lambda: half_way,
            )
            assert await job.tick() > 0
        mixed = (await http.get("/v1/aggregates", params=window, headers=as_admin)).json()
        assert mixed["source"] == "rollup+raw"
        assert len(raw) == 10  # 150 readings, one a minute: ten quarters
        assert [(i["start"], i["count"]) for i in mixed["items"]] == [
            (i["start"], i["count"]) for i in raw
        ]
        for a, b in zip(mixed["items"], raw, strict=True):
            assert a["start"] == b["start"]
            assert a["count"] == b["count"]
            assert a["energeticMean"] == pytest.approx(b["energeticMean"], rel=1e-9)
        # Known coverage from the start only: a range before it is answered from raw.
        async with InfluxClient(platform.influx) as client:
            late_since = Coverage(half_way - 30 * 60 * 1_000_000_000, half_way)
            await write_coverage(BatchWriter(client), "noise", "1m", late_since)
        again = (await http.get("/v1/aggregates", params=window, headers=as_admin)).json()
        assert again["source"] == "raw"
        kolkata = {**window, "interval": "1d", "timeZone": "Asia/Kolkata"}
        refused = await http.get("/v1/aggregates", params=kolkata, headers=as_admin)
        assert refused.status_code == 400
        assert "whole number of hours" in refused.text
