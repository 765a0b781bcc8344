"""Whatever answers in InfluxDB's place, the API answers with a problem, never a bare 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api import ApiConfig
from devices import DEVICE_KINDS, Registry
from lantaarn.seed import register_fleet
from simulators import make_fleet
from tests.api.liveapi import serving
from tests.timeseries.strange import Answer, strange_influx
from timeseries import InfluxConfig

PROBLEM = "application/problem+json"


def _metric(kind: str) -> str:
    return DEVICE_KINDS[kind].metrics[0].name


NOT_RESULTS = [
    Answer(200, "text/html", b"<html><body>Sign in to continue</body></html>"),
    Answer(200, "application/json", b'{"results":[{"statement_id":0,"ser'),
    Answer(
        200, "application/json", b'{"results":[{"series":[{"columns":["time"],"values":[[]]}]}]}'
    ),
]


@pytest.mark.parametrize("answer", NOT_RESULTS, ids=["html", "cut off", "short row"])
def test_answers_that_are_not_results_become_problems(tmp_path: Path, answer: Answer) -> None:
    registry_url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    fleet = make_fleet(8, tenants=2, seed=3)
    with Registry(registry_url) as registry:
        register_fleet(registry, fleet)
    device = fleet.devices[0]
    with strange_influx() as (influx_url, server):
        server.answer = answer
        config = ApiConfig(registry_url, InfluxConfig(influx_url, timeout_s=5), anonymous_read=True)
        with serving(config) as url, httpx.Client(base_url=url, timeout=30) as http:
            for path, params in (
                ("/v1/latest", {}),
                ("/v1/aggregates", {"kind": device.kind, "metric": _metric(device.kind)}),
                (
                    f"/v1/devices/{device.device_id}/aggregates",
                    {"metric": _metric(device.kind)},
                ),
            ):
                response = http.get(path, params=params)
                assert response.status_code == 502, (path, response.text[:300])
                assert response.headers["content-type"] == PROBLEM
            # The registry stays readable: devices without their live state.
            page = http.get("/v1/devices")
            assert page.status_code == 200, page.text[:300]
            assert len(page.json()["items"]) == len(fleet.devices)
            assert all(item["status"] is None for item in page.json()["items"])
            one = http.get(f"/v1/devices/{device.device_id}")
            assert one.status_code == 200, one.text[:300]
