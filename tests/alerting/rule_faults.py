"""Shared set-up for the fault-mode tests of the built-in alert rules: a street of two devices
of one kind, one with a fault mode of the simulator and one without, published in simulated
(past) time through the real broker to a real ingest worker and InfluxDB; then the real
evaluator, at moments the test chooses, with one built-in rule of the tenant switched on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from alerting import Evaluator, EvaluatorConfig
from devices import Device, Tenant
from devices.alert_rules import Alert, AlertState, builtin_for
from lantaarn.localstack import Influx, Mosquitto
from simulators import (
    CITIES,
    BrokerAddress,
    FaultRates,
    Fleet,
    Ledger,
    Publisher,
    SimClock,
    Simulation,
)
from simulators.behaviour import CityWeather
from tests.platform import Platform, running_platform
from timeseries import InfluxClient
from timeseries.schema import RAW_RP, quote_ident, raw_measurement

AMSTERDAM = CITIES[0]
AMSTERDAM_ZONE = ZoneInfo("Europe/Amsterdam")
AMSTERDAM_TENANT = Tenant(AMSTERDAM.code, AMSTERDAM.name, (AMSTERDAM.prefix,))
SEED = 5
# A simulated clock this fast publishes a street's hour in a few milliseconds; the readings
# carry the simulated times, all in the past.
FAST = 1e7


def recent(hour_utc: int, *, before: float, room_s: float) -> datetime:
    """The latest whole `hour_utc` (UTC) at least `room_s` seconds before `before` (epoch s):
    a moment in the recent past with room after it for the readings a rule waits for."""
    moment = datetime.fromtimestamp(before - room_s, UTC).replace(minute=0, second=0, microsecond=0)
    while moment.hour != hour_utc:
        moment -= timedelta(hours=1)
    return moment


def recent_local(hour: int, minute: int, *, before: float, room_s: float) -> datetime:
    """The latest `hour`:`minute` of Amsterdam's clock at least `room_s` seconds before
    `before` (epoch s), in UTC: the rules' hours are local, summer time or not."""
    latest = datetime.fromtimestamp(before - room_s, AMSTERDAM_ZONE)
    moment = latest.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if moment > latest:
        moment -= timedelta(days=1)  # wall-clock arithmetic: the same local time a day earlier
    return moment.astimezone(UTC)


def windy_night(*, before: float, span: timedelta, days: int = 7) -> tuple[datetime, float]:
    """The start (a whole hour from 00:00 to 03:00 Amsterdam time) of the windiest `span` of the
    last `days` nights before `before` (epoch s), and the wind (m/s) of its calmest minute, as
    the simulator's weather of the city has it: whichever night the wind blows, fine dust stays
    low (a calm night keeps a healthy street near 23 µg/m³, above the WHO rule's 20)."""
    weather = CityWeather(SEED, AMSTERDAM.code)
    today = datetime.fromtimestamp(before, AMSTERDAM_ZONE).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    best: tuple[datetime, float] | None = None
    minutes = int(span.total_seconds() // 60) + 1
    for day in range(days + 1):
        midnight = today - timedelta(days=day)
        for hour in range(4):
            start = (midnight + timedelta(hours=hour)).astimezone(UTC)
            if (start + span).timestamp() > before:
                continue
            t0 = start.timestamp()
            calmest = min(weather.at(t0 + 60.0 * m).wind_speed for m in range(minutes))
            if best is None or calmest > best[1]:
                best = (start, calmest)
    assert best is not None, "no night in range"
    return best


@dataclass
class Street:
    """Two devices of a kind, `sick` with the fault mode and `well` without, on a platform."""

    platform: Platform
    client: InfluxClient
    sick: Device
    well: Device
    ledger: Ledger = field(default_factory=Ledger)
    _evaluators: dict[str, Evaluator] = field(default_factory=dict)
    _rules: dict[str, str] = field(default_factory=dict)  # built-in name -> the tenant's rule id

    async def publish(
        self, fault: FaultRates, start: datetime, readings: int, *, limit_s: float = 10.0
    ) -> None:
        """Both devices' readings from `start` at their interval (the sick one with `fault`),
        published and waited for until ingest has stored or rejected every one. A device that
        stays silent never reaches its `readings`: `limit_s` real seconds end its run."""
        await self._run([(self.sick, fault), (self.well, FaultRates())], start, readings, limit_s)

    async def recover(self, start: datetime, readings: int) -> None:
        """Both devices healthy from `start`: the fault is over (repaired, the episode past)."""
        await self._run([(d, FaultRates()) for d in (self.sick, self.well)], start, readings, 10.0)

    async def _run(
        self,
        plan: Sequence[tuple[Device, FaultRates]],
        start: datetime,
        readings: int,
        limit_s: float,
    ) -> None:
        address = BrokerAddress("::1", self.platform.broker.port)

        def run() -> None:
            with Publisher(address, f"sim-{self.platform.group}") as publisher:
                for device, rates in plan:
                    clock = SimClock(start.timestamp(), FAST, catch_up=False)
                    simulation = Simulation(
                        [device],
                        seed=SEED,
                        clock=clock,
                        faults=rates,
                        ledger=self.ledger,
                        spread=False,
                        status=False,  # no status messages: the silence rule reads them
                    )
                    links = publisher.links(1)
                    simulation.run(links, duration_s=limit_s, readings_per_device=readings)
                    assert simulation.finish(links, 30)

        await asyncio.to_thread(run)
        await self.settled()

    async def settled(self, limit_s: float = 30.0) -> None:
        """Wait until InfluxDB holds every point and dead-letter record the ledger expects."""
        expected = self.ledger.expected_outcome({d.device_id: d for d in (self.sick, self.well)})
        want = (len(expected.points), sum(expected.records.values()))
        deadline = time.monotonic() + limit_s
        while (got := await self.stored()) != want:
            assert time.monotonic() < deadline, f"stored {got}, expected {want}"
            await asyncio.sleep(0.1)

    async def stored(self) -> tuple[int, int]:
        """(points of the street's kind, dead-letter records) in InfluxDB."""
        kind = quote_ident(raw_measurement(self.sick.kind))
        results = await self.client.query(
            [
                f'SELECT count("seq") FROM {quote_ident(RAW_RP)}.{kind}',
                f'SELECT count("values") FROM {quote_ident(RAW_RP)}."rejection"',
            ]
        )
        counts = [int(r[0].values[0][1]) if r else 0 for r in results]
        return counts[0], counts[1]

    async def evaluate(self, builtin: str, moments: Sequence[datetime]) -> dict[str, AlertState]:
        """Run the evaluator at each moment with the built-in switched on for the tenant (the
        first time it is asked for); the state of each subject's latest alert of that rule."""
        registry = self.platform.registry
        if builtin not in self._evaluators:
            rule = builtin_for(builtin, AMSTERDAM.code)
            assert rule is not None, builtin
            self._rules[builtin] = (await asyncio.to_thread(registry.add_rule, rule)).id
            config = EvaluatorConfig(f"faults-{builtin}")
            self._evaluators[builtin] = Evaluator(registry, self.client, [], config)
        for moment in moments:
            await self._evaluators[builtin].evaluate(moment)
        alerts = await asyncio.to_thread(self.alerts, builtin)
        return {a.subject: a.state for a in sorted(alerts, key=lambda a: a.started_at)}

    def alerts(self, builtin: str) -> list[Alert]:
        """Every alert of the tenant's copy of a built-in."""
        rule_id = self._rules[builtin]
        return [a for a in self.platform.registry.alerts() if a.rule_id == rule_id]


def street_devices(kind: str, interval_s: float, created_at: datetime) -> tuple[Device, Device]:
    """A sick and a well device of `kind` in Amsterdam, registered since `created_at`."""

    def made(role: str, offset: float) -> Device:
        return Device(
            f"gm0363-{kind.replace('_', '')[:6]}-{role}",
            AMSTERDAM.code,
            kind,
            f"{kind} {role}",
            AMSTERDAM.latitude + offset,
            AMSTERDAM.longitude,
            interval_s=interval_s,
            created_at=created_at,
        )

    return made("sick", 0.0), made("well", 0.001)


@asynccontextmanager
async def street(
    mosquitto: Mosquitto,
    influx: Influx,
    folder: Path,
    kind: str,
    *,
    interval_s: float = 60.0,
    created_at: datetime | None = None,
) -> AsyncIterator[Street]:
    """A running platform (ingest worker, registry, InfluxDB) with a sick and a well `kind`."""
    created = created_at or datetime.now(UTC) - timedelta(days=2)
    sick, well = street_devices(kind, interval_s, created)
    fleet = Fleet((AMSTERDAM_TENANT,), (sick, well))
    async with (
        running_platform(mosquitto, influx, folder, fleet=fleet) as platform,
        InfluxClient(platform.influx) as client,
    ):
        yield Street(platform, client, sick, well)
