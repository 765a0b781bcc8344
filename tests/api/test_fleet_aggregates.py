"""/v1/aggregates from the fleet rollups: whole tenants read them, an area keeps the device rows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.keys import KeyStore, Role
from devices import Device
from ingest.rollups import RollupConfig, RollupJob
from lantaarn.localstack import Influx, Mosquitto
from simulators import make_fleet
from simulators.publisher import rfc3339_ms
from tests.platform import running_platform
from timeseries import BatchWriter, InfluxClient
from timeseries.lineprotocol import line, series_key
from timeseries.rollups import Coverage, read_coverage
from timeseries.schema import RAW_RP, quote_ident, rollup_measurement

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
HOUR = 3600 * NS


def _noise_lines(
    noise: list[Device], start_ns: int, *, every_s: int, steps: int, spread: int
) -> list[str]:
    """Readings of the noise meters every `every_s` seconds from `start_ns`, `steps` of them,
    each device a second after the one before, its sound level varying by device (`spread`)."""
    return [
        line(
            series_key("noise", {"tenant": d.tenant, "device_id": d.device_id}),
            {"laeq": 40.0 + (n * spread + step * 3) % 50, "lamax": 80.0},
            start_ns + step * every_s * NS + n * NS,
        )
        for n, d in enumerate(noise)
        for step in range(steps)
    ]


async def test_whole_tenants_are_answered_from_fleet_rollups_and_stay_their_own(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(40, tenants=2, seed=2)
    noise = [d for d in fleet.devices if d.kind == "noise"]
    assert {d.tenant for d in noise} == {"GM0344", "GM0363"}
    now = time.time_ns()
    start_ns = now - now % HOUR - 3 * HOUR
    lines = _noise_lines(noise, start_ns, every_s=180, steps=40, spread=7)  # two hours
    async with running_platform(
        mosquitto, influx, tmp_path, fleet=fleet, anonymous_read=False
    ) as platform:
        with KeyStore(platform.registry.url) as keys:
            _k, admin = keys.create(Role.ADMIN)
            _k, utrecht = keys.create(Role.VIEWER, ["GM0344"])
        as_admin = {"Authorization": f"Bearer {admin}"}
        as_utrecht = {"Authorization": f"Bearer {utrecht}"}
        async with InfluxClient(platform.influx) as client:
            writer = BatchWriter(client)
            assert not (await writer.write(lines, retention_policy=RAW_RP)).refused
            job = RollupJob(
                client,
                writer,
                RollupConfig(windows=("1h",), grace_s=0, first_windows=3),
                ("noise",),
                clock=lambda: start_ns + 3 * HOUR,
            )
            assert await job.tick() > 0
        window = {
            "kind": "noise",
            "metric": "laeq",
            "interval": "1h",
            "functions": "count,energeticMean,min,max",
            "start": rfc3339_ms(start_ns // 1_000_000),
            "end": rfc3339_ms((start_ns + 3 * HOUR) // 1_000_000),
        }
        everywhere = {**window, "bbox": "-180,-90,180,90"}

        async def ask(params: dict[str, str], headers: dict[str, str]) -> list[dict[str, object]]:
            response = await platform.http.get("/v1/aggregates", params=params, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["source"] == "rollup"
            items: list[dict[str, object]] = response.json()["items"]
            return items

        tenant_wide = await ask(window, as_admin)
        by_area = await ask(everywhere, as_admin)
        assert [i["count"] for i in tenant_wide] == [i["count"] for i in by_area]
        assert sum(int(i["count"]) for i in tenant_wide) == len(lines)  # type: ignore[call-overload]
        for a, b in zip(tenant_wide, by_area, strict=True):
            assert a["energeticMean"] == pytest.approx(b["energeticMean"], rel=1e-9)
            assert (a["min"], a["max"]) == (b["min"], b["max"])
        theirs = await ask(window, as_utrecht)
        utrecht_lines = 40 * sum(d.tenant == "GM0344" for d in noise)
        assert sum(int(i["count"]) for i in theirs) == utrecht_lines  # type: ignore[call-overload]

        # Without the device rows, whole tenants still answer (from the fleet rows); an area
        # (devices by id) reads the device rows, now gone.
        async with InfluxClient(platform.influx) as client:
            drop = f"DROP SERIES FROM {quote_ident(rollup_measurement('noise', '1h'))}"
            await client.query(drop, write=True)
        assert await ask(window, as_admin) == tenant_wide
        assert await ask(window, as_utrecht) == theirs
        assert await ask(everywhere, as_admin) == []


async def test_a_rebuilt_span_is_answered_from_fleet_rollups(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(40, tenants=2, seed=5)
    noise = [d for d in fleet.devices if d.kind == "noise"]
    now = time.time_ns()
    start_ns = now - now % HOUR - 6 * HOUR
    lines = _noise_lines(noise, start_ns, every_s=600, steps=30, spread=5)  # five hours
    async with running_platform(
        mosquitto, influx, tmp_path, fleet=fleet, anonymous_read=False
    ) as platform:
        with KeyStore(platform.registry.url) as keys:
            _k, admin = keys.create(Role.ADMIN)
        as_admin = {"Authorization": f"Bearer {admin}"}
        async with InfluxClient(platform.influx) as client:
            writer = BatchWriter(client)
            assert not (await writer.write(lines, retention_policy=RAW_RP)).refused
            # The worker rolled the last two hours (device and fleet rows)...
            job = RollupJob(
                client,
                writer,
                RollupConfig(windows=("1h",), grace_s=0, first_windows=2),
                ("noise",),
                clock=lambda: start_ns + 5 * HOUR,
            )
            assert await job.tick() > 0
            # ...and an operator rebuilds the three before, as the README says.
            env = {
                **os.environ,
                "LANTAARN_INFLUX__URL": platform.influx.url,
                "LANTAARN_INFLUX__DATABASE": platform.influx.database,
            }
            command = [
                sys.executable, "-m", "lantaarn", "rollups", "rebuild", "--window", "1h",
                "--kind", "noise", "--start", rfc3339_ms(start_ns // 1_000_000),
                "--end", rfc3339_ms((start_ns + 3 * HOUR) // 1_000_000),
            ]  # fmt: skip
            rebuilt = await asyncio.to_thread(
                subprocess.run, command, env=env, capture_output=True, text=True, check=False
            )
            assert rebuilt.returncode == 0, rebuilt.stderr
            # The worker's next pass keeps what the rebuild made known.
            await job.tick()
            known = await read_coverage(client, "noise")
            assert known[("noise", "1h")] == Coverage(start_ns, start_ns + 5 * HOUR)
            assert known[("noise", "fleet_1h")] == Coverage(start_ns, start_ns + 5 * HOUR)
        window = {
            "kind": "noise",
            "metric": "laeq",
            "interval": "1h",
            "functions": "count,energeticMean,min,max",
            "start": rfc3339_ms(start_ns // 1_000_000),
            "end": rfc3339_ms((start_ns + 5 * HOUR) // 1_000_000),
        }

        async def ask() -> list[dict[str, object]]:
            response = await platform.http.get("/v1/aggregates", params=window, headers=as_admin)
            assert response.status_code == 200, response.text
            assert response.json()["source"] == "rollup"
            items: list[dict[str, object]] = response.json()["items"]
            return items

        from_devices = await ask()
        assert [i["count"] for i in from_devices] == [6 * len(noise)] * 5
        # Without the device rows, the whole span still answers: from the fleet rows the
        # rebuild wrote, which the rollups' progress now says are there.
        async with InfluxClient(platform.influx) as client:
            drop = f"DROP SERIES FROM {quote_ident(rollup_measurement('noise', '1h'))}"
            await client.query(drop, write=True)
        from_fleet = await ask()
        assert [i["count"] for i in from_fleet] == [i["count"] for i in from_devices]
        for a, b in zip(from_fleet, from_devices, strict=True):
            assert a["energeticMean"] == pytest.approx(b["energeticMean"], rel=1e-9)
            assert (a["min"], a["max"]) == (b["min"], b["max"])
