"""HEAD answers like GET without the body, where monitors and proxies probe: the dashboard,
the health checks and the docs page. Over real HTTP, since it is the server that drops the body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api import ApiConfig
from tests.api.liveapi import serving
from timeseries import InfluxConfig

DASHBOARD = ["/dashboard", "/dashboard/app.js", "/dashboard/i18n/nl.json", "/dashboard/config.json"]
PROBED = ["/v1/health/live", "/v1/health/ready", "/v1/health", "/v1/docs"]
# Differ between any two answers, whatever the method.
_PER_ANSWER = {"date"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API with no InfluxDB behind it: the readiness check is a 503, which HEAD must say too."""
    folder: Path = tmp_path_factory.mktemp("head")
    no_influx = InfluxConfig("http://127.0.0.1:9")
    config = ApiConfig(f"sqlite:///{folder / 'registry.sqlite3'}", no_influx)
    with serving(config) as url:
        yield url


def _headers(answer: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in answer.headers.items() if name not in _PER_ANSWER}


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
@pytest.mark.parametrize("path", DASHBOARD + PROBED)
def test_head_answers_as_get_without_the_body(api: str, path: str, encoding: str) -> None:
    asked = {"Accept-Encoding": encoding}
    with httpx.Client(base_url=api) as http:
        got = http.get(path, headers=asked)
        head = http.head(path, headers=asked)
    assert got.status_code == (503 if path in ("/v1/health/ready", "/v1/health") else 200)
    assert head.status_code == got.status_code
    assert head.content == b""
    # Content-Length, Content-Type, Content-Encoding, ETag and the security headers alike.
    assert _headers(head) == _headers(got)
    assert int(head.headers["Content-Length"]) == got.num_bytes_downloaded > 0  # as sent


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/app.js"])
def test_head_with_the_etag_held_is_a_304(api: str, path: str) -> None:
    with httpx.Client(base_url=api) as http:
        etag = http.head(path).headers["ETag"]
        again = http.head(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["ETag"] == etag
    assert again.content == b""


def test_a_method_not_allowed_names_head_among_the_allowed(api: str) -> None:
    answer = httpx.options(f"{api}/v1/health/live")
    assert answer.status_code == 405
    assert answer.headers["Allow"].split(", ") == ["GET", "HEAD"]
