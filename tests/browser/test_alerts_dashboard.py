"""Alerts on the dashboard: the count on the overview, the list, the device page, acknowledging
with a note, the link to the metric's chart; and completeness per device and tenant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from playwright.async_api import Page

from api.keys import KeyStore, Role
from api.timefmt import format_ns
from devices import Device, Registry
from devices.alert_rules import AlertState, Change
from tests.browser.conftest import Live, Tab, axe_violations

pytestmark = [pytest.mark.anyio, pytest.mark.browser]


@dataclass
class Fired:
    """A firing alert on one air-quality device of the first tenant, and an operator's key."""

    alert_id: str
    device: Device
    operator: str


async def _until(page: Page, predicate: str, wait_ms: int = 15_000) -> None:
    await page.wait_for_function(f"() => {predicate}", timeout=wait_ms)


async def _fire(live: Live) -> Fired:
    """An operator's rule (pm25 mean over 15 minutes), and an alert it fired, as the evaluator
    stores one."""
    tenant = live.fleet.tenants[0].code
    device = next(
        d
        for d in live.fleet.devices
        if d.tenant == tenant and d.kind == "air_quality" and d not in (live.offline, live.silent)
    )
    with KeyStore(live.platform.registry.url) as keys:
        operator = keys.create(Role.OPERATOR, [tenant], "alerts test")[1]
    made = await live.platform.http.post(
        "/v1/alert-rules",
        json={
            "tenant": tenant,
            "type": "threshold",
            "name": "Fijnstof boven WHO",
            "kind": "air_quality",
            "metric": "pm25",
            "statistic": "mean",
            "window": "15m",
            "fireAt": 25,
            "resolveAt": 20,
            "forSeconds": 0,
        },
        headers={"Authorization": f"Bearer {operator}"},
    )
    assert made.status_code == 201, made.text

    def store() -> str:
        with Registry(live.platform.registry.url) as registry:
            rule = registry.rule(made.json()["id"])
            (alert_id,) = registry.apply(
                [
                    Change(
                        rule,
                        device.device_id,
                        device.device_id,
                        AlertState.FIRING,
                        31.0,
                        "31 µg/m³",
                    )
                ],
                [],
            )
            return alert_id

    return Fired(await asyncio.to_thread(store), device, operator)


async def test_an_operator_sees_acknowledges_and_follows_an_alert(live: Live, tab: Tab) -> None:
    fired = await _fire(live)
    page = tab.page
    await tab.sign_in(fired.operator, live.base_url)
    await page.goto(f"{live.base_url}/dashboard?refresh=1&lang=en#/overview")
    # The overview counts the firing alerts of the operator's tenant.
    await _until(page, "Number(document.getElementById('n-alerts').textContent) >= 1")
    firing = int(await page.inner_text("#n-alerts"))
    assert "firing" in await page.inner_text("#nav-alert-count")
    # Completeness per tenant and kind: a row for each the API counts (or one saying none).
    await _until(page, "document.querySelectorAll('#completeness tbody tr').length > 0")
    counted = await live.platform.http.get(
        "/v1/completeness", headers={"Authorization": f"Bearer {fired.operator}"}
    )
    items = counted.json()["items"]
    rows = await page.locator("#completeness tbody tr").all_inner_texts()
    if items:
        assert len(rows) == len(items)
        assert all(r.endswith("%") for r in rows), rows
    else:
        assert rows == ["no figures for the last hour yet"]
    # The devices that lost most over the summary's hour: what /v1/summary says, as a table.
    await _until(page, "document.querySelectorAll('#lowest-completeness tbody tr').length > 0")
    summary = await live.platform.http.get(
        "/v1/summary", headers={"Authorization": f"Bearer {fired.operator}"}
    )
    worst = summary.json()["worst"]
    lowest = [
        r.split("\t") for r in await page.locator("#lowest-completeness tbody tr").all_inner_texts()
    ]
    if worst["completeness"]:
        assert [r[0] for r in lowest] == [c["deviceId"] for c in worst["completeness"]]
    else:
        assert [len(r) for r in lowest] == [1]  # one row saying there are none
    if worst["completenessStart"] == format_ns(live.lost_hour[0]):
        # The hour the fixture lost readings in (unless the summary moved on to the next).
        half, sixth = sorted(live.lost, key=lambda d: live.lost[d][0])
        tenant = fired.device.tenant
        assert [(r[0], r[1], r[3], r[4], r[5]) for r in lowest] == [
            (half, tenant, "30", "60", "50 %"),
            (sixth, tenant, "50", "60", "83.3 %"),
        ]
    if worst["completenessStart"]:
        assert (await page.inner_text("#lowest-hour")).startswith("Over ")

    # The list, from the overview's tile.
    await page.click("a.tile.alerts")
    await _until(page, "document.body.dataset.view === 'alerts'")
    row = page.locator(f"#alerts tbody tr[data-alert-id='{fired.alert_id}']")
    await row.wait_for()
    assert "firing" in await row.inner_text()
    assert "31 µg/m³" in await row.inner_text()
    await page.screenshot(path=tab.screenshot_path("alerts"), full_page=True)
    assert await axe_violations(page) == []

    # Acknowledge with a note, by keyboard alone: the row's button, the note, Send.
    await row.locator("button").focus()
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#ack-dialog[open]")
    assert await axe_violations(page) == []
    assert await page.evaluate("() => document.activeElement.id") == "ack-note"
    await page.keyboard.type("ploeg is onderweg")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.id") == "ack-send"
    await page.keyboard.press("Enter")
    await _until(
        page, "document.getElementById('alerts-result').textContent.includes('acknowledged')"
    )
    await page.select_option("#alert-state", "acknowledged")
    row = page.locator(f"#alerts tbody tr[data-alert-id='{fired.alert_id}']")
    await row.wait_for()
    assert "ploeg is onderweg" in await row.inner_text()
    answer = await live.platform.http.get(
        f"/v1/alerts/{fired.alert_id}", headers={"Authorization": f"Bearer {fired.operator}"}
    )
    assert (answer.json()["state"], answer.json()["note"]) == ("acknowledged", "ploeg is onderweg")
    await page.click("[data-nav=overview]")
    await _until(page, f"document.getElementById('n-alerts').textContent === '{firing - 1}'")

    # From the alert to the chart of its metric on the device's page, which lists the alert.
    await page.click("[data-nav=alerts]")
    await page.select_option("#alert-state", "active")
    link = page.locator(f"#alerts tbody tr[data-alert-id='{fired.alert_id}'] a.chart-link")
    await link.click()
    await _until(page, "document.body.dataset.view === 'device'")
    await _until(page, "document.activeElement?.dataset?.metric === 'pm25'")
    assert await page.get_attribute("[data-range=day]", "aria-pressed") == "true"
    shown = page.locator(f"#device-alerts-table tbody tr[data-alert-id='{fired.alert_id}']")
    await shown.wait_for()
    assert "acknowledged" in await shown.inner_text()
    assert "Completeness, last hour:" in await page.inner_text("#device-completeness")
    assert await axe_violations(page) == []
    assert tab.errors == []


async def test_a_viewer_sees_alerts_but_is_told_it_may_not_acknowledge(
    live: Live, tab: Tab
) -> None:
    fired = await _fire(live)
    page = tab.page
    await tab.sign_in(live.key, live.base_url)  # a viewer of every tenant
    await page.goto(f"{live.base_url}/dashboard?lang=nl#/alerts?state=firing")
    row = page.locator(f"#alerts tbody tr[data-alert-id='{fired.alert_id}']")
    await row.wait_for()
    assert "actief" in await row.inner_text()
    await row.locator("button").click()
    await page.fill("#ack-note", "gezien")
    await page.click("#ack-send")
    await _until(page, "document.getElementById('alerts-result').textContent.includes('Alleen')")
    answer = await live.platform.http.get(
        f"/v1/alerts/{fired.alert_id}", headers={"Authorization": f"Bearer {fired.operator}"}
    )
    assert answer.json()["state"] == "firing"
    assert [e for e in tab.errors if "403" not in e] == []
