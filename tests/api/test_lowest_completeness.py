"""The summary's lowest-completeness devices: read from a real InfluxDB once per hour, ranked per
tenant, and served in `/v1/summary` for the caller's tenants only."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from api.lowest_completeness import HOUR_NS, SETTLE_NS, LowestCompleteness, figure_hour
from api.timefmt import format_ns
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, seed_world, serving
from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import series_key
from timeseries.schema import COMPLETENESS, COMPLETENESS_WINDOW, rollup_policy

NS = 1_000_000_000
MINUTE_NS = 60 * NS


def _rows(
    tenant: str,
    device_id: str,
    start_ns: int,
    per_minute: list[tuple[int, int]],
    kind: str = "noise",
) -> list[str]:
    """Completeness rows of a device, one a minute from `start_ns`: (received, expected)."""
    key = series_key(COMPLETENESS, {"device_id": device_id, "kind": kind, "tenant": tenant})
    return [
        f"{key} received={got}i,expected={want}i,missing={want - got}i {start_ns + n * MINUTE_NS}"
        for n, (got, want) in enumerate(per_minute)
    ]


async def _write(client: InfluxClient, lines: list[str]) -> None:
    await client.write(
        "\n".join(lines).encode(), retention_policy=rollup_policy(COMPLETENESS_WINDOW)
    )


def test_the_hour_shown_ended_at_least_the_settling_time_ago() -> None:
    hour = 1_800_000_000 * NS // HOUR_NS * HOUR_NS  # some whole hour
    assert figure_hour(hour + SETTLE_NS) == (hour - HOUR_NS, hour)
    assert figure_hour(hour + SETTLE_NS - 1) == (hour - 2 * HOUR_NS, hour - HOUR_NS)
    assert figure_hour(hour + HOUR_NS - 1) == (hour - HOUR_NS, hour)


@pytest.mark.anyio
async def test_lowest_devices_per_tenant_read_once_an_hour(influx: Influx) -> None:
    config = InfluxConfig(influx.url, database=f"low_{uuid.uuid4().hex[:10]}")
    hour = time.time_ns() // HOUR_NS * HOUR_NS - 48 * HOUR_NS
    now = [hour + SETTLE_NS + 30 * NS]  # the hour shown is [hour - 1 h, hour)
    start = hour - HOUR_NS
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        lines = (
            # a: 30 of 60 over the hour; b: 59 of 60 (one lost reading among whole minutes)
            _rows("GM0363", "a", start, [(1, 2)] * 30)
            + _rows("GM0363", "b", start, [(1, 1)] * 59 + [(0, 1)])
            # c: nothing lost; d: 1 of 4 (another tenant)
            + _rows("GM0363", "c", start, [(5, 5)] * 60)
            + _rows("GM0344", "d", start, [(1, 4)])
            # e lost everything but one reading, but in the hour before: not shown
            + _rows("GM0363", "e", start - HOUR_NS, [(1, 100)])
            # and a in the hour after (not over yet at `now`): counted with that hour only
            + _rows("GM0363", "a", hour, [(0, 50)])
        )
        await _write(client, lines)
        lowest = LowestCompleteness(client, keep=2, clock=lambda: now[0])
        figures = await lowest.current()
        assert figures is not None
        assert (figures.start_ns, figures.end_ns) == (start, hour)
        everyone = figures.lowest(None, 10)
        assert [(s.device_id, s.received, s.expected) for s in everyone] == [
            ("d", 1, 4),
            ("a", 30, 60),
            ("b", 59, 60),
        ]
        assert [s.device_id for s in figures.lowest(["GM0363"], 10)] == ["a", "b"]
        assert [s.device_id for s in figures.lowest(["GM0344", "GM0999"], 10)] == ["d"]
        assert [s.device_id for s in figures.lowest(None, 1)] == ["d"]
        # The same hour: no second read, however often asked.
        for _ in range(5):
            assert await lowest.current() is figures
        assert lowest.reads == 1
        # A tenant keeps only its `keep` lowest: a third lossy device of GM0363 pushes out b.
        now[0] += HOUR_NS
        await _write(
            client,
            _rows("GM0363", "b", hour, [(3, 4)]) + _rows("GM0363", "f", hour, [(1, 3)]),
        )
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
        assert [s.device_id for s in again.lowest(None, 10)] == ["a", "f"]
        await lowest.close()


def test_summary_shows_the_callers_lowest_completeness(influx: Influx, tmp_path: Path) -> None:
    world = seed_world(influx, tmp_path)
    ours, theirs = world.of_tenant(TENANT_A)[:3], world.of_tenant(TENANT_B)[:1]
    lines: list[str] = []
    # The rows go into the hour shown now and the next, in case the test runs across its end.
    start, _ = figure_hour(time.time_ns())
    for at in (start, start + HOUR_NS):
        for n, device in enumerate(ours):
            lines += _rows(device.tenant, device.device_id, at, [(10 - n, 10)] * 6, device.kind)
        lines += _rows(theirs[0].tenant, theirs[0].device_id, at, [(1, 10)], theirs[0].kind)

    async def write() -> None:
        async with InfluxClient(world.config.influx) as client:
            await _write(client, lines)

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
