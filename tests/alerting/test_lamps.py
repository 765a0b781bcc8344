"""Lamp faults on a real InfluxDB: burning by day, dark at night, no power, a reported failure,
power out of line with the lamp's own usual (learned from its 1-hour rollups); and nothing near
sunrise or sunset. Lamps of different ratings are no fault (issue 14)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting import Evaluator, EvaluatorConfig
from alerting.conditions import Memory, Round
from alerting.lamps import is_dark, usual_power
from devices import Device, Registry, Tenant
from devices.alert_rules import AlertState, builtin_for
from lantaarn.localstack import Influx
from simulators.behaviour import DeviceState
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.rollups import rebuild
from timeseries.schema import RAW_RP
from timeseries.selection import Selection

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # Amsterdam: sun up 07:35-15:30 UTC
NIGHT = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
HUNGRY = "draws 160 W at 100 %, 3.2× its usual power for that level"
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
# Their history: every lamp above drew 0.5 W per % of dim level (a 50 W luminaire).
USUAL = dict.fromkeys(LAMPS, 50.0)
HOUR = 3600


@contextmanager
def _open_registry(path: Path, lamps: Iterable[str]) -> Iterator[Registry]:
    with Registry(f"sqlite:///{path}") as opened:
        opened.add_tenant(Tenant("GM0363", "Amsterdam"))
        opened.add_devices([Device(d, "GM0363", "lamppost", d, 52.37, 4.89) for d in lamps])
        rule = builtin_for("lamp-faults", "GM0363")
        assert rule is not None
        opened.add_rule(rule)
        yield opened


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with _open_registry(tmp_path / "registry.sqlite3", LAMPS) as opened:
        yield opened


@pytest.fixture
async def client(influx: Influx) -> AsyncIterator[InfluxClient]:
    async with InfluxClient(InfluxConfig(influx.url, database=f"lp_{uuid.uuid4().hex[:10]}")) as c:
        await ensure_schema(c, Retention())
        yield c


def _reading(device_id: str, level: float, power: float, failure: float, at_s: int) -> str:
    return line(
        series_key("lamppost", {"tenant": "GM0363", "device_id": device_id}),
        {"dim_level": level, "active_power": power, "lamp_failure": failure, "seq": at_s},
        at_s * NS,
    )


async def _store_history(client: InfluxClient, moment: datetime, rated: dict[str, float]) -> None:
    """Twelve lit hours before the hour before `moment`, a reading every 10 minutes, of lamps
    drawing their rated watts at 100 % and half (plus standby) at 50 %, with a little noise;
    then their 1-hour rollups, as the workers build them."""
    end = int(moment.timestamp()) // HOUR * HOUR - HOUR
    start = end - 12 * HOUR
    lines = [
        _reading(d, level, 0.5 + watts * level / 100.0 * (1.0 + 0.02 * (n % 3 - 1)), 0.0, at)
        for d, watts in rated.items()
        for n, at in enumerate(range(start, end, 600))
        for level in [100.0 if (at // HOUR) % 2 else 50.0]
    ]
    await client.write(("\n".join(lines) + "\n").encode(), retention_policy=RAW_RP)
    await rebuild(client, BatchWriter(client), "lamppost", "1h", start * NS, end * NS)


async def _store_at(
    client: InfluxClient, moment: datetime, lamps: dict[str, tuple[float, float, float]]
) -> None:
    at = int(moment.timestamp()) - 60
    lines = [_reading(d, level, power, failure, at) for d, (level, power, failure) in lamps.items()]
    await client.write(("\n".join(lines) + "\n").encode(), retention_policy=RAW_RP)


async def _faults(
    registry: Registry,
    client: InfluxClient,
    moment: datetime,
    lamps: dict[str, tuple[float, float, float]] = LAMPS,
    rated: dict[str, float] = USUAL,
) -> dict[str, str]:
    await _store_history(client, moment, rated)
    await _store_at(client, moment, lamps)
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


# Healthy lamps of the ratings a Dutch street mixes (the simulator's too), at night at 50 %,
# each drawing its own rated power; compared with the fleet's median, the 110 W lamps drew
# 2.1x "the usual" and went pending and fired (issue 14).
RATED = {f"lp-{n}-{w:g}w": w for n, w in enumerate((28.0, 28.0, 36.0, 45.0, 58.0, 75.0, 110.0))}
HEALTHY = {d: (50.0, 0.5 + w / 2 * 1.01, 0.0) for d, w in RATED.items()}


async def test_lamps_of_different_ratings_are_no_fault(
    tmp_path: Path, client: InfluxClient
) -> None:
    with _open_registry(tmp_path / "ratings.sqlite3", RATED) as registry:
        assert await _faults(registry, client, NIGHT, HEALTHY, RATED) == {}


async def test_a_lamp_far_from_its_own_usual_still_fires(
    tmp_path: Path, client: InfluxClient
) -> None:
    lamps = {
        **HEALTHY,
        "lp-driver": (100.0, 174.0, 0.0),  # a 58 W luminaire whose failing driver draws 3x
        "lp-strings": (100.0, 22.0, 0.0),  # a 75 W luminaire with most LED strings out
        "lp-new": (100.0, 300.0, 0.0),  # no history yet: its usual is not known
    }
    rated = {**RATED, "lp-driver": 58.0, "lp-strings": 75.0}
    with _open_registry(tmp_path / "faulty.sqlite3", lamps) as registry:
        found = await _faults(registry, client, NIGHT, lamps, rated)
    assert found == {
        "lp-driver": "draws 174 W at 100 %, 3.0× its usual power for that level",
        "lp-strings": "draws 22 W at 100 %, 0.3× its usual power for that level",
    }


async def test_the_simulated_fleet_is_never_out_of_line(
    tmp_path: Path, client: InfluxClient
) -> None:
    """Forty lamps of the demo's simulator (its mix of ratings, photocells, night dimming,
    noise and random failures) over two days and nights, a reading every 10 minutes: each has
    a usual, and at night none is out of line with it."""
    night = int(NIGHT.timestamp())
    start = night - 2 * 86400 + 540  # the last reading a minute before NIGHT
    lamps = [
        DeviceState(Device(f"sim-{n}", "GM0363", "lamppost", "x", 52.37, 4.89), 7)
        for n in range(40)
    ]
    assert len({lamp.nominal_w for lamp in lamps}) >= 4
    lines = [
        _reading(lamp.device.device_id, m["dim_level"], m["active_power"], m["lamp_failure"], at)
        for at in range(start, night, 600)
        for lamp in lamps
        for m in [lamp.reading(at)]
    ]
    await client.write(("\n".join(lines) + "\n").encode(), retention_policy=RAW_RP)
    end = night // HOUR * HOUR
    await rebuild(client, BatchWriter(client), "lamppost", "1h", start * NS, end * NS)
    usual = await usual_power(client, Selection.of_tenants(["GM0363"]), end * NS)
    assert len(usual) == len(lamps)
    ids = [lamp.device.device_id for lamp in lamps]
    with _open_registry(tmp_path / "fleet.sqlite3", ids) as registry:
        evaluator = Evaluator(registry, client, [], EvaluatorConfig("t"))
        await evaluator.step(NIGHT)
        await evaluator.step(NIGHT + timedelta(minutes=10))
        alerts = registry.alerts(limit=1000)  # pending, firing, or pending and resolved
    assert [a.summary for a in alerts if "usual power" in a.summary] == []


async def test_the_usual_is_read_again_each_hour_without_holding_up_a_round(
    client: InfluxClient,
) -> None:
    """The first round waits for the lamps' usual; the first round of a new hour answers with
    the last hour's at once and reads the new one beside it, used from the round it is ready."""
    night = int(NIGHT.timestamp())
    lines = [
        _reading(d, 100.0, watts, 0.0, at)
        for d, watts, hours in (("lp-old", 50.0, 12), ("lp-young", 30.0, 6))
        for at in range(night - hours * HOUR, night, 600)
    ]
    await client.write(("\n".join(lines) + "\n").encode(), retention_policy=RAW_RP)
    await rebuild(
        client, BatchWriter(client), "lamppost", "1h", (night - 12 * HOUR) * NS, night * NS
    )
    memory = Memory()

    async def usual_at(moment: datetime) -> dict[str, float]:
        return await Round(client, moment, [], tenants=("GM0363",), memory=memory).usual_power()

    # At 21:05 lp-young has 5 lit hours before 21:00: not enough to know its usual.
    assert await usual_at(NIGHT - timedelta(minutes=55)) == {"lp-old": pytest.approx(0.5)}
    pending = memory.usual_power_reading
    assert pending is None
    assert await usual_at(NIGHT + timedelta(minutes=5)) == {"lp-old": pytest.approx(0.5)}
    pending = memory.usual_power_reading
    assert pending is not None
    await asyncio.wait([pending[1]])
    assert await usual_at(NIGHT + timedelta(minutes=6)) == {
        "lp-old": pytest.approx(0.5),
        "lp-young": pytest.approx(0.3),
    }
    assert memory.usual_power_reading is None
