"""Lamp faults on a real InfluxDB: burning by day, dark at night, no power, a reported failure,
power out of line with the other lamps; and nothing near sunrise or sunset."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting import Evaluator, EvaluatorConfig
from alerting.lamps import is_dark
from devices import Device, Registry, Tenant
from devices.alert_rules import AlertState, builtin_for
from lantaarn.localstack import Influx
from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.schema import RAW_RP

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # Amsterdam: sun up 07:35-15:30 UTC
NIGHT = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
HUNGRY = "draws 160 W at 100 %, 3.2× the usual power for its level"
DUSK = datetime(2026, 12, 1, 15, 35, tzinfo=UTC)
LAMPS = {
    # device id: (dim level %, power W, lamp failure)
    "lp-on": (80.0, 40.0, 0.0),
    "lp-off": (0.0, 0.0, 0.0),
    "lp-broken": (100.0, 0.2, 0.0),
    "lp-failure": (0.0, 0.0, 1.0),
    "lp-a": (100.0, 50.0, 0.0),
    "lp-b": (100.0, 52.0, 0.0),
    "lp-c": (50.0, 25.0, 0.0),
    "lp-hungry": (100.0, 160.0, 0.0),
}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}") as opened:
        opened.add_tenant(Tenant("GM0363", "Amsterdam"))
        opened.add_devices([Device(d, "GM0363", "lamppost", d, 52.37, 4.89) for d in LAMPS])
        rule = builtin_for("lamp-faults", "GM0363")
        assert rule is not None
        opened.add_rule(rule)
        yield opened


@pytest.fixture
async def client(influx: Influx) -> AsyncIterator[InfluxClient]:
    async with InfluxClient(InfluxConfig(influx.url, database=f"lp_{uuid.uuid4().hex[:10]}")) as c:
        await ensure_schema(c, Retention())
        yield c


async def _store_at(client: InfluxClient, moment: datetime) -> None:
    at = int(moment.timestamp()) * NS - 60 * NS
    lines = [
        line(
            series_key("lamppost", {"tenant": "GM0363", "device_id": d}),
            {"dim_level": level, "active_power": power, "lamp_failure": failure, "seq": 1},
            at,
        )
        for d, (level, power, failure) in LAMPS.items()
    ]
    await client.write(("\n".join(lines) + "\n").encode(), retention_policy=RAW_RP)


async def _faults(registry: Registry, client: InfluxClient, moment: datetime) -> dict[str, str]:
    await _store_at(client, moment)
    evaluator = Evaluator(registry, client, [], EvaluatorConfig("t"))
    await evaluator.step(moment)
    await evaluator.step(moment + timedelta(minutes=10))  # the built-in waits 10 minutes
    return {a.subject: a.summary for a in registry.alerts(states=[AlertState.FIRING.value])}


def test_the_sun_at_the_lamp() -> None:
    assert not is_dark(NOON.timestamp(), 52.37, 4.89)
    assert is_dark(NIGHT.timestamp(), 52.37, 4.89)
    assert is_dark(NOON.timestamp(), 78.2, 15.6)  # Longyearbyen in December: polar night


async def test_faults_by_day(registry: Registry, client: InfluxClient) -> None:
    found = await _faults(registry, client, NOON)
    assert found == {
        "lp-on": "burning in daylight",
        "lp-broken": "burning in daylight; lit at 100 % but drawing 0.2 W",
        "lp-failure": "reports a lamp failure",
        "lp-a": "burning in daylight",
        "lp-b": "burning in daylight",
        "lp-c": "burning in daylight",
        "lp-hungry": f"burning in daylight; {HUNGRY}",
    }


async def test_faults_at_night(registry: Registry, client: InfluxClient) -> None:
    found = await _faults(registry, client, NIGHT)
    assert found == {
        "lp-off": "dark at night",
        "lp-broken": "lit at 100 % but drawing 0.2 W",
        "lp-failure": "dark at night; reports a lamp failure",
        "lp-hungry": HUNGRY,
    }


async def test_near_dusk_neither_state_is_a_fault(registry: Registry, client: InfluxClient) -> None:
    found = await _faults(registry, client, DUSK)
    assert set(found) == {"lp-broken", "lp-failure", "lp-hungry"}
