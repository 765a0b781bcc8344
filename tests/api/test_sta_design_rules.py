"""The NLGov API Design Rules that also hold for the SensorThings part (`/sta/v1.1`), one test
per rule, against the live app. Rules the OGC standard fixes otherwise (its property names,
`$` query options, paging by `@iot.nextLink`) are not checked here but in the conformance tests.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import httpx
import pytest

from api import API_VERSION
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, World, seed_world, serving

PROBLEM = "application/problem+json"
ORIGIN = "https://kaart.gemeente.example"
STA = "/sta/v1.1"
# RFC 3339 in UTC, written with `Z` (ADR API-56), to any fraction of a second.
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, and keys."""
    return seed_world(influx, tmp_path_factory.mktemp("sta-rules"))


@pytest.fixture(scope="module")
def sta(world: World) -> Iterator[httpx.Client]:
    """A client of the live API's SensorThings part with an admin key, CORS open to one origin."""
    config = dataclasses.replace(world.config, cors_origins=(ORIGIN,))
    with (
        serving(config) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {world.keys['admin']}"}
        ) as client,
    ):
        yield client


# (method, path, expected status): every kind of answer the SensorThings part gives.
ANSWERS = [
    ("GET", STA, 200),
    ("GET", f"{STA}/", 200),
    ("GET", f"{STA}/Things", 200),
    ("GET", f"{STA}/Things?$top=abc", 400),
    ("GET", f"{STA}/Things('nope')", 404),
    ("GET", f"{STA}/Things?$resultFormat=dataArray", 501),
    ("POST", f"{STA}/Things", 405),
]


@pytest.mark.parametrize(("method", "path", "status"), ANSWERS)
def test_api_version_header_on_every_answer(
    sta: httpx.Client, method: str, path: str, status: int
) -> None:
    """ADR API-57: the version in an `API-Version` header."""
    response = sta.request(method, path)
    assert response.status_code == status, response.text
    assert response.headers["API-Version"] == API_VERSION


@pytest.mark.parametrize(("method", "path", "status"), ANSWERS)
def test_security_headers_on_every_answer(
    sta: httpx.Client, method: str, path: str, status: int
) -> None:
    """ADR transport security: nosniff, no framing, no referrer, HSTS, a CSP; never cached."""
    response = sta.request(method, path)
    assert response.status_code == status, response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("method", "path", "status"), [a for a in ANSWERS if a[2] >= 400])
def test_errors_are_problem_details(sta: httpx.Client, method: str, path: str, status: int) -> None:
    """ADR API-46 (RFC 9457): every error is `application/problem+json` with its status."""
    response = sta.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]


def test_bad_input_is_400_never_422_or_500(sta: httpx.Client) -> None:
    """ADR API-46/API-51: malformed input is a 400 naming what is wrong."""
    for params in ({"$top": "-1"}, {"$filter": "name eq"}, {"$skip": "x"}):
        response = sta.get(f"{STA}/Things", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["detail"]


def test_405_names_the_allowed_methods(sta: httpx.Client) -> None:
    """HTTP semantics the ADR asks for: a read-only resource answers 405 with `Allow`."""
    response = sta.delete(f"{STA}/Things")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("path", [f"{STA}/Things/", f"{STA}/Datastreams/", f"{STA}/Things('x')/"])
def test_a_trailing_slash_is_404_not_a_redirect(sta: httpx.Client, path: str) -> None:
    """ADR API-48: no trailing slash, and no redirect to the path without one."""
    response = sta.get(path, follow_redirects=False)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM


def test_times_are_utc_with_z(sta: httpx.Client, world: World) -> None:
    """ADR API-56: times in RFC 3339, UTC, written with `Z` (intervals are two such times)."""
    device = world.of_tenant(TENANT_A)[0].device_id
    streams = sta.get(f"{STA}/Things('{device}')/Datastreams").json()["value"]
    assert streams
    times = [s["phenomenonTime"] for s in streams if s.get("phenomenonTime")]
    observations = sta.get(
        f"{STA}/Datastreams('{streams[0]['@iot.id']}')/Observations", params={"$top": "5"}
    ).json()["value"]
    assert observations
    times += [o["phenomenonTime"] for o in observations]
    times += [o["resultTime"] for o in observations if o["resultTime"] is not None]
    assert times
    for value in times:
        for part in value.split("/"):
            assert UTC_TIME.fullmatch(part), value


def test_cors_allows_only_the_listed_origins(sta: httpx.Client) -> None:
    """ADR API-50 (CORS): the configured origins may read, others get no CORS header."""
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    allowed = sta.options(f"{STA}/Things", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = sta.options(f"{STA}/Things", headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in other.headers
    simple = sta.get(f"{STA}/Things", headers={"Origin": ORIGIN})
    assert simple.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "API-Version" in simple.headers["Access-Control-Expose-Headers"]


def test_json_answers_say_json(sta: httpx.Client) -> None:
    """ADR API-20/JSON: answers are JSON and say so (OGC keeps its own names in them)."""
    for path in (STA, f"{STA}/Things", f"{STA}/Things?$count=true"):
        response = sta.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert isinstance(response.json(), dict)


def test_unauthorized_answers_carry_the_headers_too(sta: httpx.Client) -> None:
    """ADR: a key that is not valid is a 401 problem, with the version and never cached."""
    response = sta.get(f"{STA}/Things", headers={"Authorization": "Bearer not-a-key"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["API-Version"] == API_VERSION
    assert response.headers["Cache-Control"] == "no-store"
