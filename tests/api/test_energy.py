"""The energy figure on a real InfluxDB from known lamp readings: from raw readings, and from
rollups plus raw, both equal to what the readings say."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest

from api import ApiConfig, create_app
from devices import Device, Registry, Tenant
from devices.schedules import LOCAL_ZONE
from lantaarn.localstack import Influx
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.rollups import Coverage, rebuild, write_coverage
from timeseries.schema import raw_measurement

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
STEP_S = 600
# Lamps: id, tenant, where, watts per % of dim level (full power / 100).
LAMPS = (
    ("gm0363-lp-1", "GM0363", (52.37, 4.89), 0.5),
    ("gm0363-lp-2", "GM0363", (52.30, 4.95), 0.3),
    ("gm0344-lp-1", "GM0344", (52.09, 5.12), 1.1),
)


def _level(moment: datetime) -> float:
    """The lamps' night profile by local hour: 100 % in the evening, 50 % at night, else off."""
    hour = moment.astimezone(LOCAL_ZONE).hour
    return 100.0 if 17 <= hour < 23 else 50.0 if hour >= 23 or hour < 7 else 0.0


def _readings(
    day: date,
) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Line protocol around the local `day`, and per lamp (kWh, burning hours) within it."""
    start = datetime.combine(day, time(), tzinfo=LOCAL_ZONE).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=LOCAL_ZONE).astimezone(UTC)
    lines, within = [], {}
    for device_id, tenant, _, k in LAMPS:
        energy, hours = 100.0, 2000.0
        at_start = at_end = (energy, hours)
        moment = start - timedelta(hours=6)
        while moment < end + timedelta(hours=2):
            level = _level(moment)
            power = k * level
            energy += power * STEP_S / 3.6e6
            hours += STEP_S / 3600 if level > 0 else 0.0
            if moment < start:
                at_start = (energy, hours)
            if moment < end:
                at_end = (energy, hours)
            ns = int(moment.timestamp()) * NS
            lines.append(
                f"{raw_measurement('lamppost')},device_id={device_id},tenant={tenant} "
                f"dim_level={level},active_power={power},active_energy={energy!r},"
                f"operating_hours={hours!r} {ns}"
            )
            moment += timedelta(seconds=STEP_S)
        within[device_id] = (at_end[0] - at_start[0], at_end[1] - at_start[1])
    return lines, within


@pytest.fixture
async def http_and_client(
    influx: Influx, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, InfluxClient]]:
    """The API (anonymous reading) over a fresh database and a registry with the lamps."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url) as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_tenant(Tenant("GM0344", "Utrecht"))
        registry.add_devices(
            [Device(d, t, "lamppost", d, lat, lon) for d, t, (lat, lon), _ in LAMPS]
        )
    config = InfluxConfig(influx.url, database=f"e_{uuid.uuid4().hex[:10]}")
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        app = create_app(ApiConfig(url, config, anonymous_read=True))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield http, client


async def test_energy_per_group_and_day_from_raw_and_from_rollups(
    http_and_client: tuple[httpx.AsyncClient, InfluxClient],
) -> None:
    http, client = http_and_client
    day = datetime.now(LOCAL_ZONE).date() - timedelta(days=5)
    lines, within = _readings(day)
    await client.write("\n".join(lines).encode())
    full_w = {d: k * 100 for d, _, _, k in LAMPS}
    amsterdam = ("gm0363-lp-1", "gm0363-lp-2")
    want_measured = sum(within[d][0] for d in amsterdam)
    want_full = sum(full_w[d] * within[d][1] for d in amsterdam) / 1000

    raw = await http.get("/v1/energy", params={"tenant": "GM0363", "day": day.isoformat()})
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["source"] == "raw"
    assert (body["lamps"], body["lampsReporting"]) == (2, 2)
    assert body["measuredKwh"] == pytest.approx(want_measured, rel=1e-6)
    assert body["fullKwh"] == pytest.approx(want_full, rel=1e-6)
    # Dimmed to half at night, so less than full light and more than half of it.
    assert 0 < body["savedShare"] < 0.5
    assert body["savedKwh"] == pytest.approx(want_full - want_measured, rel=1e-6)

    # The first half of the day from stored 1-hour rollups, the rest from raw: the same figure.
    start = datetime.combine(day, time(), tzinfo=LOCAL_ZONE)
    start_ns = int(start.timestamp()) * NS
    half = start_ns + 12 * 3600 * NS
    writer = BatchWriter(client)
    assert await rebuild(client, writer, "lamppost", "1h", start_ns, half) > 0
    await write_coverage(writer, "lamppost", "1h", Coverage(start_ns, half))
    mixed = (
        await http.get("/v1/energy", params={"tenant": "GM0363", "day": day.isoformat()})
    ).json()
    assert mixed["source"] == "rollup+raw"
    assert mixed["measuredKwh"] == pytest.approx(want_measured, rel=1e-6)
    assert mixed["fullKwh"] == pytest.approx(want_full, rel=1e-6)

    # A box around one lamp; the other tenant's lamp never counts in Amsterdam's figure.
    one = await http.get(
        "/v1/energy", params={"tenant": "GM0363", "bbox": "4.9,52.2,5.0,52.35", "day": str(day)}
    )
    assert one.json()["lamps"] == 1
    assert one.json()["fullKwh"] == pytest.approx(
        full_w["gm0363-lp-2"] * within["gm0363-lp-2"][1] / 1000, rel=1e-6
    )
    bad = await http.get("/v1/energy", params={"bbox": "1,2,3", "day": str(day)})
    assert bad.status_code == 400
    assert bad.json()["invalidParams"][0]["name"] == "bbox"


async def test_a_day_that_is_not_whole_hours_or_out_of_reach_is_400(
    http_and_client: tuple[httpx.AsyncClient, InfluxClient],
) -> None:
    http, _ = http_and_client
    # Amsterdam kept local mean time (UTC+0:19:32) until 1937; and no date past 9999.
    for day in ("1930-06-01", "9999-12-31", "1969-12-31"):
        answer = await http.get("/v1/energy", params={"day": day})
        assert answer.status_code == 400, (day, answer.text)
        assert [p["name"] for p in answer.json()["invalidParams"]] == ["day"]
