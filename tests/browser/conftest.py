"""A live platform with a publishing fleet, and a headless Chromium, shared by the browser tests."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from api.keys import KeyStore, Role
from api.lowest_completeness import figure_hour
from devices import DEVICE_KINDS, Device, topic
from lantaarn.localstack import Influx, Mosquitto, private_mosquitto
from simulators import BrokerAddress, Fleet, Publisher, make_fleet, telemetry_payload
from tests.conftest import require_program
from tests.dashboards.live_fleet import LiveFleet, publish_troubles
from tests.platform import Platform, running_platform
from timeseries import InfluxClient
from timeseries.completeness import DeviceShortfall, lowest_lines
from timeseries.schema import rollup_policy

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLEET_SIZE = 40
HISTORY_MINUTES = 60


@dataclass
class Live:
    """The running platform, its fleet, and the devices kept offline and silent on purpose."""

    platform: Platform
    fleet: Fleet
    base_url: str
    offline: Device
    silent: Device
    key: str  # a viewer key for every tenant
    tenant_key: str  # a viewer key for the first tenant only
    # Readings lost over the hour the summary shows (`lost_hour`, ns): device id -> (received,
    # expected), written as the completeness job's rows before the API first read that hour.
    lost: dict[str, tuple[int, int]] = field(default_factory=dict)
    lost_hour: tuple[int, int] = (0, 0)

    def device_of(self, kind: str) -> Device:
        """A publishing device of a kind."""
        return next(
            d for d in self.fleet.devices if d.kind == kind and d not in (self.offline, self.silent)
        )


@dataclass
class Tab:
    """A page and what its console said; `errors` must stay empty unless a test expects some."""

    page: Page
    errors: list[str] = field(default_factory=list)

    async def sign_in(self, key: str, base_url: str) -> None:
        """Open a session with `key` as the operator had done before: the context holds its cookie.

        The browser context's request client shares the context's cookies, so the page finds
        the session cookie, and only that, as after signing in through the settings.
        """
        answer = await self.page.context.request.post(
            f"{base_url}/v1/sessions", headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status == 201, await answer.text()

    def screenshot_path(self, name: str) -> Path:
        """Where a screenshot of this test goes (test-artifacts/ is ignored by git)."""
        ARTIFACTS.mkdir(exist_ok=True)
        return ARTIFACTS / f"dashboard-{name}.png"


@pytest.fixture(scope="session", autouse=True)
def chromium() -> str:
    """Debian's Chromium (or the one on PATH), checked before any platform is started.

    Missing, the browser tests are skipped, and fail under CI=true.
    """
    require_program("chromium", "chromium")
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """The platform and the browser are shared by every browser test: one backend for all."""
    return "asyncio"


@pytest.fixture(scope="package")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """The browser tests' own broker. Their live fleet publishes every second while they run,
    and every platform on a broker hears all telemetry (each has its own share group): on the
    shared broker, later tests counted this fleet's messages as their own."""
    require_program("mosquitto", "mosquitto")
    broker = private_mosquitto(tmp_path_factory.mktemp("browser-mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture(scope="package")  # shared by the browser tests, stopped after the last one
async def live(
    mosquitto: Mosquitto, influx: Influx, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Live]:
    """A platform whose fleet publishes every second; one device offline, one never heard."""
    fleet = make_fleet(FLEET_SIZE, tenants=2, seed=11, interval_s=1.0)
    offline, silent = fleet.devices[-1], fleet.devices[-2]
    folder = tmp_path_factory.mktemp("browser")
    async with running_platform(mosquitto, influx, folder, fleet=fleet) as platform:
        publishing = Fleet(fleet.tenants, fleet.devices[:-2])

        def last_words() -> None:
            address = BrokerAddress("::1", mosquitto.port)
            with Publisher(address, f"sim-once-{platform.group}") as publisher:
                now_ms = int(time.time() * 1000)
                # One reading, then its last will: the API must call it offline, not silent.
                publisher.publish(
                    topic(offline.tenant, offline.device_id),
                    telemetry_payload(now_ms - 500, 0, _valid_metrics(offline)),
                )
                assert publisher.flush(10)
                publish_troubles(
                    publisher, Fleet(fleet.tenants, (fleet.devices[0], offline)), now_ms
                )
                assert publisher.flush(10)

        await asyncio.to_thread(last_words)
        lost_hour, lost = await _lose_readings(platform, fleet, (offline, silent))
        with KeyStore(platform.registry.url) as keys:
            key = keys.create(Role.VIEWER, None, "browser tests")[1]
            tenant_key = keys.create(Role.VIEWER, [fleet.tenants[0].code], "one tenant")[1]
        auth = {"Authorization": f"Bearer {key}"}
        with LiveFleet(
            publishing,
            mosquitto.port,
            f"sim-{platform.group}",
            history_minutes=HISTORY_MINUTES,
        ):
            async with asyncio.timeout(30):
                while True:
                    latest = (await platform.http.get("/v1/latest", headers=auth)).json()
                    fresh = [d for d in latest if d["ts"]]
                    if len(fresh) == FLEET_SIZE - 1 and any(
                        d["status"] == "offline" for d in latest
                    ):
                        break
                    await asyncio.sleep(0.2)
            base_url = f"http://127.0.0.1:{platform.api_port}"
            yield Live(platform, fleet, base_url, offline, silent, key, tenant_key, lost, lost_hour)


async def _lose_readings(
    platform: Platform, fleet: Fleet, quiet: tuple[Device, ...]
) -> tuple[tuple[int, int], dict[str, tuple[int, int]]]:
    """The rows the completeness job writes for an hour's lowest devices, for the hour the
    summary shows now: two devices of the first tenant lost a sixth and a half of theirs."""
    start, end = figure_hour(time.time_ns())
    ours = [d for d in fleet.devices if d.tenant == fleet.tenants[0].code and d not in quiet]
    lost = {ours[0].device_id: (50, 60), ours[1].device_id: (30, 60)}
    found = [DeviceShortfall(d.tenant, d.kind, d.device_id, *lost[d.device_id]) for d in ours[:2]]
    async with InfluxClient(platform.influx) as client:
        await client.write(
            "\n".join(lowest_lines(start, found, 10)).encode(),
            retention_policy=rollup_policy("1h"),
        )
    return (start, end), lost


def _valid_metrics(device: Device) -> dict[str, float]:
    """A reading inside every metric's range."""
    return {m.name: max(m.minimum, 0.0) for m in DEVICE_KINDS[device.kind].metrics}


@pytest.fixture(scope="package")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """Chromium, headless, one for every browser test of the session."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Tab]:
    """A fresh browser context (empty localStorage) and a page that records console errors."""
    context: BrowserContext = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    opened = Tab(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: opened.errors.append(f"uncaught: {error}"))
    yield opened
    await context.close()


AXE = "/dashboard/vendor/axe.min.js"
# The success criteria the law asks for (WCAG 2.1 A and AA; 2.0's are part of 2.1).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


async def axe_violations(page: Page) -> list[dict[str, object]]:
    """Run the vendored axe-core on the page as it is now; each violation with its nodes.

    The script comes from the dashboard's own origin (scripts/vendor-js.sh copies it), so the
    page's Content Security Policy lets it run and the test needs no network.
    """
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(url=AXE)
    found: list[dict[str, object]] = await page.evaluate(
        """(tags) => axe.run(document, { runOnly: { type: "tag", values: tags } }).then(
            (result) => result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
            })))""",
        AXE_TAGS,
    )
    return found
