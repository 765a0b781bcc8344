"""The whole path on real services: simulated devices -> Mosquitto -> ingest -> InfluxDB -> API."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import httpx
import pytest

from api.routes import readings as readings_route
from api.timefmt import format_ns
from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Ledger, Publisher, make_fleet, run_fleet
from tests.platform import running_platform

pytestmark = pytest.mark.anyio


async def _all_readings(http: httpx.AsyncClient, device_id: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    url: str | None = f"/v1/devices/{device_id}/readings?limit=7"
    while url is not None:
        response = await http.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        url = None
        if body["next"]:
            link = response.headers["Link"]
            assert link.endswith('rel="next"')
            url = link[1 : link.index(">")]
    return items


async def test_every_published_reading_comes_back_through_the_api(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet(24, tenants=2, seed=7, interval_s=0.01)
    ledger = Ledger()
    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet) as platform:

        def publish() -> int:
            address = BrokerAddress("::1", mosquitto.port)
            with Publisher(address, f"sim-{platform.group}") as publisher:
                sent = run_fleet(
                    fleet.devices, publisher, seed=7, readings_per_device=10, ledger=ledger
                )
                assert publisher.flush(30)
            return sent

        sent = await asyncio.to_thread(publish)
        assert sent == 24 * 10 == len(ledger)
        expected = ledger.by_device()
        got: dict[str, list[dict[str, object]]] = {}
        async with asyncio.timeout(30):
            while True:
                for device_id in expected:
                    got[device_id] = await _all_readings(platform.http, device_id)
                if all(len(got[d]) >= len(expected[d]) for d in expected):
                    break
                await asyncio.sleep(0.2)
        # The same readings as CSV, streamed a few at a time, newest first.
        monkeypatch.setattr(readings_route, "CSV_PAGE", 3)
        device_id, sent_readings = next(iter(expected.items()))
        response = await platform.http.get(
            f"/v1/devices/{device_id}/readings",
            params={"order": "desc"},
            headers={"Accept": "text/csv"},
        )
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["ts"] for r in rows] == [format_ns(e.ts_ns) for e in reversed(sent_readings)]
        for row, entry in zip(rows, reversed(sent_readings), strict=True):
            assert row["seq"] == str(entry.seq)
            assert {k: float(v) for k, v in row.items() if k not in ("ts", "seq") and v} == (
                entry.metrics
            )

    for device_id, sent_readings in expected.items():
        stored = {item["ts"]: item for item in got[device_id]}
        assert len(stored) == len(sent_readings), device_id
        for entry in sent_readings:
            item = stored[format_ns(entry.ts_ns)]
            assert item["seq"] == entry.seq
            assert item["metrics"] == entry.metrics
    assert sum(s.values_stored for s in platform.stats) == sum(len(e.metrics) for e in ledger.sent)
    assert all(not s.rejected for s in platform.stats)


async def test_the_api_answers_on_ipv4_and_ipv6(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    async with running_platform(mosquitto, influx, tmp_path) as platform:
        for host in ("[::1]", "127.0.0.1"):
            async with httpx.AsyncClient() as http:
                response = await http.get(f"http://{host}:{platform.api_port}/v1/health")
            assert response.status_code == 200
            assert response.json()["status"] == "up"
            assert response.headers["API-Version"]
