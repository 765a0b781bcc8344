"""Completeness through the API: counted by the job from stored readings, seen per key's tenants."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from api.keys import KeyStore, Role
from ingest.completeness import CompletenessJob, completeness_metrics
from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Publisher, make_fleet
from simulators.publisher import rfc3339_ms
from tests.platform import running_platform
from timeseries import BatchWriter, InfluxClient

pytestmark = pytest.mark.anyio

MINUTE_MS = 60_000


async def test_completeness_is_counted_from_storage_and_kept_to_the_keys_tenants(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(12, tenants=2, seed=11)
    amsterdam = next(d for d in fleet.devices if d.kind == "noise" and d.tenant == "GM0363")
    start_ms = (time.time_ns() // 1_000_000 - 30 * MINUTE_MS) // MINUTE_MS * MINUTE_MS
    # Amsterdam: a reading every 6 s over 5 minutes, seq 0..49, with 7 and 30..32 lost.
    lost = {7, 30, 31, 32}
    readings = [
        {"ts": rfc3339_ms(start_ms + n * 6_000), "seq": n, "metrics": {"laeq": 50.0}}
        for n in range(50)
        if n not in lost
    ]
    # Then rarely: seq 60 eight minutes after 49 (50..59 lost; the lower neighbour is found
    # beyond the window's near context), and 62 at minute 20 (61 lost).
    readings += [
        {"ts": rfc3339_ms(start_ms + m * MINUTE_MS), "seq": seq, "metrics": {"laeq": 50.0}}
        for m, seq in ((12, 60), (20, 62))
    ]
    sent = [
        (f"lantaarn/v1/GM0363/{amsterdam.device_id}/telemetry", orjson.dumps(r)) for r in readings
    ]
    async with running_platform(
        mosquitto, influx, tmp_path, fleet=fleet, anonymous_read=False
    ) as platform:
        with KeyStore(platform.registry.url) as keys:
            _k, admin = keys.create(Role.ADMIN)
            _k, viewer = keys.create(Role.VIEWER, ["GM0344"])
        as_admin = {"Authorization": f"Bearer {admin}"}
        as_utrecht = {"Authorization": f"Bearer {viewer}"}
        http = platform.http
        with Publisher(BrokerAddress("::1", mosquitto.port), f"p-{platform.group}") as publisher:
            for name, payload in sent:
                publisher.publish(name, payload)
            assert publisher.flush(30)
        async with InfluxClient(platform.influx) as client:
            async with asyncio.timeout(20):
                while True:
                    got = await client.query('SELECT count("seq") FROM "raw"."noise"')
                    if got[0] and got[0][0].values[0][1] >= len(readings):
                        break
                    await asyncio.sleep(0.2)
            # The job as the noise roller runs it, on a clock of our own.
            now_ms = [start_ms + 11 * MINUTE_MS + 10_000]
            job = CompletenessJob(
                client,
                BatchWriter(client),
                ("noise",),
                first_windows=11,
                clock=lambda: now_ms[0] * 1_000_000,
            )
            assert await job.tick() == 11
            assert await job.tick() == 0  # nothing new has closed
            now_ms[0] = start_ms + 25 * MINUTE_MS + 10_000  # minutes 11..24: one more pass
            assert await job.tick() == 14

        figures = {(m.name, tuple(s.labels.values())): s.value
                   for m in completeness_metrics([job]) for s in m.samples}  # fmt: skip
        assert figures[("lantaarn_completeness_missing_readings", ("GM0363", "noise"))] == 15
        assert figures[("lantaarn_completeness_expected_readings", ("GM0363", "noise"))] == 63

        period = {"start": rfc3339_ms(start_ms), "end": rfc3339_ms(start_ms + 10 * MINUTE_MS)}
        fleetwide = (await http.get("/v1/completeness", params=period, headers=as_admin)).json()
        assert fleetwide["items"] == [
            {
                "tenant": "GM0363",
                "kind": "noise",
                "received": 46,
                "expected": 50,
                "missing": 4,
                "ratio": 0.92,
            }
        ]
        device = f"/v1/devices/{amsterdam.device_id}/completeness"
        per_minute = await http.get(device, params={**period, "interval": "1m"}, headers=as_admin)
        assert per_minute.status_code == 200
        minutes = per_minute.json()["intervals"]
        # seq 7 would have come in minute 0 (6 s apart: 10 a minute), 30-32 in minute 3.
        assert [m["missing"] for m in minutes] == [1, 0, 0, 3, 0]
        assert [m["expected"] for m in minutes] == [10] * 5
        whole = {"start": period["start"], "end": rfc3339_ms(start_ms + 25 * MINUTE_MS)}
        later = (
            await http.get(device, params={**whole, "interval": "1m"}, headers=as_admin)
        ).json()
        assert (later["received"], later["expected"]) == (48, 63)
        assert [(m["start"], m["missing"]) for m in later["intervals"][5:]] == [
            (rfc3339_ms(start_ms + 12 * MINUTE_MS).replace(".000", ""), 10),
            (rfc3339_ms(start_ms + 20 * MINUTE_MS).replace(".000", ""), 1),
        ]
        summary = (await http.get(f"/v1/devices/{amsterdam.device_id}", headers=as_admin)).json()
        assert summary["completeness"] is not None  # the last hour, from the same rows

        # Another tenant's key: nothing of Amsterdam's, and a 403 when it names Amsterdam.
        theirs = (await http.get("/v1/completeness", params=period, headers=as_utrecht)).json()
        assert theirs["items"] == []
        named = {**period, "tenant": "GM0363"}
        assert (
            await http.get("/v1/completeness", params=named, headers=as_utrecht)
        ).status_code == 403
        assert (await http.get(device, headers=as_utrecht)).status_code == 404

        # Bad input: problem details, every time.
        for params in (
            {"start": period["end"], "end": period["start"]},
            {"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "interval": "1m"},
            {"interval": "2m"},
            {"start": "yesterday"},
        ):
            answer = await http.get(device, params=params, headers=as_admin)
            assert answer.status_code == 400, params
            assert answer.headers["content-type"] == "application/problem+json"
