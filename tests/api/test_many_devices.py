"""Pages and areas of 10,000 devices on a real InfluxDB: every answer complete, none a 500.

The registry (SQLite) holds 10,000 air-quality devices in two tenants, each with one reading
written by the time-series writer; the API runs over real HTTP. Queries must not grow with the
number of devices in the URL (InfluxDB's /query is limited to 64 KB of URL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from api import ApiConfig
from devices import Registry
from lantaarn.localstack import Influx
from lantaarn.seed import register_fleet
from simulators import Fleet, make_fleet
from tests.api.liveapi import serving
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.schema import RAW_RP, raw_measurement

pytestmark = pytest.mark.slow

DEVICES = 10_000
KIND = "air_quality"
NS = 1_000_000_000
# Around both tenants' cities (Amsterdam and Utrecht), so every device is in the box.
EVERYWHERE = "3.0,51.0,6.0,53.5"


def _pm25(n: int) -> float:
    return float(n % 50) + 0.5


@dataclasses.dataclass(frozen=True)
class Fleetwide:
    """The served API's URL and the fleet it knows."""

    url: str
    fleet: Fleet


async def _write_readings(config: InfluxConfig, fleet: Fleet, now_ns: int) -> None:
    lines = [
        line(
            series_key(raw_measurement(KIND), {"tenant": d.tenant, "device_id": d.device_id}),
            {"pm25": _pm25(n), "seq": 1},
            now_ns - (n % 60) * NS,
        )
        for n, d in enumerate(fleet.devices)
    ]
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        writer = BatchWriter(client)
        for start in range(0, len(lines), 5000):
            outcome = await writer.write(lines[start : start + 5000], retention_policy=RAW_RP)
            assert not outcome.refused


@pytest.fixture(scope="module")
def fleetwide(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleetwide]:
    """10,000 devices of one kind, each with one reading of the last two minutes."""
    made = make_fleet(DEVICES, tenants=2, seed=5)
    # Reporting every ten minutes: a reading of the last minutes is "online".
    fleet = Fleet(
        made.tenants,
        tuple(dataclasses.replace(d, kind=KIND, interval_s=600.0) for d in made.devices),
    )
    folder = tmp_path_factory.mktemp("many")
    registry_url = f"sqlite:///{folder / 'registry.sqlite3'}"
    with Registry(registry_url) as registry:
        assert register_fleet(registry, fleet) == DEVICES
    config = InfluxConfig(influx.url, database=f"many_{uuid.uuid4().hex[:10]}")
    asyncio.run(_write_readings(config, fleet, time.time_ns() - 60 * NS))
    with serving(ApiConfig(registry_url, config, anonymous_read=True)) as url:
        yield Fleetwide(url, fleet)


@pytest.fixture
def http(fleetwide: Fleetwide) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleetwide.url, timeout=120) as client:
        yield client


def test_every_page_of_a_thousand_devices_carries_their_readings(
    fleetwide: Fleetwide, http: httpx.Client
) -> None:
    expected = {d.device_id: _pm25(n) for n, d in enumerate(fleetwide.fleet.devices)}
    seen: dict[str, float] = {}
    params: dict[str, str | int] = {"limit": 1000}
    for _page in range(DEVICES // 1000 + 1):
        response = http.get("/v1/devices", params=params)
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert len(body["items"]) == 1000
        for item in body["items"]:
            assert item["status"] == "online", item
            seen[item["deviceId"]] = item["latest"]["pm25"]
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    assert seen == expected


def test_a_page_of_a_box_carries_its_readings(fleetwide: Fleetwide, http: httpx.Client) -> None:
    tenant = fleetwide.fleet.tenants[1].code
    response = http.get("/v1/devices", params={"limit": 1000, "bbox": EVERYWHERE, "tenant": tenant})
    assert response.status_code == 200, response.text[:500]
    items = response.json()["items"]
    assert len(items) == 1000
    assert all(item["tenant"] == tenant and item["latest"]["pm25"] > 0 for item in items)


def test_latest_answers_every_device(fleetwide: Fleetwide, http: httpx.Client) -> None:
    response = http.get("/v1/latest")
    assert response.status_code == 200, response.text[:500]
    answered = {item["deviceId"]: item for item in response.json()}
    assert len(answered) == DEVICES
    assert all(item["metrics"].get("pm25") is not None for item in answered.values())
    tenant = fleetwide.fleet.tenants[0].code
    one = http.get("/v1/latest", params={"tenant": tenant})
    assert one.status_code == 200, one.text[:500]
    assert {item["deviceId"] for item in one.json()} == {
        d.device_id for d in fleetwide.fleet.devices if d.tenant == tenant
    }


def test_aggregates_over_a_box_of_ten_thousand_devices(
    fleetwide: Fleetwide, http: httpx.Client
) -> None:
    values = [_pm25(n) for n in range(DEVICES)]
    response = http.get(
        "/v1/aggregates",
        params={"kind": KIND, "metric": "pm25", "interval": "1d", "bbox": EVERYWHERE},
    )
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["devices"] == DEVICES
    assert sum(item["count"] for item in body["items"]) == DEVICES
    assert min(item["min"] for item in body["items"]) == min(values)
    assert max(item["max"] for item in body["items"]) == max(values)


def test_aggregates_over_a_box_of_one_tenant_count_only_its_devices(
    fleetwide: Fleetwide, http: httpx.Client
) -> None:
    tenant = fleetwide.fleet.tenants[0].code
    mine = [_pm25(n) for n, d in enumerate(fleetwide.fleet.devices) if d.tenant == tenant]
    for extra in ({"bbox": EVERYWHERE}, {}):
        response = http.get(
            "/v1/aggregates",
            params={"kind": KIND, "metric": "pm25", "interval": "1d", "tenant": tenant, **extra},
        )
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert body["devices"] == len(mine)
        assert sum(item["count"] for item in body["items"]) == len(mine)
        total = sum(item["mean"] * item["count"] for item in body["items"])
        assert total == pytest.approx(sum(mine), rel=1e-9)
