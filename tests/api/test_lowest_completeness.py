"""The summary's lowest-completeness devices: written per hour by the completeness job, read by
the API once per hour from a real InfluxDB, served in `/v1/summary` for the caller's tenants."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from api.lowest_completeness import HOUR_NS, SETTLE_NS, LowestCompleteness, figure_hour
from api.timefmt import format_ns
from ingest.completeness import CompletenessJob
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, seed_world, serving
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.completeness import DeviceShortfall, lowest_lines, read_lowest
from timeseries.lineprotocol import series_key
from timeseries.schema import RAW_RP, rollup_policy

NS = 1_000_000_000
MINUTE_NS = 60 * NS


async def _write_lowest(client: InfluxClient, hour: int, found: list[DeviceShortfall]) -> None:
    """The rows the completeness job writes for an hour's lowest devices."""
    await client.write(
        "\n".join(lowest_lines(hour, found, 10)).encode(), retention_policy=rollup_policy("1h")
    )


async def _write_seq(client: InfluxClient, tenant: str, device_id: str, at: list[int]) -> None:
    """Noise readings with `seq` 0..59, one a minute from at[0], all but the ones left out."""
    key = series_key("noise", {"device_id": device_id, "tenant": tenant})
    lines = [f"{key} laeq=50.0,seq={seq}i {at[0] + seq * MINUTE_NS + NS}" for seq in at[1:]]
    await client.write("\n".join(lines).encode(), retention_policy=RAW_RP)


def test_the_hour_shown_ended_at_least_the_settling_time_ago() -> None:
    hour = 1_800_000_000 * NS // HOUR_NS * HOUR_NS  # some whole hour
    assert figure_hour(hour + SETTLE_NS) == (hour - HOUR_NS, hour)
    assert figure_hour(hour + SETTLE_NS - 1) == (hour - 2 * HOUR_NS, hour - HOUR_NS)
    assert figure_hour(hour + HOUR_NS - 1) == (hour - HOUR_NS, hour)


@pytest.mark.anyio
async def test_the_job_writes_each_counted_hours_lowest_devices(influx: Influx) -> None:
    config = InfluxConfig(influx.url, database=f"low_{uuid.uuid4().hex[:10]}")
    hour = time.time_ns() // HOUR_NS * HOUR_NS - 3 * HOUR_NS
    every = list(range(60))
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        await _write_seq(client, "GM0363", "a", [hour, *(n for n in every if not 10 <= n < 40)])
        await _write_seq(client, "GM0363", "b", [hour, *(n for n in every if n != 30)])
        await _write_seq(client, "GM0363", "c", [hour, *every])  # lost nothing
        await _write_seq(client, "GM0363", "e", [hour, *(n for n in every if n not in (5, 6))])
        await _write_seq(client, "GM0344", "d", [hour, 0, 3])
        now = [hour + 30 * MINUTE_NS + 20 * NS]
        job = CompletenessJob(
            client, BatchWriter(client), ("noise",), first_windows=30, keep=2,
            clock=lambda: now[0],
        )  # fmt: skip
        assert await job.tick() == 30
        assert await read_lowest(client, hour, hour + HOUR_NS) == []  # the hour is not over
        now[0] += 30 * MINUTE_NS
        assert await job.tick() == 30
        found = await read_lowest(client, hour, hour + HOUR_NS)
        # The two lowest of GM0363's noise meters (b, the third, is left out), and GM0344's one.
        assert sorted((s.tenant, s.device_id, s.received, s.expected) for s in found) == [
            ("GM0344", "d", 2, 4),
            ("GM0363", "a", 30, 60),
            ("GM0363", "e", 58, 60),
        ]
        assert {s.kind for s in found} == {"noise"}
        assert await read_lowest(client, hour + HOUR_NS, hour + 2 * HOUR_NS) == []


@pytest.mark.anyio
async def test_lowest_devices_per_tenant_read_once_an_hour(influx: Influx) -> None:
    config = InfluxConfig(influx.url, database=f"low_{uuid.uuid4().hex[:10]}")
    hour = time.time_ns() // HOUR_NS * HOUR_NS - 48 * HOUR_NS
    now = [hour + SETTLE_NS + 30 * NS]  # the hour shown is [hour - 1 h, hour)
    start = hour - HOUR_NS
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        await _write_lowest(
            client,
            start,
            [
                DeviceShortfall("GM0363", "noise", "a", 30, 60),
                DeviceShortfall("GM0363", "lamppost", "b", 59, 60),
                DeviceShortfall("GM0363", "noise", "g", 95, 100),
                DeviceShortfall("GM0344", "noise", "d", 1, 4),
            ],
        )
        await _write_lowest(
            client, start - HOUR_NS, [DeviceShortfall("GM0363", "noise", "e", 1, 100)]
        )
        lowest = LowestCompleteness(client, keep=2, clock=lambda: now[0])
        figures = await lowest.current()
        assert figures is not None
        assert (figures.start_ns, figures.end_ns) == (start, hour)
        assert [(s.device_id, s.received, s.expected) for s in figures.lowest(None, 10)] == [
            ("d", 1, 4),
            ("a", 30, 60),
            ("g", 95, 100),  # the API keeps 2 per tenant: b (59 of 60) is left out
        ]
        assert [s.device_id for s in figures.lowest(["GM0363"], 10)] == ["a", "g"]
        assert [s.device_id for s in figures.lowest(["GM0344", "GM0999"], 10)] == ["d"]
        assert [s.device_id for s in figures.lowest(None, 1)] == ["d"]
        # The same hour: no second read, however often asked.
        for _ in range(5):
            assert await lowest.current() is figures
        assert lowest.reads == 1
        now[0] += HOUR_NS
        await _write_lowest(client, hour, [DeviceShortfall("GM0363", "noise", "f", 1, 3)])
        # The next hour: read in the background, the old one served meanwhile.
        assert await lowest.current() is figures
        async with asyncio.timeout(10):
            while True:
                again = await lowest.current()
                if again is not figures:
                    break
                await asyncio.sleep(0.05)
        assert again is not None
        assert lowest.reads == 2
        assert (again.start_ns, again.end_ns) == (hour, hour + HOUR_NS)
        assert [s.device_id for s in again.lowest(None, 10)] == ["f"]
        await lowest.close()


def test_summary_shows_the_callers_lowest_completeness(influx: Influx, tmp_path: Path) -> None:
    world = seed_world(influx, tmp_path)
    ours, theirs = world.of_tenant(TENANT_A)[:3], world.of_tenant(TENANT_B)[:1]
    # The rows go into the hour shown now and the next, in case the test runs across its end.
    start, _ = figure_hour(time.time_ns())
    found = [
        DeviceShortfall(d.tenant, d.kind, d.device_id, 60 - 6 * n, 60)
        for n, d in enumerate(ours)
        if n > 0  # the first lost nothing: no row
    ]
    found.append(DeviceShortfall(theirs[0].tenant, theirs[0].kind, theirs[0].device_id, 1, 10))

    async def write() -> None:
        async with InfluxClient(world.config.influx) as client:
            for at in (start, start + HOUR_NS):
                await _write_lowest(client, at, found)

    asyncio.run(write())
    with serving(world.config) as api:
        a = httpx.get(
            f"{api}/v1/summary", headers={"Authorization": f"Bearer {world.keys['viewer_a']}"}
        )
        assert a.status_code == 200, a.text
        worst = a.json()["worst"]
        assert worst["completenessStart"] in {format_ns(start), format_ns(start + HOUR_NS)}
        # Only devices that lost readings (the first of ours lost none), lowest first.
        assert worst["completeness"] == [
            {
                "deviceId": d.device_id,
                "tenant": TENANT_A,
                "kind": d.kind,
                "received": 60 - 6 * n,
                "expected": 60,
                "ratio": round((60 - 6 * n) / 60, 6),
            }
            for n, d in reversed(list(enumerate(ours)))
            if n > 0
        ]
        admin = httpx.get(
            f"{api}/v1/summary", headers={"Authorization": f"Bearer {world.keys['admin']}"}
        ).json()["worst"]["completeness"]
        assert [row["deviceId"] for row in admin][:1] == [theirs[0].device_id]
        assert {row["tenant"] for row in admin} == {TENANT_A, TENANT_B}
