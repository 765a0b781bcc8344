"""WCAG 2.1 AA in a real browser: axe-core on every view and state in both languages, the
catalogues' texts on every page, and the main controls worked by keyboard alone."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page

from tests.browser.conftest import Live, Tab, axe_violations
from tests.browser.test_alerts_dashboard import _fire

STATIC = Path(__file__).resolve().parents[2] / "dashboards" / "static"
LANGUAGES = ("nl", "en")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
pytestmark = [pytest.mark.anyio, pytest.mark.browser]


def _keys() -> list[str]:
    keys: dict[str, str] = json.loads((STATIC / "i18n" / "nl.json").read_text("utf-8"))
    return sorted(keys)


async def _until(page: Page, predicate: str, wait_ms: int = 15_000) -> None:
    await page.wait_for_function(f"() => {predicate}", timeout=wait_ms)


async def _open(page: Page, live: Live, language: str, view: str) -> None:
    """Go to a view and wait until it has drawn from the API at least once."""
    await page.goto(f"{live.base_url}/dashboard?lang={language}{view}")
    await _until(page, "Number(document.body.dataset.updates ?? 0) >= 1")


async def _open_failing(page: Page, live: Live, language: str, view: str) -> None:
    """Go to a view the API answers with an error, and wait until the page said so."""
    await page.goto(f"{live.base_url}/dashboard?lang={language}{view}")
    await _until(page, "!document.getElementById('banner').hidden")


async def _check(page: Page, tab: Tab, language: str, state: str, refused: str = "") -> None:
    """No axe violation, the page's language set, and no catalogue key shown instead of text;
    the browser's complaints about answers with the status `refused` are expected."""
    violations = await axe_violations(page)
    assert violations == [], (language, state, violations)
    assert await page.get_attribute("html", "lang") == language
    text = await page.inner_text("body")
    shown = [key for key in _keys() if key in text]
    assert shown == [], (language, state, shown)
    empty: list[str] = await page.evaluate(
        """() => [...document.querySelectorAll('[data-i18n]')]
            .filter((n) => !n.textContent.trim()).map((n) => n.dataset.i18n)"""
    )
    assert empty == [], (language, state, empty)
    if refused:
        tab.errors[:] = [e for e in tab.errors if f"status of {refused}" not in e]
    assert tab.errors == [], (language, state, tab.errors)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_view_and_state_has_no_wcag_violation(
    live: Live, tab: Tab, language: str
) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)

    await _open(page, live, language, "#/overview")
    await _until(page, "document.querySelectorAll('#latest tbody tr').length > 1")
    await _check(page, tab, language, "overview")
    await page.select_option("#status-filter", "offline")
    await _check(page, tab, language, "overview, filtered")

    await _open(page, live, language, "#/map")
    await _until(page, "document.querySelectorAll('#map .leaflet-marker-icon').length > 0")
    await _check(page, tab, language, "map")
    await page.select_option("#colour-by", "kind")
    await _check(page, tab, language, "map, coloured by kind")
    await page.select_option("#colour-by", "air_quality:pm25")
    await _until(page, "!document.getElementById('area-value-head').hidden")
    await _check(page, tab, language, "map, coloured by a metric")
    await page.click("#draw-area")
    await _check(page, tab, language, "map, drawing an area")
    await page.click("#view-area")
    await _until(page, "!document.getElementById('clear-area').hidden")
    await _check(page, tab, language, "map, an area chosen")

    air = live.device_of("air_quality")
    await _open(page, live, language, f"#/device/{air.device_id}")
    await _until(page, "document.querySelectorAll('#device-charts figure details').length === 5")
    await _check(page, tab, language, "device")
    await page.click("[data-range=day]")
    await _until(page, "document.querySelector('[data-range=day]').ariaPressed === 'true'")
    await _check(page, tab, language, "device, a day")
    # Where the day's windows come from, in words rather than the API's code.
    await _until(page, "document.getElementById('device-source').textContent.includes('15')")
    source = await page.inner_text("#device-source")
    assert not re.search(r"rollup|raw \(|15m", source), source

    lamp = live.device_of("lamppost")
    await _open(page, live, language, f"#/device/{lamp.device_id}")
    await _until(page, "document.querySelectorAll('#device-charts figure').length === 6")
    await _until(page, "!document.getElementById('device-commands').hidden")
    await _check(page, tab, language, "lamppost")
    await page.click("#dim-send")  # a viewer: refused, and the page says so
    await _until(page, "document.getElementById('dim-note').textContent.length > 12")
    tab.errors[:] = [e for e in tab.errors if "403" not in e]
    await _check(page, tab, language, "lamppost, command refused")

    await _open(page, live, language, "#/rejections")
    await _check(page, tab, language, "rejections")

    fired = await _fire(live)
    await _open(page, live, language, "#/alerts")
    row = page.locator(f"#alerts tbody tr[data-alert-id='{fired.alert_id}']")
    await row.wait_for()
    await _check(page, tab, language, "alerts")
    await row.locator("button").click()
    await page.wait_for_selector("#ack-dialog[open]")
    await _check(page, tab, language, "alerts, acknowledge dialog")
    await page.keyboard.press("Escape")
    await _until(page, "!document.getElementById('ack-dialog').open")

    await _open(page, live, language, "#/accessibility")
    await _check(page, tab, language, "accessibility statement")

    await page.click("#open-settings")
    await page.wait_for_selector("#settings[open]")
    await _check(page, tab, language, "settings")
    # A key refused: the message above the page, the settings open again.
    await page.fill("#api-key", "ltn_0000000000000000_not-a-key")
    await page.click("#save-settings")
    await _until(page, "!document.getElementById('banner').hidden")
    await page.wait_for_selector("#settings[open]")
    await _check(page, tab, language, "settings, key refused", refused="401")

    # A device that is not there (or not this key's): the page says so.
    await _open_failing(page, live, language, "#/device/gm9999-aq-00001")
    await _check(page, tab, language, "device not found", refused="404")


async def test_the_language_is_dutch_by_default_and_the_choice_is_remembered(
    live: Live, tab: Tab
) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await page.goto(f"{live.base_url}/dashboard#/overview")
    await _until(page, "Number(document.body.dataset.updates ?? 0) >= 1")
    assert await page.get_attribute("html", "lang") == "nl"
    assert await page.inner_text("[data-nav=map]") == "Kaart"
    # Numbers and times in Dutch: a device's last reading reads as a Dutch date (dd-mm-jjjj).
    first = await page.inner_text("#latest tbody tr td:nth-child(5)")
    assert (first[2], first[5]) == ("-", "-"), first
    async with page.expect_navigation():
        await page.select_option("#language", "en")
    await _until(page, "Number(document.body.dataset.updates ?? 0) >= 1")
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.inner_text("[data-nav=map]") == "Map"
    first = await page.inner_text("#latest tbody tr td:nth-child(5)")
    assert (first[2], first[5]) == ("/", "/"), first
    await page.goto(f"{live.base_url}/dashboard#/map")
    await _until(page, "Number(document.body.dataset.updates ?? 0) >= 1")
    assert await page.get_attribute("html", "lang") == "en"
    assert tab.errors == []


async def _tab_to(page: Page, selector: str, presses: int = 120) -> None:
    """Press Tab until the focused element matches `selector`."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


async def test_the_main_controls_work_by_keyboard_alone(live: Live, tab: Tab) -> None:
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await _open(page, live, "en", "#/overview")
    # The first stop is the skip link; it moves the focus to the content.
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.classList.contains('skip')")
    await page.keyboard.press("Enter")
    assert await page.evaluate("() => document.activeElement.id") == "main"

    # A view, by its link.
    await page.evaluate("() => document.activeElement.blur()")
    await _tab_to(page, "[data-nav=map]")
    await page.keyboard.press("Enter")
    await _until(page, "document.body.dataset.view === 'map'")
    await _until(page, "document.querySelectorAll('#map .leaflet-marker-icon').length > 0")

    # Drawing an area needs a pointer: the hint names the keyboard's way, and Escape stops it.
    await _tab_to(page, "#draw-area")
    await page.keyboard.press("Enter")
    await _until(page, "document.getElementById('map').classList.contains('drawing')")
    assert "By keyboard" in await page.inner_text("#area-note")
    await page.keyboard.press("Escape")
    await _until(page, "!document.getElementById('map').classList.contains('drawing')")
    assert await page.evaluate("() => window.lantaarn.map.map.dragging.enabled()")
    assert await page.inner_text("#area-note") == "No area chosen: all devices."

    # The map's markers are in the tab order; Enter on a cluster zooms in, on a device opens it.
    for _ in range(12):
        await _tab_to(page, "#map .leaflet-marker-icon")
        await page.keyboard.press("Enter")
        try:
            await _until(page, "document.body.dataset.view === 'device'", wait_ms=1_500)
            break
        except Exception:  # noqa: BLE001 - a cluster zoomed in; tab on to the next marker
            continue
    await _until(page, "document.body.dataset.view === 'device'")

    # The range buttons.
    await _tab_to(page, "[data-range=week]")
    await page.keyboard.press("Enter")
    await _until(page, "document.querySelector('[data-range=week]').ariaPressed === 'true'")

    # Settings open and close by keyboard; focus returns to the button.
    await _tab_to(page, "#open-settings")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#settings[open]")
    await page.keyboard.press("Escape")
    await _until(page, "!document.getElementById('settings').open")

    # The tenant filter.
    await _tab_to(page, "#tenant")
    await page.keyboard.press("ArrowDown")
    await _until(page, "document.getElementById('tenant').value !== ''")

    # The language, last: it reloads the page in Dutch.
    await _tab_to(page, "#language")
    async with page.expect_navigation():
        await page.keyboard.press("ArrowUp")
    await _until(page, "document.documentElement.lang === 'nl'")
    assert tab.errors == []


async def test_dutch_numbers_and_amsterdam_time_whatever_the_browser_says(
    live: Live, browser: Browser
) -> None:
    """A browser set to American English in New York still gets Dutch, nl-NL numbers and dates,
    and Amsterdam's clock: the page does not take them from the browser."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="America/New_York"
    )
    try:
        page = await context.new_page()
        tab = Tab(page)
        page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        await tab.sign_in(live.key, live.base_url)
        await page.goto(f"{live.base_url}/dashboard#/overview")
        row = f"#latest tbody tr[data-device-id='{live.offline.device_id}']"
        await _until(page, f'document.querySelector("{row}")')
        assert await page.get_attribute("html", "lang") == "nl"
        # The offline device's last reading does not change: its time as Amsterdam writes it.
        latest = await live.platform.http.get(
            "/v1/latest", headers={"Authorization": f"Bearer {live.key}"}
        )
        (offline,) = [d for d in latest.json() if d["deviceId"] == live.offline.device_id]
        moment = datetime.fromisoformat(offline["ts"]).astimezone(AMSTERDAM)
        shown = await page.inner_text(f"{row} td:nth-child(5)")
        assert shown.startswith(moment.strftime("%d-%m-%Y")), (shown, moment)
        assert shown.endswith(moment.strftime("%H:%M:%S")), (shown, moment)
        # Numbers: a decimal comma and a point between thousands (a lamp's energy, kWh).
        await _until(page, "document.querySelector('#latest tbody td.values').textContent")
        values = await page.locator("#latest tbody td.values").all_inner_texts()
        numbers = [n for row in values for n in re.findall(r"\d[\d.,]*\d|\d", row)]
        assert any("," in n for n in numbers), values
        assert any("." in n for n in numbers), values
        dutch = re.compile(r"[0-9]{1,3}(\.[0-9]{3})*(,[0-9]+)?")
        assert all(dutch.fullmatch(n) for n in numbers), values
        assert tab.errors == []
    finally:
        await context.close()


async def test_the_keyboard_focus_survives_the_tables_being_redrawn(live: Live, tab: Tab) -> None:
    """The overview's tables are drawn again with every change the server pushes (every second
    with this fleet): a keyboard user's place on a device's link must not be lost to it."""
    page = tab.page
    await tab.sign_in(live.key, live.base_url)
    await _open(page, live, "en", "#/overview")
    await _until(page, "document.querySelectorAll('#latest tbody tr').length > 1")
    device = live.device_of("noise")
    link = f"#latest tbody tr[data-device-id='{device.device_id}'] a"
    await _tab_to(page, link, presses=200)
    pushed = await page.evaluate("() => Number(document.body.dataset.pushed ?? 0)")
    await _until(page, f"Number(document.body.dataset.pushed ?? 0) >= {pushed + 3}")
    assert await page.evaluate("(s) => document.activeElement.matches(s)", link)
    # The longest silent devices, drawn again with each summary.
    silent = "#worst-silence tbody a"
    await _tab_to(page, silent, presses=200)
    focused = await page.evaluate("() => document.activeElement.getAttribute('href')")
    updates = await page.evaluate("() => Number(document.body.dataset.updates ?? 0)")
    await _until(page, f"Number(document.body.dataset.updates ?? 0) >= {updates + 2}")
    assert await page.evaluate("() => document.activeElement.getAttribute('href')") == focused
    # Enter still opens the device.
    await page.keyboard.press("Enter")
    await _until(page, "document.body.dataset.view === 'device'")
    assert tab.errors == []
