"""Commanding lamps from the dashboard in headless Chromium: a lamppost's dim level, control
and history, and a group command whose states fill in as simulated lamps answer over MQTT."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Page

from api import ApiConfig
from api.keys import KeyStore, Role
from broker.command_service import CommandServiceConfig
from devices import Device, Registry, Tenant
from devices.schedule_store import LampGroup, ScheduleStore
from lantaarn.localstack import Influx, Mosquitto
from lantaarn.night_schedule import NIGHT_STEPS
from lantaarn.serve import bind_free, serve_api
from simulators.clock import SimClock
from simulators.command_responder import CommandResponder
from simulators.device import SimulatedDevice
from tests.browser.conftest import Tab, axe_violations
from tests.browser.test_dashboard import _until
from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.schema import raw_measurement

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

LAMPS = [
    Device(f"gm0363-lp-{n}", "GM0363", "lamppost", f"Lamp {n}", 52.37 + n / 1000, 4.89)
    for n in range(6)
]
OTHER = Device("gm0344-lp-1", "GM0344", "lamppost", "Utrecht lamp", 52.09, 5.12)
REFUSING = LAMPS[5].device_id


@dataclass
class Commanded:
    """The API with its command service, lamps that answer, and keys."""

    base_url: str
    operator: str
    viewer: str


@pytest.fixture(scope="module")
async def commanded(
    mosquitto: Mosquitto, influx: Influx, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Commanded]:
    """Lamps at 100 % (one reading each) that obey their commands; one refuses everything."""
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("commands-browser")
    url = f"sqlite:///{folder / 'registry.sqlite3'}"
    with Registry(url) as registry, KeyStore(url) as keys:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_tenant(Tenant("GM0344", "Utrecht"))
        registry.add_devices([*LAMPS, OTHER])
        operator = keys.create(Role.OPERATOR, ["GM0363"], "operator")[1]
        viewer = keys.create(Role.VIEWER, ["GM0363"], "viewer")[1]
    with ScheduleStore(url) as schedules:
        # The first lamp follows a schedule (no scheduler runs here: it sends nothing).
        schedules.create(
            "GM0363", "Night profile", NIGHT_STEPS, LampGroup(device_ids=(LAMPS[0].device_id,))
        )
    influx_config = InfluxConfig(influx.url, database=f"cmd_{tag}")
    now_ns = time.time_ns()
    async with InfluxClient(influx_config) as client:
        await ensure_schema(client, Retention())
        lines = [
            f"{raw_measurement('lamppost')},device_id={d.device_id},tenant={d.tenant} "
            f"dim_level=100,active_power=58.0 {now_ns}"
            for d in [*LAMPS, OTHER]
        ]
        await client.write("\n".join(lines).encode())
    commands = CommandServiceConfig(
        "::1",
        mosquitto.port,
        client_id=f"{tag}-commands",
        share_group=f"{tag}-commands",
        session_expiry_s=30,
    )
    simulated = [SimulatedDevice(d, 3, SimClock(time.time())) for d in [*LAMPS, OTHER]]
    sockets, port = bind_free(["127.0.0.1"])
    stop = asyncio.Event()
    async with CommandResponder(
        simulated, "::1", mosquitto.port, client_id=f"{tag}-lamps", refusing=[REFUSING]
    ):
        api = asyncio.create_task(
            serve_api(
                ApiConfig(url, influx_config, commands=commands),
                ["127.0.0.1"],
                port,
                stop,
                sockets=sockets,
            )
        )
        try:
            yield Commanded(f"http://127.0.0.1:{port}", operator, viewer)
        finally:
            stop.set()
            await api


async def test_a_lampposts_page_shows_its_dim_level_and_commands_it(
    commanded: Commanded, tab: Tab
) -> None:
    page = tab.page
    await tab.sign_in(commanded.operator, commanded.base_url)
    lamp = LAMPS[0].device_id
    await page.goto(f"{commanded.base_url}/dashboard?refresh=1&lang=en#/device/{lamp}")
    await _until(page, "document.getElementById('dim-now').textContent === '100 %'")
    assert await page.is_visible("#dim-form")
    await _until(page, "document.getElementById('lamp-schedule').textContent.includes('next')")
    shown = await page.inner_text("#lamp-schedule")
    assert shown.startswith("Schedule “Night profile”: ")
    assert "(Amsterdam time)" in shown
    # By keyboard: the level, then Enter.
    await page.focus("#dim-input")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("30")
    await page.keyboard.press("Enter")
    # The command appears in the history and its state fills in once the lamp answered.
    await _until(
        page,
        """() => [...document.querySelectorAll('#command-history tbody tr')].some(
            (row) => row.dataset.state === 'done')""",
        wait_ms=20_000,
    )
    (row,) = await page.locator("#command-history tbody tr").all_inner_texts()
    cells = row.split("\t")
    assert cells[1] == "set dim level (level 30)"
    assert cells[2] == "done"
    assert cells[3] == "dim level 30 %"
    assert cells[4].startswith("operator ")
    assert await axe_violations(page) == []
    assert tab.errors == []


async def test_a_viewer_is_told_it_may_not_command(commanded: Commanded, tab: Tab) -> None:
    page = tab.page
    await tab.sign_in(commanded.viewer, commanded.base_url)
    await page.goto(f"{commanded.base_url}/dashboard?lang=en#/device/{LAMPS[1].device_id}")
    await _until(page, "!document.getElementById('device-commands').hidden")
    await _until(page, "document.getElementById('lamp-schedule').textContent !== ''")
    assert await page.inner_text("#lamp-schedule") == "Follows no dimming schedule."
    await page.click("#dim-send")
    await _until(page, "document.getElementById('dim-note').textContent.includes('operator')")
    assert await page.locator("#command-history tbody tr").count() == 0
    assert [e for e in tab.errors if "403" not in e] == []


async def test_an_operator_commands_the_lamps_in_the_maps_view_and_watches_them_answer(
    commanded: Commanded, tab: Tab
) -> None:
    page = tab.page
    await tab.sign_in(commanded.operator, commanded.base_url)
    await page.goto(f"{commanded.base_url}/dashboard?refresh=1&lang=en#/map")
    await _until(page, "window.lantaarn && window.lantaarn.map.devices.length === 6")
    assert await page.is_visible("#group-form")
    await page.fill("#group-level", "55")
    await page.click("#group-send")
    await _until(
        page,
        "document.getElementById('group-progress').dataset.finished === 'true'",
        wait_ms=30_000,
    )
    counts = {
        text.split(" ")[0]: int(text.split(" ")[1])
        for text in await page.locator("#group-progress .count").all_inner_texts()
    }
    # The operator's key sees Amsterdam only: its six lamps, one of which refuses.
    assert counts == {"created": 0, "sent": 0, "done": 5, "refused": 1, "failed": 0, "expired": 0}
    assert "to 6 lamps" in await page.inner_text("#group-note")
    assert await page.get_attribute("#group-bar", "value") == "6"
    assert await axe_violations(page) == []
    assert tab.errors == []


async def test_turning_back_to_a_page_seen_before_shows_that_page(
    commanded: Commanded, tab: Tab
) -> None:
    """A page held in copy is answered 304 when asked again; it must still be drawn. (Here no
    lamp reports, so every page stays the same: the copy is always current.)"""
    page = tab.page
    await tab.sign_in(commanded.viewer, commanded.base_url)
    await page.goto(f"{commanded.base_url}/dashboard?refresh=1&lang=en&rows=2")
    note = "document.getElementById('latest-note').textContent"
    await _until(page, f"{note}.includes('1–2')")
    first = await page.locator("#latest tbody tr").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.deviceId)"
    )
    await page.click("#next-page")
    await _until(page, f"{note}.includes('3–4')")
    await page.click("#previous-page")
    await _until(page, f"{note}.includes('1–2')")
    again = await page.locator("#latest tbody tr").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.deviceId)"
    )
    assert again == first == [d.device_id for d in LAMPS[:2]]
    assert tab.errors == []


async def _press_until(page: Page, key: str, selector: str, presses: int = 60) -> None:
    """Press `key` (Tab, Shift+Tab) until the focused element matches `selector`."""
    for _ in range(presses):
        await page.keyboard.press(key)
        if await page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"{key} never reached {selector}")


async def test_an_operator_commands_the_lamps_of_an_area_by_keyboard_alone(
    commanded: Commanded, tab: Tab
) -> None:
    """Zoom the map in by keyboard, take its view as the area, and command only the lamps in it."""
    page = tab.page
    await tab.sign_in(commanded.operator, commanded.base_url)
    await page.goto(f"{commanded.base_url}/dashboard?refresh=1&lang=en#/map")
    await _until(page, "window.lantaarn && window.lantaarn.map.devices.length === 6")
    await _until(page, "!document.getElementById('group-form').hidden")
    await _press_until(page, "Tab", "#map")
    zoom, draws = await page.evaluate(
        "() => [window.lantaarn.map.map.getZoom(),"
        " Number(document.getElementById('map').dataset.draws)]"
    )
    await page.keyboard.press("+")  # one step closer: some of the lamps leave the view
    await _until(
        page,
        f"""window.lantaarn.map.map.getZoom() > {zoom}
            && Number(document.getElementById('map').dataset.draws) > {draws}""",
    )
    await _press_until(page, "Shift+Tab", "#view-area")
    await page.keyboard.press("Enter")
    await _until(page, "!document.getElementById('clear-area').hidden")
    inside = await page.locator("#area-devices tbody tr").count()
    assert 1 <= inside < len(LAMPS), inside
    await _press_until(page, "Tab", "#group-level")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("25")
    await page.keyboard.press("Enter")
    await _until(
        page,
        "document.getElementById('group-progress').dataset.finished === 'true'",
        wait_ms=30_000,
    )
    assert f"to {inside} lamps" in await page.inner_text("#group-note")
    assert await page.get_attribute("#group-bar", "value") == str(inside)
    assert tab.errors == []


async def test_a_lamps_schedule_and_commands_read_in_dutch(commanded: Commanded, tab: Tab) -> None:
    """No word of the API's own (`sunset`, an argument's name) reaches a Dutch page."""
    page = tab.page
    await tab.sign_in(commanded.operator, commanded.base_url)
    lamp = LAMPS[0].device_id
    await page.goto(f"{commanded.base_url}/dashboard?refresh=1&lang=nl#/device/{lamp}")
    await _until(page, "document.getElementById('lamp-schedule').textContent.includes('daarna')")
    schedule = await page.inner_text("#lamp-schedule")
    assert schedule.startswith("Schema “Night profile”: "), schedule
    assert not re.search(r"sun(set|rise)", schedule), schedule
    await page.fill("#dim-input", "20")
    await page.click("#dim-send")
    await _until(
        page,
        """() => [...document.querySelectorAll('#command-history tbody tr')].some(
            (row) => row.dataset.state === 'done' && row.cells[1].textContent.includes('20'))""",
        wait_ms=20_000,
    )
    rows = await page.locator("#command-history tbody tr").all_inner_texts()
    assert "dimniveau instellen (niveau 20)" in [r.split("\t")[1] for r in rows], rows
    assert await axe_violations(page) == []
    assert tab.errors == []
