"""A fault mix through real Mosquitto, the real ingest worker and InfluxDB: every value accounted.

published = stored + rejected by reason, checked three ways: the points in InfluxDB reading by
reading, the dead-letter records one by one, and the worker's own counters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from devices import DEVICE_KINDS
from lantaarn.localstack import Influx, Mosquitto
from simulators import (
    BrokerAddress,
    FaultRates,
    Ledger,
    Outcome,
    Publisher,
    Rejected,
    SimClock,
    Simulation,
    make_fleet,
)
from simulators.faults import READING_FAULTS
from tests.platform import Platform, running_platform
from timeseries import InfluxClient

pytestmark = pytest.mark.anyio

_NOT_METRICS = {"time", "tenant", "device_id", "seq", "ts_assigned"}


async def _stored(
    platform: Platform,
) -> tuple[dict[tuple[str, str, int], dict[str, float]], Counter[Rejected]]:
    points: dict[tuple[str, str, int], dict[str, float]] = {}
    records: Counter[Rejected] = Counter()
    async with InfluxClient(platform.influx) as client:
        for kind in DEVICE_KINDS:
            for series in (await client.query(f'SELECT * FROM "raw"."{kind}"'))[0]:
                for row in series.values:
                    named = dict(zip(series.columns, row, strict=True))
                    metrics = {
                        k: float(v)
                        for k, v in named.items()
                        if k not in _NOT_METRICS and v is not None
                    }
                    points[(kind, str(named["device_id"]), int(named["time"]))] = metrics
        for series in (await client.query('SELECT * FROM "raw"."rejection"'))[0]:
            for row in series.values:
                named = dict(zip(series.columns, row, strict=True))
                records[
                    Rejected(
                        str(named["reason"]),
                        str(named["device_id"] or ""),
                        str(named.get("metric") or ""),
                        int(named["values"]),
                    )
                ] += 1
    return points, records


async def test_a_fault_mix_reconciles_reading_by_reading(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(40, tenants=2, seed=21, interval_s=0.05)
    ledger = Ledger()
    faults = FaultRates.spread(0.3)
    faults = FaultRates(
        **{**{f: getattr(faults, f) for f in faults.__dataclass_fields__}, "flap": 0.02}
    )
    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet) as platform:

        def publish() -> None:
            # Ten minutes of history at 20x, so readings carry simulated, past timestamps.
            clock = SimClock(time.time() - 600, 20.0)
            simulation = Simulation(
                fleet.devices, seed=21, clock=clock, faults=faults, ledger=ledger
            )
            with Publisher(
                BrokerAddress("::1", mosquitto.port), f"sim-{platform.group}"
            ) as publisher:
                links = publisher.links(len(fleet.devices))
                simulation.run(links, readings_per_device=25)
                assert simulation.finish(links, 30)

        await asyncio.to_thread(publish)
        expected: Outcome = ledger.expected_outcome({d.device_id: d for d in fleet.devices})
        async with asyncio.timeout(30):
            while True:
                points, records = await _stored(platform)
                if len(points) >= len(expected.points) and sum(records.values()) >= sum(
                    expected.records.values()
                ):
                    break
                await asyncio.sleep(0.3)

    # Every reading fault happened, and the ledger expects what each must cause. The device's
    # own faults (clock skew, silence, flapping) and its command faults hit no single reading,
    # so the ledger never names them.
    assert set(ledger.faults()) >= set(READING_FAULTS)
    assert any(len(m.readings) > 1 for m in ledger.messages), "no backlog batch was sent"
    assert len(expected.rejected) >= 10
    # InfluxDB, reading by reading and metric by metric.
    assert points == expected.points
    assert records == expected.records
    # The worker's counters: published = stored + rejected by reason.
    stored = sum(s.values_stored for s in platform.stats)
    rejected: Counter[str] = Counter()
    for s in platform.stats:
        rejected.update(s.rejected)
    assert stored == expected.stored_values
    assert rejected == expected.rejected
