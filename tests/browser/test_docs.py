"""`/v1/docs` in a real browser: Swagger UI draws the API from the platform's own files, and the
page asks no other origin for anything."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Request

from lantaarn.localstack import Influx
from tests.api.liveapi import seed_world, serving
from tests.browser.conftest import Tab

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def api(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live API (no platform around it: the docs need none)."""
    world = seed_world(influx, tmp_path_factory.mktemp("docs"))
    with serving(world.config) as url:
        yield url


async def test_swagger_ui_loads_from_the_platform_alone(api: str, tab: Tab) -> None:
    asked: list[str] = []

    def on_request(request: Request) -> None:
        asked.append(request.url)

    tab.page.on("request", on_request)
    await tab.page.goto(f"{api}/v1/docs")
    # Swagger UI draws one block per operation once it has read /v1/openapi.json.
    await tab.page.wait_for_selector(".opblock", timeout=30_000)
    assert await tab.page.locator(".opblock").count() > 20
    assert "lantaarn" in await tab.page.locator(".info .title").first.inner_text()
    own = urlsplit(api).netloc
    elsewhere = [u for u in asked if urlsplit(u).scheme != "data" and urlsplit(u).netloc != own]
    assert elsewhere == []
    assert f"{api}/v1/openapi.json" in asked
    assert tab.errors == []
