"""The world of the SensorThings tests: the live API's two tenants, plus a day of readings of one
device (every minute) with its hourly rollups computed by the platform's own rollup code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devices import DEVICE_KINDS, Device
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, World, seed_world, serving
from timeseries import BatchWriter, InfluxClient
from timeseries.lineprotocol import line, series_key
from timeseries.rollups import rebuild
from timeseries.schema import RAW_RP, raw_measurement

NS = 1_000_000_000
DAY_NS = 86_400 * NS
STEP_NS = 60 * NS


@dataclass
class StaWorld:
    """The live API's URL and world, and the device with a day of readings."""

    url: str
    world: World
    device: Device
    day_start_ns: int

    def headers(self, use: str) -> dict[str, str]:
        """The Authorization header of a key by its use (`admin`, `viewer_a`, ...)."""
        return {"Authorization": f"Bearer {self.world.keys[use]}"}


def day_value(metric_index: int, step: int) -> float:
    """The value written for a metric at a minute of the day (a known, varying pattern)."""
    return 10.0 + metric_index + (step * 7) % 50 / 2


async def _write_day(world: World, device: Device, day_start_ns: int) -> None:
    kind = DEVICE_KINDS[device.kind]
    series = series_key(
        raw_measurement(kind.name), {"tenant": device.tenant, "device_id": device.device_id}
    )
    lines = []
    for step in range(DAY_NS // STEP_NS):
        fields: dict[str, float | int | bool | str] = {
            m.name: day_value(i, step) for i, m in enumerate(kind.metrics)
        }
        fields["seq"] = step
        lines.append(line(series, fields, day_start_ns + step * STEP_NS))
    async with InfluxClient(world.config.influx) as client:
        await client.write("\n".join(lines).encode(), retention_policy=RAW_RP)
        await rebuild(
            client, BatchWriter(client), kind.name, "1h", day_start_ns, day_start_ns + DAY_NS
        )


@contextmanager
def sta_world(influx: Influx, folder: Path) -> Iterator[StaWorld]:
    """Seed, write the day, serve; yields the world while the API runs."""
    world = seed_world(influx, folder)
    device = next(d for d in world.of_tenant(TENANT_A) if d.kind == "weather")
    day_start_ns = (time.time_ns() // DAY_NS - 3) * DAY_NS  # three days ago, 00:00 UTC
    asyncio.run(_write_day(world, device, day_start_ns))
    with serving(world.config) as url:
        yield StaWorld(url, world, device, day_start_ns)
