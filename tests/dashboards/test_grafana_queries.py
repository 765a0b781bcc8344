"""Every query of the shipped Grafana dashboards, run against an InfluxDB the ingest filled.

Grafana is not needed: the test does what Grafana would — run each variable query, fill its
answer into the dashboards' `$tenant`, `$kind` and `$device`, expand the time macros — and
requires each panel query to return at least one value.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML (via uvicorn[standard]) has no types

from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Fleet, Publisher, make_fleet
from tests.dashboards.live_fleet import LiveFleet, publish_troubles
from tests.platform import running_platform

pytestmark = pytest.mark.anyio

GRAFANA = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
HISTORY_MINUTES = 90
# Grafana's macros for a 3-hour range drawn ~180 points wide.
RANGE_MS = 3 * 3600 * 1000
INTERVAL = "1m"


@dataclass(frozen=True)
class Query:
    """One query of a dashboard, with where it came from."""

    dashboard: str
    where: str
    text: str


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # Collapsed rows keep their panels inside them.
        yield from _panels(panel.get("panels", []))


def _load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return board


def _variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = board.get("templating", {}).get("list", [])
    return found


def _panel_queries(path: Path) -> list[Query]:
    board = _load(path)
    return [
        Query(path.name, f"panel {panel['title']!r} {target['refId']}", target["query"])
        for panel in _panels(board["panels"])
        for target in panel.get("targets", [])
    ]


def test_the_dashboards_are_complete_and_use_the_provisioned_source() -> None:
    names = {p.stem for p in DASHBOARDS}
    assert {"fleet", "air-quality", "noise", "lampposts"} <= names
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "lantaarn.yaml").read_text()
    )
    source = provisioned["datasources"][0]
    assert source["type"] == "influxdb"
    assert source["jsonData"]["dbName"] == "lantaarn"
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "lantaarn.yaml").read_text()
    )
    assert providers["providers"][0]["type"] == "file"
    uids = set()
    for path in DASHBOARDS:
        board = _load(path)
        uids.add(board["uid"])
        variables = {v["name"] for v in _variables(board)}
        assert {"tenant", "device"} <= variables, path.name
        panels = list(_panels(board["panels"]))
        assert panels, path.name
        for panel in panels:
            assert panel["datasource"]["uid"] == source["uid"], (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                # Raw InfluxQL only: the query builder's form would not be tested here.
                assert target["rawQuery"] is True, (path.name, panel["title"])
                assert "$timeFilter" in target["query"], (path.name, panel["title"])
    assert len(uids) == len(DASHBOARDS)
    fleet = {v["name"] for v in _variables(_load(GRAFANA / "dashboards" / "fleet.json"))}
    assert "kind" in fleet


@dataclass
class Filled:
    """An InfluxDB database the ingest worker filled, and how to ask it."""

    http: httpx.AsyncClient
    database: str
    now_ms: int

    async def run(self, query: str) -> list[dict[str, Any]]:
        """The series of one InfluxQL statement; raises on an error answer."""
        response = await self.http.get(
            "/query", params={"db": self.database, "q": query, "epoch": "ms"}
        )
        response.raise_for_status()
        results = response.json()["results"]
        assert len(results) == 1
        assert "error" not in results[0], (query, results[0]["error"])
        series: list[dict[str, Any]] = results[0].get("series", [])
        return series


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One backend for the module's shared, filled database."""
    return "asyncio"


@pytest.fixture(scope="module")
async def filled(
    mosquitto: Mosquitto, influx: Influx, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Filled]:
    """90 minutes of a 64-device fleet in two tenants, some rejections and a last will."""
    fleet = make_fleet(64, tenants=2, seed=5, interval_s=60.0)
    folder = tmp_path_factory.mktemp("grafana")
    async with running_platform(mosquitto, influx, folder, fleet=fleet) as platform:
        # History through the real broker and worker; the live part stops after one round.
        with LiveFleet(
            fleet, mosquitto.port, f"sim-{platform.group}", history_minutes=HISTORY_MINUTES
        ) as live:
            live.stop.set()
        expected = live.sent

        def troubles() -> None:
            with Publisher(BrokerAddress("::1", mosquitto.port), f"bad-{platform.group}") as pub:
                publish_troubles(pub, Fleet(fleet.tenants, fleet.devices), int(time.time() * 1000))
                assert pub.flush(10)

        await asyncio.to_thread(troubles)
        database = platform.influx.database
        async with httpx.AsyncClient(base_url=influx.url, timeout=30) as http:
            filled = Filled(http, database, int(time.time() * 1000))
            async with asyncio.timeout(60):
                while True:
                    stored = await filled.run(
                        'SELECT count("seq") FROM "raw"./.*/ WHERE time > now() - 1d'
                    )
                    count = sum(s["values"][0][1] for s in stored if s["name"] != "rejection")
                    rejected = await filled.run('SELECT count("detail") FROM "rejection"')
                    statuses = await filled.run('SELECT count("state") FROM "device_status"')
                    if count >= expected and rejected and statuses:
                        break
                    await asyncio.sleep(0.3)
            filled.now_ms = int(time.time() * 1000)
            yield filled


def _regex_alternatives(values: list[str]) -> str:
    # What Grafana puts in for a multi-value variable used in an InfluxQL regex.
    return "(" + "|".join(re.sub(r"([\\/^$.|?*+()\[\]{}])", r"\\\1", v) for v in values) + ")"


def _expand(query: str, variables: dict[str, str], now_ms: int) -> str:
    text = query.replace("$timeFilter", f"time >= {now_ms - RANGE_MS}ms and time <= {now_ms}ms")
    text = text.replace("$__interval_ms", "60000")
    text = text.replace("$__interval", INTERVAL).replace("$interval", INTERVAL)
    # Longest names first, so $device is not mistaken for a prefix of a longer name.
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    left = re.findall(r"\$\{?[A-Za-z_]\w*", text)
    assert not left, f"unexpanded {left} in {text}"
    return text


def _values(series: list[dict[str, Any]]) -> list[Any]:
    """Every value of every row, leaving out the time column."""
    out: list[Any] = []
    for s in series:
        columns = s["columns"]
        for row in s.get("values", []):
            out.extend(v for c, v in zip(columns, row, strict=True) if c != "time")
    return out


async def _fill_variables(
    filled: Filled, board: dict[str, Any], choose: str
) -> tuple[dict[str, str], list[str]]:
    """Run the variable queries in order; `choose` "all" or "first" value of each."""
    chosen: dict[str, str] = {}
    problems = []
    for variable in _variables(board):
        query = _expand(variable["query"], chosen, filled.now_ms)
        series = await filled.run(query)
        # SHOW TAG VALUES answers (key, value); SHOW MEASUREMENTS answers (name).
        values = sorted({row[-1] for s in series for row in s.get("values", [])})
        if not values:
            problems.append(f"variable ${variable['name']} is empty: {query}")
            values = ["none"]
        chosen[variable["name"]] = _regex_alternatives(values if choose == "all" else values[:1])
    return chosen, problems


@pytest.mark.parametrize("choose", ["all", "first"])
@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
async def test_every_query_of_the_dashboard_returns_data(
    filled: Filled, path: Path, choose: str
) -> None:
    board = _load(path)
    variables, problems = await _fill_variables(filled, board, choose)
    queries = _panel_queries(path)
    assert queries
    for query in queries:
        text = _expand(query.text, variables, filled.now_ms)
        values = [v for v in _values(await filled.run(text)) if v is not None]
        if not values:
            problems.append(f"{query.where} returned no data: {text}")
    assert not problems, "\n".join(problems)
