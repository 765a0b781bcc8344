"""How long until the dashboard's overview is drawn, with a fleet of 10,000 devices.

Starts a private Mosquitto and InfluxDB, the ingest worker and the API (as the tests do),
registers the fleet, sends every device's readings through the broker and the worker, then
opens /dashboard in headless Chromium several times and reads the page's own mark
`lantaarn:overview-drawn` (milliseconds since navigation start). Also reports how long the
`/v1/latest` answer took inside that (from the browser's resource timing) and the map's draw.

    .venv/bin/python -m bench.dashboard_overview [--devices 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform as host
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, async_playwright
from playwright.async_api import Error as PlaywrightError

from api.keys import KeyStore, Role
from lantaarn.localstack import Influx, Mosquitto, free_port
from simulators import make_fleet
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.dashboards.live_fleet import LiveFleet
from tests.platform import Platform, running_platform

# Whole-fleet readings per device before measuring (a reading a minute for this many minutes).
HISTORY_MINUTES = 2
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts"


async def _wait_stored(platform: Platform, key: str, devices: int) -> float:
    """Seconds until /v1/latest shows a reading for every device."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {key}"}
    async with asyncio.timeout(600):
        while True:
            latest = (await platform.http.get("/v1/latest", headers=headers)).json()
            if sum(1 for d in latest if d["ts"]) >= devices:
                return time.monotonic() - started
            await asyncio.sleep(1)


async def _one_run(
    browser: Browser, url: str, key: str, devices: int, shots: Path | None = None
) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(f"localStorage.setItem('lantaarn.apiKey', {key!r});")
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    # In English, so that the count reads 10,000 (Dutch, the default, writes 10.000).
    await page.goto(url + "/dashboard?lang=en")
    try:
        await page.wait_for_function(
            "() => performance.getEntriesByName('lantaarn:overview-drawn').length > 0",
            timeout=120_000,
        )
    except PlaywrightError as exc:
        banner = await page.inner_text("#banner")
        raise RuntimeError(f"no overview: {banner!r}, console errors: {errors}") from exc
    shown = await page.inner_text("#n-devices")
    figures: dict[str, Any] = await page.evaluate(
        """() => {
            const drawn = performance.getEntriesByName('lantaarn:overview-drawn')[0].startTime;
            const latest = performance.getEntriesByType('resource')
                .filter((e) => e.name.includes('/v1/latest'))[0];
            return {drawn, latestMs: latest ? latest.duration : NaN,
                    afterLatestMs: latest ? drawn - latest.responseEnd : NaN,
                    latestBytes: latest ? latest.encodedBodySize : NaN};
        }"""
    )
    if shots is not None:
        await page.screenshot(path=shots / f"bench-overview-{devices}.png")
    started = await page.evaluate("performance.now()")
    await page.evaluate("location.hash = '#/map'")
    try:
        await page.wait_for_function(
            f"() => document.getElementById('map').dataset.drawn === '{devices}'", timeout=60_000
        )
    except PlaywrightError as exc:
        drawn = await page.evaluate(
            "[document.getElementById('map').dataset.drawn, document.body.dataset.view,"
            " window.lantaarn.state.latest.length, document.getElementById('map').clientWidth,"
            " [...document.querySelectorAll('[data-view]')].map((x) => x.id + ':' + x.hidden),"
            " getComputedStyle(document.getElementById('view-map')).display,"
            " document.querySelector('header').getBoundingClientRect().height, scrollY]"
        )
        await page.screenshot(path="/tmp/bench-map.png")
        raise RuntimeError(f"the map drew {drawn}; console errors: {errors}") from exc
    figures["mapMs"] = await page.evaluate("performance.now()") - started
    if shots is not None:
        await page.screenshot(path=shots / f"bench-map-{devices}.png")
    await context.close()
    if shown.replace(",", "") != str(devices) or errors:
        raise RuntimeError(f"the page showed {shown} devices; console errors: {errors}")
    return figures


async def main(devices: int, runs: int) -> None:
    """Set up, measure, print a Markdown summary."""
    SHOTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        (folder / "mq").mkdir()
        (folder / "db").mkdir()
        broker = Mosquitto(folder / "mq", free_port())
        database = Influx(folder / "db", free_port(), free_port())
        broker.start()
        database.start()
        try:
            fleet = make_fleet(devices, tenants=4, seed=1, interval_s=60.0)
            started = time.monotonic()
            async with running_platform(broker, database, folder, fleet=fleet) as platform:
                setup_s = time.monotonic() - started
                with KeyStore(platform.registry.url) as keys:
                    key = keys.create(Role.VIEWER, None, "bench")[1]
                with LiveFleet(
                    fleet, broker.port, f"bench-{platform.group}", history_minutes=HISTORY_MINUTES
                ) as live:
                    live.stop.set()
                stored_s = await _wait_stored(platform, key, devices)
                url = f"http://127.0.0.1:{platform.api_port}"
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=CHROMIUM, args=CHROMIUM_ARGS
                    )
                    # The warm-up run (caches, JIT) also leaves screenshots to look at.
                    await _one_run(browser, url, key, devices, SHOTS)
                    results = [await _one_run(browser, url, key, devices) for _ in range(runs)]
                    await browser.close()
        finally:
            database.stop()
            broker.stop()

    def summary(name: str) -> str:
        values = [r[name] for r in results]
        return (
            f"median {statistics.median(values):.0f} ms "
            f"(min {min(values):.0f}, max {max(values):.0f})"
        )

    print(f"devices: {devices}, readings sent: {live.sent}, runs: {runs} (after one warm-up)")
    print(f"machine: {host.machine()}, {os.cpu_count()} CPUs, Python {host.python_version()}")
    print(f"setup (registry + services): {setup_s:.1f} s; readings stored after {stored_s:.1f} s")
    print(f"overview drawn after navigation start: {summary('drawn')}")
    print(f"  of which GET /v1/latest: {summary('latestMs')}")
    print(f"  from its last byte to drawn: {summary('afterLatestMs')}")
    print(f"  /v1/latest body: {results[0]['latestBytes'] / 1e6:.2f} MB")
    print(f"map with every device drawn, after switching to it: {summary('mapMs')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(options.devices, options.runs))
