"""Fleet rollups on a real InfluxDB: the same answers as the device rollups, late readings too.

The rollup job writes per-device rows and, from them, one row per tenant and window. A whole
tenant's (or the whole fleet's) aggregate read from those must equal today's answer from the
device rows (and raw readings for the tail) within floating-point tolerance, for every statistic
but `last`, which only the device rows answer.
"""

from __future__ import annotations

import math
import random
import time
import uuid

import pytest

from devices import DEVICE_KINDS
from ingest.rollups import RollupConfig, RollupJob
from lantaarn.localstack import Influx
from timeseries import BatchWriter, InfluxClient, InfluxConfig
from timeseries.aggregate import STATS
from timeseries.intervals import IntervalRows, interval_aggregates
from timeseries.lineprotocol import line, series_key
from timeseries.rollups import fleet_stats
from timeseries.schema import (
    RAW_RP,
    Retention,
    ensure_schema,
    fleet_rollup_measurement,
    quote_ident,
    rollup_measurement,
    rollup_policy,
)
from timeseries.selection import Selection

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
HOUR = 3600 * NS
TENANTS = ("gm0363", "gm0344")
# A gauge, decibels, an angle, counters and a state: every way statistics merge.
KINDS = ("air_quality", "noise", "weather", "lamppost")


def _value(kind: str, metric: str, step: int, rng: random.Random) -> float:
    spec = DEVICE_KINDS[kind].metric(metric)
    assert spec is not None
    name = spec.aggregation.value
    if name == "counter":
        return float(step * 5 if step < 40 else (step - 40) * 2)  # a reset on the way
    if name == "state":
        return float(rng.random() < 0.3)
    if name == "angle":
        return rng.uniform(0.0, 360.0)
    if name == "level_db":
        return rng.uniform(35.0, 95.0)
    return rng.uniform(max(spec.minimum, 0.0), min(spec.maximum, 300.0))


def _raw_lines(start_ns: int, rng: random.Random) -> list[str]:
    """Three hours of readings, every 4 minutes, from 3 devices per tenant and kind."""
    out = []
    for kind in KINDS:
        for tenant in TENANTS:
            for n in range(3):
                key = series_key(kind, {"tenant": tenant, "device_id": f"{tenant}-{kind}-{n}"})
                offset = rng.randrange(0, 240) * NS
                for step in range(45):
                    fields = {
                        m.name: _value(kind, m.name, step, rng) for m in DEVICE_KINDS[kind].metrics
                    }
                    out.append(line(key, fields, start_ns + offset + step * 240 * NS))
    return out


def _assert_same(today: IntervalRows, fleet: IntervalRows, names: tuple[str, ...]) -> None:
    assert today.starts == fleet.starts
    assert today.ends == fleet.ends
    assert today.starts, "no intervals: nothing compared"
    for name in names:
        for a, b in zip(today.stats[name], fleet.stats[name], strict=True):
            if math.isnan(a):
                assert math.isnan(b), name
            else:
                assert b == pytest.approx(a, rel=1e-9, abs=1e-9), name


async def _compare_everything(client: InfluxClient, start_ns: int, end_ns: int) -> None:
    selections = [
        Selection.of_tenants([TENANTS[0]]),
        Selection.of_tenants(TENANTS),
        Selection(),
    ]
    for kind in KINDS:
        for spec in DEVICE_KINDS[kind].metrics:
            names = fleet_stats(kind, spec.name)
            for devices in selections:
                for interval in ("1h", "1d"):
                    today = await interval_aggregates(
                        client, kind, spec.name, devices, start_ns, end_ns, interval
                    )
                    fleet = await interval_aggregates(
                        client, kind, spec.name, devices, start_ns, end_ns, interval, fleet=True
                    )
                    _assert_same(today, fleet, names)


async def _fresh(influx: Influx) -> InfluxClient:
    client = InfluxClient(InfluxConfig(influx.url, database=f"f_{uuid.uuid4().hex[:10]}"))
    await ensure_schema(client, Retention())
    return client


async def test_fleet_rollups_answer_as_the_device_rollups_do(influx: Influx) -> None:
    rng = random.Random(16)
    now = time.time_ns()
    start_ns = now - now % HOUR - 4 * HOUR
    async with await _fresh(influx) as client:
        writer = BatchWriter(client)
        outcome = await writer.write(_raw_lines(start_ns, rng), retention_policy=RAW_RP)
        assert not outcome.refused
        # Rolled up to the end of the third hour; the rest is raw tail in every answer.
        rolled_to = start_ns + 3 * HOUR
        job = RollupJob(
            client,
            writer,
            RollupConfig(windows=("1h",), grace_s=0, first_windows=3),
            KINDS,
            clock=lambda: rolled_to,
        )
        assert await job.tick() > 0
        # One fleet row per tenant and hour: 2 tenants x 3 hours, however many devices.
        rows = await client.query(
            f"SELECT count(laeq_count) FROM {quote_ident(rollup_policy('1h'))}."
            f"{quote_ident(fleet_rollup_measurement('noise', '1h'))}"
        )
        assert rows[0][0].values[0][1] == len(TENANTS) * 3
        end_ns = now + 60 * NS
        await _compare_everything(client, start_ns, end_ns)

        # A tenant's answer is its own: the other tenant's rows are not in it.
        one = await interval_aggregates(
            client,
            "noise",
            "laeq",
            Selection.of_tenants([TENANTS[0]]),
            start_ns,
            end_ns,
            "1h",
            fleet=True,
        )
        both = await interval_aggregates(
            client,
            "noise",
            "laeq",
            Selection.of_tenants(TENANTS),
            start_ns,
            end_ns,
            "1h",
            fleet=True,
        )
        assert sum(one.stats["count"]) * 2 == pytest.approx(sum(both.stats["count"]), rel=0.2)
        assert sum(one.stats["count"]) < sum(both.stats["count"])

        # A late, loud reading in the first hour: the job rolls that hour again, fleet rows too.
        late_ts = start_ns + 17 * 60 * NS + 123
        key = series_key("noise", {"tenant": TENANTS[0], "device_id": f"{TENANTS[0]}-noise-0"})
        late = {m.name: 130.0 for m in DEVICE_KINDS["noise"].metrics}
        await writer.write([line(key, late, late_ts)], retention_policy=RAW_RP)
        job.mark_late([("noise", late_ts)])
        await job.tick()
        assert job.windows_rerolled == 1
        after = await interval_aggregates(
            client,
            "noise",
            "laeq",
            Selection.of_tenants([TENANTS[0]]),
            start_ns,
            end_ns,
            "1h",
            fleet=True,
        )
        assert after.stats["count"][0] == one.stats["count"][0] + 1
        assert after.stats["energetic_mean"][0] > one.stats["energetic_mean"][0] + 10
        assert after.stats["max"][0] == 130.0
        await _compare_everything(client, start_ns, end_ns)

        # The fleet path really reads the fleet rows: without the device rows it still answers.
        for kind in KINDS:
            drop = f"DROP SERIES FROM {quote_ident(rollup_measurement(kind, '1h'))}"
            await client.query(drop, write=True)
        gone = await interval_aggregates(
            client, "noise", "laeq", Selection.of_tenants([TENANTS[0]]), start_ns, end_ns, "1h"
        )
        kept = await interval_aggregates(
            client,
            "noise",
            "laeq",
            Selection.of_tenants([TENANTS[0]]),
            start_ns,
            end_ns,
            "1h",
            fleet=True,
        )
        _assert_same(after, kept, fleet_stats("noise", "laeq"))
        assert sum(gone.stats["count"]) < sum(kept.stats["count"])


async def test_fleet_rollups_are_not_trusted_before_they_were_written(influx: Influx) -> None:
    """Windows rolled up before fleet rollups existed have device rows only: answered as today."""
    rng = random.Random(17)
    now = time.time_ns()
    start_ns = now - now % HOUR - 4 * HOUR
    async with await _fresh(influx) as client:
        writer = BatchWriter(client)
        await writer.write(_raw_lines(start_ns, rng), retention_policy=RAW_RP)
        job = RollupJob(
            client,
            writer,
            RollupConfig(windows=("1h",), grace_s=0, first_windows=3),
            ("noise",),
            clock=lambda: start_ns + 3 * HOUR,
        )
        await job.tick()
        # As an older version left it: device rollups and their progress, no fleet rows.
        for statement in (
            f"DROP SERIES FROM {quote_ident(fleet_rollup_measurement('noise', '1h'))}",
            'DELETE FROM "rollup_progress" WHERE "window" = \'fleet_1h\'',
        ):
            await client.query(statement, write=True)
        later = RollupJob(
            client,
            writer,
            RollupConfig(windows=("1h",), grace_s=0, first_windows=3),
            ("noise",),
            clock=lambda: start_ns + 4 * HOUR,
        )
        await later.tick()
        end_ns = now + 60 * NS
        for devices in (Selection.of_tenants(TENANTS), Selection()):
            today = await interval_aggregates(
                client, "noise", "laeq", devices, start_ns, end_ns, "1h"
            )
            fleet = await interval_aggregates(
                client, "noise", "laeq", devices, start_ns, end_ns, "1h", fleet=True
            )
            _assert_same(today, fleet, STATS[DEVICE_KINDS["noise"].metric("laeq").aggregation])  # type: ignore[union-attr]
