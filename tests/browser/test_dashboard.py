"""The built-in dashboard in headless Chromium against a running platform with a live fleet."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Page, Request, Route

from tests.browser.conftest import FLEET_SIZE, Live, Tab

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

# Polling every second keeps the tests short; operators get the 5 s default.
LIVE = "/dashboard?refresh=1&lang=en"


async def _until(page: Page, predicate: str, arg: Any = None, wait_ms: float = 10_000) -> None:
    """Wait until a JavaScript predicate holds; expressions become functions.

    Playwright evaluates a bare expression with eval(), which the dashboard's Content Security
    Policy (rightly) forbids; a function is handed over by the debugger protocol instead.
    """
    if not predicate.lstrip().startswith("("):
        predicate = f"() => ({predicate})"
    await page.wait_for_function(predicate, arg=arg, timeout=wait_ms)


async def _texts(page: Page, selector: str) -> list[str]:
    texts: list[str] = await page.locator(selector).all_inner_texts()
    return texts


async def _row_times(page: Page) -> dict[str, str]:
    """Device id -> the 'last reading' cell of the latest-values table."""
    found: dict[str, str] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#latest tbody tr')]
            .map((row) => [row.dataset.deviceId, row.cells[4].textContent]))"""
    )
    return found


def _code(reason: str) -> str:
    """The code of a reason shown as "words (code)"."""
    return reason.rsplit("(", 1)[-1].rstrip(")")


async def test_overview_shows_the_fleet_and_updates_by_itself(live: Live, tab: Tab) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE)
    await _until(page, f"document.getElementById('n-devices').textContent === '{FLEET_SIZE}'")
    # Counted on the server (/v1/summary, a few seconds old at most), then pushed by /v1/events.
    await _until(
        page,
        f"""document.getElementById('n-online').textContent === '{FLEET_SIZE - 2}'
            && document.getElementById('n-offline').textContent === '1'
            && document.getElementById('n-silent').textContent === '1'""",
        wait_ms=30_000,
    )
    # Read at once: a pushed summary redraws the table every few seconds.
    fleet_rows: list[str] = await page.evaluate(
        "() => [...document.querySelectorAll('#fleet tbody tr')].map((r) => r.innerText)"
    )
    pairs = {(d.tenant, d.kind) for d in live.fleet.devices}
    assert len(fleet_rows) == len(pairs)
    assert sum(int(r.split("\t")[2]) for r in fleet_rows) == FLEET_SIZE

    before = await _row_times(page)
    assert len(before) == FLEET_SIZE
    assert before[live.silent.device_id] == "–"
    await _until(
        page,
        """(before) => [...document.querySelectorAll('#latest tbody tr')].filter(
            (row) => before[row.dataset.deviceId] !== row.cells[4].textContent).length >= 10""",
        arg=before,
        wait_ms=15_000,
    )
    after = await _row_times(page)
    assert after[live.offline.device_id] == before[live.offline.device_id]
    # The fleet reports every second: its changes are pushed (`devices` events), and the rows
    # they touch keep what the events do not carry (names, kinds).
    names = sorted(await _texts(page, "#latest tbody tr td:first-child"))
    await _until(page, "Number(document.body.dataset.pushed ?? 0) >= 2", wait_ms=15_000)
    assert sorted(await _texts(page, "#latest tbody tr td:first-child")) == names
    assert all(name and name != "undefined" for name in names)

    capabilities = await page.get_attribute("body", "data-capabilities") or ""
    if "activity" in capabilities:
        await _until(page, "document.getElementById('activity-chart').dataset.readings > 0")
        await _until(page, "document.querySelectorAll('#reasons tbody tr').length >= 3")
        reasons = {_code(r.split("\t")[0]) for r in await _texts(page, "#reasons tbody tr")}
        assert {"bad_json", "unknown_metric", "out_of_range"} <= reasons
    else:
        # Without /v1/fleet/activity the page estimates, and says so.
        await _until(page, "document.getElementById('n-readings').textContent.startsWith('≥')")
        assert "no /v1/fleet/activity" in await page.inner_text("#activity-note")
    # Filters narrow the capped table.
    await page.select_option("#status-filter", "offline")
    assert await _texts(page, "#latest tbody tr td:first-child") == [live.offline.name]
    await page.screenshot(path=tab.screenshot_path("overview"), full_page=True)
    assert tab.errors == []


async def test_map_clusters_every_device_and_opens_one(live: Live, tab: Tab) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "#/map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    # Every device is on the map, alone or counted in a cluster.
    # (Once the zoom animation is over: during it, old and new clusters are both there.)
    await _until(
        page,
        f"""[...document.querySelectorAll('#map .leaflet-marker-icon')].reduce(
            (n, icon) => n + (icon.classList.contains('device-cluster')
                ? Number(icon.querySelector('.count').textContent) : 1), 0) === {FLEET_SIZE}""",
    )
    # The clusters come from the map's worker, not from the page's own thread.
    assert await page.get_attribute("#map", "data-clusters") == "worker"
    # Without a tile server (the tests have no network) the map is plain and says so.
    assert "no tiles" in await page.inner_text("#map-note")
    assert await page.locator("#map .leaflet-tile").count() == 0
    await page.screenshot(path=tab.screenshot_path("map"))

    # Status is a shape and a word in the marker's name, not only a colour.
    offline = live.offline.device_id
    await page.evaluate(
        "(id) => new Promise((done) => window.lantaarn.map.reveal(id, () => done()))", offline
    )
    marker = page.locator(f"#map .device-marker[title*='({offline})']")
    assert "offline" in (await marker.get_attribute("title") or "")
    assert await marker.locator(".shape").inner_text() == "■"

    await page.select_option("#colour-by", "air_quality:pm25")
    quality = sum(1 for d in live.fleet.devices if d.kind == "air_quality")
    await page.click("#fit-map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{quality}'")
    assert "µg/m³" in await page.inner_text("#legend")

    device_id = live.device_of("air_quality").device_id
    await page.evaluate(
        "(id) => new Promise((done) => window.lantaarn.map.reveal(id, () => done()))", device_id
    )
    # Chosen by keyboard (the pointer is the area test's): focus the marker, press Enter.
    await page.focus(f"#map .device-marker[title*='({device_id})']")
    await page.keyboard.press("Enter")
    await _until(
        page, f"location.hash === '#/device/{device_id}' && document.body.dataset.view === 'device'"
    )
    assert tab.errors == []


async def test_a_metric_colouring_the_map_is_also_written_out(live: Live, tab: Tab) -> None:
    """Coloured by a metric's latest value, the value is in each marker's name and in the map's
    table too: a colour is never the only way to read it."""
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "#/map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    # Coloured by status or kind there is no value column.
    assert await page.locator("#area-devices thead th:not([hidden])").count() == 4
    # Coloured by kind, each device's marker also carries its kind's mark, as the legend says.
    await page.select_option("#colour-by", "kind")
    noise = live.device_of("noise").device_id
    await page.evaluate(
        "(id) => new Promise((done) => window.lantaarn.map.reveal(id, () => done()))", noise
    )
    marker = f"#map .device-marker[title*='({noise})'] .kind"
    assert await page.inner_text(marker) == "No"
    assert "No Noise" in await page.inner_text("#legend")
    # The same marker, changed in place (it keeps a keyboard user's focus), loses and regains it.
    for scheme, mark in (("status", ""), ("kind", "No")):
        await page.select_option("#colour-by", scheme)
        await _until(
            page,
            "([s, m]) => document.querySelector(s)?.textContent === m",
            arg=[marker, mark],
        )
    await page.click("#fit-map")
    await page.screenshot(path=tab.screenshot_path("map-by-kind"))
    await page.select_option("#colour-by", "air_quality:pm25")
    await _until(page, "!document.getElementById('area-value-head').hidden")
    heads = await _texts(page, "#area-devices thead th")
    assert heads[-1] == "PM2.5 (µg/m³)", heads
    table: dict[str, str] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#area-devices tbody tr')]
            .map((r) => [r.dataset.deviceId, r.cells[4].textContent]))"""
    )
    assert table
    assert all(re.fullmatch(r"[0-9,]+(\.[0-9]+)?", v) for v in table.values()), table
    device_id = live.device_of("air_quality").device_id
    await page.evaluate(
        "(id) => new Promise((done) => window.lantaarn.map.reveal(id, () => done()))", device_id
    )
    title = await page.get_attribute(f"#map .device-marker[title*='({device_id})']", "title")
    assert title is not None
    assert title.endswith(f", PM2.5 {table[device_id]} µg/m³"), (title, table[device_id])
    assert tab.errors == []


async def test_a_map_coloured_by_a_metric_follows_its_latest_values(live: Live, tab: Tab) -> None:
    """The values a metric colours the map by are asked for again (every 12 refreshes: here
    each second), not kept from the moment the colouring was chosen."""
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "#/map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    await page.select_option("#colour-by", "air_quality:pm25")
    await _until(page, "!document.getElementById('area-value-head').hidden")
    first: dict[str, str] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#area-devices tbody tr')]
            .map((r) => [r.dataset.deviceId, r.cells[4].textContent]))"""
    )
    await _until(
        page,
        """(first) => [...document.querySelectorAll('#area-devices tbody tr')].some((r) =>
            r.dataset.deviceId in first && first[r.dataset.deviceId] !== r.cells[4].textContent)""",
        arg=first,
        wait_ms=30_000,
    )
    assert tab.errors == []


async def test_the_map_clusters_on_the_page_when_its_worker_cannot_start(
    live: Live, tab: Tab
) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)

    async def refuse(route: Route) -> None:
        await route.abort()

    await page.context.route("**/dashboard/cluster-worker.js", refuse)
    await page.goto(live.base_url + LIVE + "#/map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    assert await page.get_attribute("#map", "data-clusters") == "page"
    # Still every device, alone or in a cluster, and one still opens by its marker.
    device_id = live.device_of("noise").device_id
    await page.evaluate(
        "(id) => new Promise((done) => window.lantaarn.map.reveal(id, () => done()))", device_id
    )
    await page.click(f"#map .device-marker[title*='({device_id})']")
    await _until(page, f"location.hash === '#/device/{device_id}'")
    # The only complaint is the worker's script that was refused.
    assert [e for e in tab.errors if "ERR_FAILED" not in e] == []


# A one-pixel transparent PNG: what the test's tile servers answer.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
XYZ = "https://tiles.example.org/{z}/{x}/{y}.png"
WMTS = (
    "https://wmts.example.org/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=standaard"
    "&STYLE=default&TILEMATRIXSET=EPSG:3857&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&FORMAT=image/png"
)


async def test_the_base_map_comes_from_the_tile_source_configured(live: Live, tab: Tab) -> None:
    """The server's XYZ source (PDOK's by default), then this browser's own WMTS one from the
    settings; an address that is not an https tile template is refused there. Nothing else is
    fetched from anywhere but the dashboard's own server: no CDN."""
    page = tab.page
    tiles: list[str] = []
    elsewhere: list[str] = []

    async def tile(route: Route, request: Request) -> None:
        tiles.append(request.url)
        await route.fulfill(content_type="image/png", body=PNG)

    async def config(route: Route) -> None:
        await route.fulfill(json={"mapTiles": XYZ, "mapAttribution": "© Example tiles"})

    def note(request: Request) -> None:
        if not request.url.startswith((live.base_url, "https://tiles.", "https://wmts.", "data:")):
            elsewhere.append(request.url)

    page.on("request", note)
    await page.context.route("https://tiles.example.org/**", tile)
    await page.context.route("https://wmts.example.org/**", tile)
    await page.route("**/dashboard/config.json", config)
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "#/map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    await _until(page, "document.querySelectorAll('#map img.leaflet-tile-loaded').length > 0")
    assert tiles
    assert all(re.fullmatch(r"https://tiles\.example\.org/\d+/\d+/\d+\.png", u) for u in tiles)
    assert "© Example tiles" in await page.inner_text("#map .leaflet-control-attribution")
    assert "no tiles" not in await page.inner_text("#map-note")

    # Not an https tile template: the settings say so and keep what was there.
    await page.click("#open-settings")
    await page.fill("#tile-url", "http://tiles.example.org/{z}/{x}/{y}.png")
    await page.click("#save-settings")
    assert await page.evaluate("() => document.getElementById('tile-url').matches(':invalid')")
    assert await page.get_attribute("#tile-url", "title") == (
        "An https address with {z}, {x} and {y} in it"
    )
    await page.click("#settings button[value=cancel]")
    await _until(page, "!document.getElementById('settings').open")
    assert await page.evaluate("() => localStorage.getItem('lantaarn.tileUrl')") is None

    # This browser's own source, a WMTS server asked by key and value.
    await page.click("#open-settings")
    await page.fill("#tile-url", WMTS)
    before = len(tiles)
    await page.click("#save-settings")
    await _until(
        page,
        """[...document.querySelectorAll('#map img.leaflet-tile-loaded')].some(
            (img) => img.src.startsWith('https://wmts.'))""",
    )
    wmts = tiles[before:]
    assert wmts
    assert all(
        re.search(r"&TILEMATRIX=\d+&TILEROW=\d+&TILECOL=\d+&", u)
        for u in wmts
        if u.startswith("https://wmts.")
    ), wmts
    assert elsewhere == []
    assert tab.errors == []


async def _draw_area_around(page: Page, device_id: str, half_px: int) -> None:
    """Draw an area on the map with the mouse: a box `half_px` each way around the device's
    marker (found once drawing started: the hint it shows may move the map down a line)."""
    await page.click("#draw-area")
    await page.evaluate(
        "(id) => new Promise((done) => window.lantaarn.map.reveal(id, () => done()))", device_id
    )
    box = await page.locator(f"#map .device-marker[title*='({device_id})']").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x - half_px, y - half_px)
    await page.mouse.down()
    await page.mouse.move(x + half_px, y + half_px, steps=4)
    await page.mouse.up()
    await _until(page, "!document.getElementById('clear-area').hidden")


async def test_an_area_chosen_on_the_map_filters_the_tables(live: Live, tab: Tab) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "#/map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    assert await page.locator("#area-devices tbody tr").count() == FLEET_SIZE
    # Draw an area around one device's marker: a box of 30 px each way. (The marker is found
    # once drawing started: the hint it shows may move the map down a line.)
    device_id = live.device_of("noise").device_id
    await _draw_area_around(page, device_id, 30)
    inside = await page.evaluate(
        """() => [...document.querySelectorAll('#area-devices tbody tr')]
            .map((r) => r.dataset.deviceId)"""
    )
    assert device_id in inside
    assert 1 <= len(inside) < FLEET_SIZE
    # The overview's table shows the same devices, until the area is cleared.
    await page.click("[data-nav=overview]")
    await _until(page, "document.body.dataset.view === 'overview'")
    await _until(
        page,
        f"document.querySelectorAll('#latest tbody tr').length === {len(inside)}",
    )
    assert set(await _row_times(page)) == set(inside)
    await page.click("[data-nav=map]")
    await page.click("#clear-area")
    await _until(
        page, f"document.querySelectorAll('#area-devices tbody tr').length === {FLEET_SIZE}"
    )
    assert tab.errors == []


async def test_the_overview_pages_the_devices_of_the_area_from_the_server(
    live: Live, tab: Tab
) -> None:
    # A page of one device: an area that leaves out the fleet's first device still fills it,
    # with a device inside (the browser once filtered the page it had, which showed nothing).
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "&rows=1#/map")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    first = min(d.device_id for d in live.fleet.devices)
    device_id = max(
        d.device_id
        for d in live.fleet.devices
        if d not in (live.offline, live.silent) and d.device_id != first
    )
    await _draw_area_around(page, device_id, 10)
    inside = await page.evaluate(
        """() => [...document.querySelectorAll('#area-devices tbody tr')]
            .map((r) => r.dataset.deviceId)"""
    )
    assert device_id in inside
    assert first not in inside, "the area must leave the first device out"
    await page.click("[data-nav=overview]")
    await _until(page, "document.querySelectorAll('#latest tbody tr').length === 1")
    [shown] = await _row_times(page)
    assert shown == min(inside)
    note = await page.locator("#latest-note").text_content()
    assert note is not None
    assert "match the filters" not in note
    assert "in the area" in note
    assert tab.errors == []


async def _chart_points(page: Page) -> dict[str, int]:
    found: dict[str, int] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#device-charts figure')]
            .map((f) => [f.dataset.metric, Number(f.querySelector('.chart').dataset.points)]))"""
    )
    return found


async def test_device_page_draws_charts_with_guidelines(live: Live, tab: Tab) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    device = live.device_of("air_quality")
    await page.goto(live.base_url + LIVE + f"#/device/{device.device_id}")
    await _until(
        page,
        """() => {
            const charts = [...document.querySelectorAll('#device-charts .chart')];
            return charts.length === 5 && charts.every((c) => c.dataset.points > 2);
        }""",
    )
    assert await page.inner_text("#device-name") == device.name
    pm25 = page.locator("#device-values [data-metric=pm25]")
    assert "µg/m³" in await pm25.inner_text()
    assert "WHO 2021 24-h guideline 15 µg/m³" in await pm25.inner_text()
    assert "°C" in await page.inner_text("#device-values [data-metric=temperature]")
    first = await _chart_points(page)
    # The chart's text alternative: a table of the same readings, opened on request.
    await page.click("#device-charts [data-metric=pm25] summary")
    # The table is filled on the `toggle` event, which the browser fires in a task of its own.
    await _until(page, "document.querySelector('#device-charts [data-metric=pm25] thead')")
    rows, points, head = await page.evaluate(
        """() => {
            const chart = document.querySelector('#device-charts [data-metric=pm25] .chart');
            return [chart.querySelectorAll('tbody tr').length, Number(chart.dataset.points),
                    chart.querySelector('thead').textContent];
        }"""
    )
    assert rows == min(points, 2000)
    assert "µg/m³" in head
    # Live: the hour's charts gain the readings that keep arriving.
    await _until(
        page,
        """(before) => Number(document.querySelector('#device-charts [data-metric=pm25] .chart')
            .dataset.points) > before""",
        arg=first["pm25"],
        wait_ms=15_000,
    )
    await page.screenshot(path=tab.screenshot_path("device-air-quality"), full_page=True)

    for span in ("day", "week"):
        await page.click(f"[data-range={span}]")
        await _until(
            page,
            f"document.querySelector('[data-range={span}]').getAttribute('aria-pressed') === "
            "'true' && document.getElementById('device-source').textContent.includes('charts')",
        )
        points = await _chart_points(page)
        assert all(n >= 1 for n in points.values()), (span, points)

    lamp = live.device_of("lamppost")
    await page.goto(live.base_url + LIVE + f"#/device/{lamp.device_id}")
    await page.click("[data-range=day]")
    await _until(
        page,
        "document.querySelectorAll('#device-charts .chart').length === 6 && "
        "document.getElementById('device-summary').textContent.includes('lamp failure')",
    )
    points = await _chart_points(page)
    assert {"dim_level", "active_power", "active_energy", "operating_hours", "lamp_failure"} <= set(
        points
    )
    assert all(n > 0 for n in points.values()), points
    assert "kWh" in await page.inner_text("#device-values [data-metric=active_energy]")
    summary = await page.inner_text("#device-summary")
    assert "Energy +" in summary
    assert "Burning hours +" in summary
    await page.screenshot(path=tab.screenshot_path("device-lamppost"), full_page=True)
    assert tab.errors == []


async def test_rejections_view_lists_what_the_api_offers(live: Live, tab: Tab) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "#/rejections")
    await _until(page, "document.body.dataset.view === 'rejections'")
    capabilities = await page.get_attribute("body", "data-capabilities") or ""
    if "rejections" in capabilities:
        await _until(page, "document.querySelectorAll('#rejections tbody tr').length >= 3")
        reasons = {_code(r) for r in await _texts(page, "#rejections tbody td:nth-child(2)")}
        assert {"bad_json", "unknown_metric", "out_of_range"} <= reasons
    else:
        # Degrades: says what is missing, asks for nothing it cannot get.
        await _until(
            page,
            "document.getElementById('rejections-note').textContent.includes('no /v1/rejections')",
        )
        assert await page.locator("#rejections").is_hidden()
    assert tab.errors == []


REJECTIONS: list[dict[str, str | None]] = [
    {
        "ts": "2026-11-28T12:00:01Z",
        "reason": "out_of_range",
        "tenant": "GM0363",
        "deviceId": "gm0363-aq-00001",
        "topic": "lantaarn/v1/GM0363/gm0363-aq-00001/telemetry",
        "metric": "pm25",
        "detail": "pm25 = -3 is below 0",
        "excerpt": '{"metrics": {"pm25": -3}}',
    },
    {
        "ts": "2026-11-28T12:00:00Z",
        "reason": "bad_json",
        "tenant": "GM0344",
        "deviceId": "gm0344-lp-00002",
        "topic": "lantaarn/v1/GM0344/gm0344-lp-00002/telemetry",
        "metric": None,
        "detail": "expected value at line 1 column 1",
        "excerpt": "{not json",
    },
]


async def test_rejections_table_renders_and_filters_the_planned_shape(live: Live, tab: Tab) -> None:
    """The view against the shape the lead specified, served by the test, with its filters."""
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    asked: list[str] = []

    async def openapi(route: Route) -> None:
        response = await route.fetch()
        spec: dict[str, Any] = await response.json()
        spec["paths"]["/v1/rejections"] = {"get": {}}
        await route.fulfill(response=response, json=spec)

    async def rejections(route: Route, request: Request) -> None:
        asked.append(request.url)
        reason = parse_qs(urlsplit(request.url).query).get("reason", [""])[0]
        items = [r for r in REJECTIONS if not reason or r["reason"] == reason]
        await route.fulfill(
            content_type="application/json", body=json.dumps({"items": items, "next": None})
        )

    await page.route("**/v1/openapi.json", openapi)
    await page.route("**/v1/rejections?**", rejections)
    await page.goto(live.base_url + LIVE + "#/rejections")
    await _until(page, "document.querySelectorAll('#rejections tbody tr').length === 2")
    assert "{not json" in await page.inner_text("#rejections")
    await page.select_option("#rejection-filters select[name=reason]", "out_of_range")
    await page.fill("#rejection-filters input[name=deviceId]", "gm0363-aq-00001")
    await page.click("#rejection-filters button[type=submit]")
    await _until(page, "document.querySelectorAll('#rejections tbody tr').length === 1")
    assert "reason=out_of_range" in asked[-1]
    assert "deviceId=gm0363-aq-00001" in asked[-1]
    assert "pm25 = -3" in await page.inner_text("#rejections tbody")
    await page.screenshot(path=tab.screenshot_path("rejections"), full_page=True)
    assert tab.errors == []


SESSION_COOKIE = "lantaarn_session"


async def _session_cookies(tab: Tab) -> list[dict[str, Any]]:
    return [dict(c) for c in await tab.page.context.cookies() if c["name"] == SESSION_COOKIE]


async def test_signing_in_keeps_the_key_from_scripts_and_limits_the_view(
    live: Live, tab: Tab
) -> None:
    page = tab.page
    sent: list[str | None] = []  # the Authorization header of every request for data
    page.on(
        "request",
        lambda request: (
            sent.append(request.headers.get("authorization"))
            if "/v1/latest" in request.url or "/v1/devices/" in request.url
            else None
        ),
    )
    await page.goto(live.base_url + LIVE)
    # This platform lets anyone read: every device, and nobody signed in.
    await _until(page, f"document.getElementById('n-devices').textContent === '{FLEET_SIZE}'")
    await page.click("#open-settings")
    await _until(page, "document.getElementById('session').textContent === 'Not signed in.'")
    # A wrong key is refused: the page says so and keeps its settings open.
    await page.fill("#api-key", "ltn_0000000000000000_not-a-key")
    await page.click("#save-settings")
    await _until(page, "document.getElementById('banner').textContent.includes('refused')")
    await page.wait_for_selector("#settings[open]")
    # The page goes on refreshing every second; the message stays until the settings close.
    await asyncio.sleep(2.5)
    assert "refused" in await page.inner_text("#banner")
    await page.fill("#api-key", live.tenant_key)
    await page.click("#save-settings")
    tenant = live.fleet.tenants[0].code
    mine = [d for d in live.fleet.devices if d.tenant == tenant]
    await _until(page, f"document.getElementById('n-devices').textContent === '{len(mine)}'")
    await _until(page, "document.getElementById('banner').hidden")

    # The key is nowhere a script can read it: not in cookies, storage or the form.
    assert await page.evaluate("() => document.cookie") == ""
    storage = await page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    assert live.tenant_key not in storage
    assert "apiKey" not in storage
    assert await page.input_value("#api-key") == ""
    # The browser holds a session cookie that is HttpOnly and SameSite=Strict, not the key.
    (cookie,) = await _session_cookies(tab)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert live.tenant_key not in cookie["value"]
    # Data requests carry the cookie only, never a key.
    assert sent
    assert all(header is None for header in sent), sent

    tenants = await page.evaluate(
        "() => [...document.querySelectorAll('#tenant option')].map((o) => o.value)"
    )
    assert tenants == ["", tenant]
    assert {r.split("\t")[1] for r in await _texts(page, "#latest tbody tr")} == {tenant}
    # The other pages work with the session too.
    device = next(d for d in mine if d not in (live.offline, live.silent))
    await page.goto(f"{live.base_url}{LIVE}#/device/{device.device_id}")
    await _until(
        page,
        "document.body.dataset.view === 'device' && "
        f"document.getElementById('device-name').textContent.includes('{device.name}')",
    )
    await page.click("#open-settings")
    await _until(page, "document.getElementById('session').textContent.startsWith('Signed in')")
    assert tenant in await page.inner_text("#session")

    # Signing out ends the session: the cookie is gone, the page reads as anyone again.
    # Signing out is asynchronous: leaving the page before its answer could cancel it.
    async with page.expect_response(
        lambda r: r.url.endswith("/v1/sessions/current") and r.request.method == "DELETE"
    ) as signed_out:
        await page.click("#sign-out")
    assert (await signed_out.value).status == 204
    await page.goto(live.base_url + LIVE)
    await _until(page, f"document.getElementById('n-devices').textContent === '{FLEET_SIZE}'")
    assert await _session_cookies(tab) == []
    # The refusals of the wrong key (and of "who am I" before signing in) are the only errors.
    assert tab.errors
    assert all("401" in e for e in tab.errors), tab.errors


async def test_an_answer_asked_for_before_signing_in_is_not_shown_after(
    live: Live, tab: Tab
) -> None:
    """A poll still on its way when the operator signs in must not list what the key cannot see.

    The anonymous poll is held until the sign-in has forgotten the tenants, then answered with
    the whole fleet: the page must drop that answer and ask again with its session.
    """
    page = tab.page
    everyone = (await live.platform.http.get("/v1/latest")).text
    held: list[Route] = []
    one_held = asyncio.Event()
    holding = True

    async def hold_latest(route: Route) -> None:
        if holding:
            held.append(route)
            one_held.set()
        else:
            await route.continue_()

    await page.goto(live.base_url + LIVE)
    await _until(page, f"document.getElementById('n-devices').textContent === '{FLEET_SIZE}'")
    await page.route("**/v1/latest*", hold_latest)
    # The table asked for again (as the kind filter does; with the event stream open its own
    # re-asking comes only every 30 s).
    await page.evaluate("document.getElementById('kind-filter').dispatchEvent(new Event('input'))")
    async with asyncio.timeout(10):
        await one_held.wait()  # a poll as anyone is on its way
    holding = False
    await page.click("#open-settings")
    await page.fill("#api-key", live.tenant_key)
    await page.click("#save-settings")
    # Signed in: the tenants of the anonymous view are forgotten.
    await _until(page, "document.querySelectorAll('#tenant option').length === 1")
    for route in held:
        await route.fulfill(content_type="application/json", body=everyone)
    tenant = live.fleet.tenants[0].code
    mine = [d for d in live.fleet.devices if d.tenant == tenant]
    await _until(page, f"document.getElementById('n-devices').textContent === '{len(mine)}'")
    tenants = await page.evaluate(
        "() => [...document.querySelectorAll('#tenant option')].map((o) => o.value)"
    )
    assert tenants == ["", tenant]
    # The table's rows (cells read as text: a table drawn again while it is read, or not laid
    # out, gives no tab-separated inner text), once it has any: the key's tenant's only.
    await _until(page, "document.querySelectorAll('#latest tbody tr').length > 0")
    shown_tenants = await page.evaluate(
        "() => [...document.querySelectorAll('#latest tbody tr')]"
        ".map((r) => r.cells[1].textContent)"
    )
    assert set(shown_tenants) == {tenant}
    # Only "who am I" before signing in was refused.
    assert all("401" in e for e in tab.errors), tab.errors


async def test_a_key_an_older_version_stored_is_used_once_and_forgotten(
    live: Live, tab: Tab
) -> None:
    page = tab.page
    await page.goto(live.base_url + LIVE)
    await page.evaluate(f"() => localStorage.setItem('lantaarn.apiKey', {live.tenant_key!r})")
    await page.reload()
    tenant = live.fleet.tenants[0].code
    mine = [d for d in live.fleet.devices if d.tenant == tenant]
    await _until(page, f"document.getElementById('n-devices').textContent === '{len(mine)}'")
    assert await page.evaluate("() => localStorage.getItem('lantaarn.apiKey')") is None
    assert len(await _session_cookies(tab)) == 1
    assert tab.errors == []


async def test_the_overview_never_asks_for_the_whole_fleet(live: Live, tab: Tab) -> None:
    """Counts from /v1/summary, the table a page at a time, changes by /v1/events; the map's
    points polled with If-None-Match (304 while nothing moved)."""
    page = tab.page
    asked: list[Request] = []

    def note_request(request: Request) -> None:
        asked.append(request)

    page.on("request", note_request)
    await tab.sign_in(live.key, live.base_url)
    await page.goto(live.base_url + LIVE + "&rows=15")
    await _until(page, f"document.getElementById('n-devices').textContent === '{FLEET_SIZE}'")
    await _until(page, "document.querySelectorAll('#latest tbody tr').length === 15")
    await _until(page, "document.querySelectorAll('#worst-silence tbody tr a').length >= 1")
    # Never heard of comes first (a device of the fleet, reporting every second, may be late too).
    worst = await page.evaluate(
        "() => [...document.querySelectorAll('#worst-silence tbody tr td:first-child')]"
        ".map((c) => c.textContent)"
    )
    assert worst[0] == live.silent.device_id
    await asyncio.sleep(3)  # a few summaries pushed
    paths = [urlsplit(r.url) for r in asked]
    latest = [parse_qs(p.query) for p in paths if p.path == "/v1/latest"]
    assert latest, "the table asked for no page"
    assert all(q.get("limit") == ["15"] for q in latest)
    assert any(p.path == "/v1/events" for p in paths)
    assert not any(p.path == "/v1/map/points" for p in paths)
    # The per-minute chart's table: the same numbers as text.
    await page.click("#activity-chart details summary")
    # (Read together: a pushed summary redraws both.)
    await _until(page, "document.querySelectorAll('#activity-chart details tbody tr').length > 0")
    minutes, charted = await page.evaluate(
        """() => [[...document.querySelectorAll('#activity-chart details tbody tr')]
                .map((r) => [...r.cells].map((c) => c.textContent)),
            Number(document.getElementById('activity-chart').dataset.readings)]"""
    )
    assert minutes
    assert sum(int(r[1].replace(",", "")) for r in minutes) == charted

    # Pages by keyboard: Next, then Previous; the note names the rows shown.
    await page.focus("#next-page")
    await page.keyboard.press("Enter")
    await _until(page, "document.getElementById('latest-note').textContent.includes('16–30')")
    second = set(await _row_times(page))
    assert len(second) == 15
    assert await page.evaluate("() => document.activeElement.id") == "latest-note"
    await page.focus("#next-page")
    await page.keyboard.press("Enter")
    await _until(page, "document.getElementById('latest-note').textContent.includes('31–40')")
    assert await page.is_disabled("#next-page")
    await page.focus("#previous-page")
    await page.keyboard.press("Enter")
    await _until(page, "document.getElementById('latest-note').textContent.includes('16–30')")
    assert set(await _row_times(page)) == second
    everyone = sorted(d.device_id for d in live.fleet.devices)
    assert sorted(second) == everyone[15:30]
    # The event stream names the devices of the page shown (their changes only are sent), and
    # one opened for another page carries on after the last event the one before it sent.
    deadline = time.monotonic() + 10
    while True:
        streams = [parse_qs(p.query) for p in map(urlsplit, (r.url for r in asked))
                   if p.path == "/v1/events"]  # fmt: skip
        if streams[-1].get("devices", [""])[0].split(",") == sorted(second):
            break
        assert time.monotonic() < deadline, streams[-1]
        await asyncio.sleep(0.2)
    assert len(streams) >= 3  # the first page's, then one for each page turned to
    assert streams[-1].get("after"), "a stream opened for another page starts afresh"
    # A stream that fell behind says `resync`: the page shown is read again.
    pages_read = sum(1 for r in asked if urlsplit(r.url).path == "/v1/latest")
    await page.evaluate(
        "() => window.lantaarn.state.events.dispatchEvent(new MessageEvent('resync', {data: '{}'}))"
    )
    deadline = time.monotonic() + 10
    while sum(1 for r in asked if urlsplit(r.url).path == "/v1/latest") == pages_read:
        assert time.monotonic() < deadline, "the page was not read again after a resync"
        await asyncio.sleep(0.2)

    # The map: its points once, then If-None-Match on every poll.
    answers: list[tuple[int, str | None]] = []

    async def note(response: Any) -> None:
        if urlsplit(response.url).path == "/v1/map/points":
            answers.append((response.status, await response.request.header_value("if-none-match")))

    page.on("response", note)
    await page.click("[data-nav=map]")
    await _until(page, f"document.getElementById('map').dataset.drawn === '{FLEET_SIZE}'")
    await asyncio.sleep(4)
    assert answers[0] == (200, None)
    assert len(answers) >= 2
    assert all(tag is not None for _, tag in answers[1:])
    assert tab.errors == []
