"""What the dashboard reads from the settings before it asks the API anything: the base map."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pydantic
import pytest

from api import ApiConfig, create_app
from lantaarn.settings import PDOK_BRT_TILES, ApiSettings
from timeseries import InfluxConfig

pytestmark = pytest.mark.anyio

TILES = "https://tiles.example.org/{z}/{x}/{y}.png"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    config = ApiConfig(
        url, InfluxConfig("http://[::1]:9"), map_tiles=TILES, map_attribution="© Example"
    )
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_the_dashboard_reads_the_map_tiles_from_the_settings(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.get("/dashboard/config.json")
    assert answer.status_code == 200
    assert answer.json() == {"mapTiles": TILES, "mapAttribution": "© Example"}
    # It is a file of the dashboard: the dashboard's policy, which lets https images (tiles) in.
    assert "img-src 'self' data: https:" in answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/app.js", "/dashboard/i18n/nl.json"])
async def test_the_dashboard_files_are_kept_but_asked_again_and_unchanged_ones_cost_a_304(
    http: httpx.AsyncClient, path: str
) -> None:
    first = await http.get(path)
    assert first.status_code == 200
    # Not a guess from Last-Modified: an upgraded page never runs with yesterday's modules.
    assert first.headers["Cache-Control"] == "no-cache"
    again = await http.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_dashboard_files_come_gzipped_and_anew_once_changed_and_none_from_outside(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>x</title>")
    script = folder / "app.js"
    script.write_text("export const words = 1;\n" * 200)
    (tmp_path / "secret.txt").write_text("not for the browser")
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    app = create_app(ApiConfig(url, InfluxConfig("http://[::1]:9"), dashboard_dir=folder))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = await http.get("/dashboard/app.js", headers={"Accept-Encoding": "gzip"})
            assert first.headers["Content-Encoding"] == "gzip"
            assert first.headers["Content-Type"].startswith("text/javascript")
            assert first.text == script.read_text()  # httpx decompressed it
            plain = await http.get("/dashboard/app.js", headers={"Accept-Encoding": "identity"})
            assert "Content-Encoding" not in plain.headers
            assert plain.text == script.read_text()

            script.write_text("export const words = 2;\n" * 200)
            again = await http.get(
                "/dashboard/app.js", headers={"If-None-Match": first.headers["ETag"]}
            )
            assert again.status_code == 200
            assert again.text == script.read_text()
            assert again.headers["ETag"] != first.headers["ETag"]

            for outside in ("/dashboard/..%2Fsecret.txt", "/dashboard/%2e%2e/secret.txt"):
                refused = await http.get(outside)
                assert refused.status_code == 404
                assert "not for the browser" not in refused.text
            assert (await http.get("/dashboard/missing.js")).status_code == 404


def test_the_base_map_is_pdok_by_default_and_plain_on_request() -> None:
    assert ApiSettings().map_tiles == PDOK_BRT_TILES
    assert ApiSettings(map_tiles="").map_tiles == ""


@pytest.mark.parametrize(
    "url",
    [
        "http://tiles.example.org/{z}/{x}/{y}.png",  # not https: the page would mix content
        "javascript:alert(1)//{z}",
        'https://tiles.example.org/{z}/{x}/{y}.png" onerror="x',
        "https://tiles.example.org/tile.png",  # no {z}: not a tile template
    ],
)
def test_a_tile_url_that_is_not_an_https_template_is_refused(url: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        ApiSettings(map_tiles=url)
