"""How long until the dashboard's overview and its map are drawn, at city scale.

For each fleet size: a SQLite registry holding the devices of 15 tenants and each device's state,
written directly as the workers' flushes would (bench.latest_scale.fill: 94 % online, 5 % silent,
1 % offline, on a grid of about 10 x 15 km), and the API in a child process of its own serving
the dashboard (anonymous reading on; InfluxDB is not needed: the overview and the map read the
device-state store). Then headless Chromium opens `/dashboard` once to warm up and `--runs` times
to measure:
- the overview: the page's own mark `lantaarn:overview-drawn` (set once the summary's tiles and
  tables and the first page of the device table are in the document), in ms since navigation
  start, with the share of `GET /v1/summary` and of the table's first `GET /v1/latest` page;
- where the overview's time goes before the API is asked anything: when the first `/v1/` request
  left, and how many of the page's own files (modules, scripts, style sheets, the catalogue)
  were asked for before it;
- the map: from switching to it until every device is counted in view (`data-drawn`), which
  includes `GET /v1/map/points` and building the supercluster index; the longest task the
  page's main thread ran meanwhile (what an operator feels as a frozen page); and one zoom step.

`--trees A,B` serves the dashboard of each checkout in turn (each its own API process, on the
same registry) and alternates the runs between them, so that a before/after comparison on a
loaded machine shares the load: e.g. `--trees /work/main,.`. Each run is a fresh browser
context (a first visit: nothing cached).

    .venv/bin/python -m bench.dashboard_overview [--sizes 10000,50000,150000] [--runs 3]
        [--trees PATH,PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as host
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, async_playwright
from playwright.async_api import Error as PlaywrightError

from bench.latest_scale import api_process, fill, fleet
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts"

_FIGURES = """() => {
    const drawn = performance.getEntriesByName('lantaarn:overview-drawn')[0].startTime;
    const first = (part) => performance.getEntriesByType('resource')
        .filter((e) => e.name.includes(part))[0];
    const summary = first('/v1/summary');
    const page = first('/v1/latest');
    const all = performance.getEntriesByType('resource');
    const files = all.filter((e) => e.name.includes('/dashboard/'));
    const api = all.filter((e) => e.name.includes('/v1/'));
    const firstApi = Math.min(...api.map((e) => e.startTime));
    return {drawn, firstApiMs: firstApi,
            filesBefore: files.filter((e) => e.startTime < firstApi).length,
            summaryMs: summary ? summary.duration : NaN,
            pageMs: page ? page.duration : NaN,
            summaryBytes: summary ? summary.encodedBodySize : NaN};
}"""


async def _one_run(browser: Browser, url: str, devices: int, shots: Path | None) -> dict[str, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    # In English, so that the count reads 150,000 (Dutch, the default, writes 150.000).
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
    if shown.replace(",", "") != str(devices):
        raise RuntimeError(f"the overview counted {shown} devices, not {devices}")
    figures: dict[str, Any] = await page.evaluate(_FIGURES)
    if shots is not None:
        await page.screenshot(path=shots / f"bench-overview-{devices}.png")
    # The main thread's long tasks (over 50 ms) from the switch until the map is drawn.
    await page.evaluate(
        """() => { window.benchLongest = 0;
            new PerformanceObserver((list) => { for (const e of list.getEntries())
                window.benchLongest = Math.max(window.benchLongest, e.duration); })
            .observe({ type: 'longtask' }); }"""
    )
    started = await page.evaluate("performance.now()")
    await page.evaluate("location.hash = '#/map'")
    await page.wait_for_function(
        f"() => document.getElementById('map').dataset.drawn === '{devices}'", timeout=120_000
    )
    figures["mapMs"] = await page.evaluate("performance.now()") - started
    # Long tasks are reported a little after they end.
    await page.wait_for_timeout(200)
    figures["longestTaskMs"] = await page.evaluate("window.benchLongest")
    figures["pointsBytes"] = await page.evaluate(
        """() => performance.getEntriesByType('resource')
            .filter((e) => e.name.includes('/v1/map/points'))[0].encodedBodySize"""
    )
    figures["markers"] = await page.locator("#map .leaflet-marker-icon").count()
    # One zoom step in (what panning and zooming cost once the index is built): until the
    # markers of the new view are drawn. A page that counts its drawings (`data-draws`: its
    # index answers asynchronously) is waited for until the count grows; one without draws in
    # its `moveend` handler.
    figures["zoomMs"] = await page.evaluate(
        """() => new Promise((done) => {
            const map = window.lantaarn.map.map;
            const holder = document.getElementById('map');
            const before = holder.dataset.draws;
            const started = performance.now();
            const end = () => done(performance.now() - started);
            const settled = () => {
                const drew = before === undefined || holder.dataset.draws !== before;
                if (drew) requestAnimationFrame(end); else setTimeout(settled, 1);
            };
            map.once('moveend', settled);
            map.setZoom(map.getZoom() + 1, { animate: false });
        })"""
    )
    if shots is not None:
        await page.screenshot(path=shots / f"bench-map-{devices}.png")
    figures["errors"] = len(errors)
    await context.close()
    return figures


def _median(results: list[dict[str, Any]], name: str) -> str:
    values = [r[name] for r in results]
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


async def measure(size: int, runs: int, trees: list[str | None]) -> list[list[dict[str, Any]]]:
    """Fill a registry of `size` devices, serve it from each tree and measure `runs` page loads
    of each, alternating between the trees; one list of results per tree."""
    with tempfile.TemporaryDirectory() as folder, ExitStack() as apis:
        url = f"sqlite:///{Path(folder) / 'registry.sqlite3'}"
        fill(url, fleet(size), time.time_ns())
        bases = [apis.enter_context(api_process(url, tree))[0] for tree in trees]
        results: list[list[dict[str, Any]]] = [[] for _ in trees]
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            SHOTS.mkdir(exist_ok=True)
            for n, base in enumerate(bases):  # warm-up; leaves screenshots
                await _one_run(browser, base, size, SHOTS if n == len(bases) - 1 else None)
            for _ in range(runs):
                for n, base in enumerate(bases):
                    results[n].append(await _one_run(browser, base, size, None))
            await browser.close()
    return results


def main() -> None:
    """Measure every size and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,150000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trees", default="", help="checkouts to alternate, e.g. /work/main,.")
    args = parser.parse_args()
    trees: list[str | None] = [str(Path(t).resolve()) for t in args.trees.split(",") if t] or [None]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# dashboard_overview on {host.node()}, {host.machine()}, {os.cpu_count()} CPUs, "
          f"Python {host.python_version()}, load {load}")  # fmt: skip
    print(f"command: {' '.join(sys.argv)}\n")
    print("Medians (min–max) of the runs after one warm-up, in ms.\n")
    print("| devices | tree | overview drawn | first /v1/ request sent | own files before it | "
          "of which /v1/summary | first table page (/v1/latest, 100) | map: every device "
          "counted in view | longest main-thread task meanwhile | /v1/map/points (gzip) | "
          "markers on the map | one zoom step | console errors |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in [int(s) for s in args.sizes.split(",")]:
        for tree, results in zip(trees, asyncio.run(measure(size, args.runs, trees)), strict=True):
            print(
                f"| {size:,} | {tree or 'this tree'} | {_median(results, 'drawn')} | "
                f"{_median(results, 'firstApiMs')} | {_median(results, 'filesBefore')} | "
                f"{_median(results, 'summaryMs')} | "
                f"{_median(results, 'pageMs')} | {_median(results, 'mapMs')} | "
                f"{_median(results, 'longestTaskMs')} | "
                f"{results[0]['pointsBytes'] / 1e6:.2f} MB | {results[0]['markers']} | "
                f"{_median(results, 'zoomMs')} | {sum(r['errors'] for r in results)} |",
                flush=True,
            )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average after: {load}")


if __name__ == "__main__":
    main()
