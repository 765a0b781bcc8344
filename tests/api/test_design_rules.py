"""The NLGov REST API Design Rules our API promises, checked against the live app."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api import API_VERSION
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, World, seed_world, serving

PROBLEM = "application/problem+json"
CAMEL = re.compile(r"[a-z][a-zA-Z0-9]*")
ORIGIN = "https://kaart.gemeente.example"


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, and keys."""
    return seed_world(influx, tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[httpx.Client]:
    """A client of the live API with an admin key, CORS open to one origin."""
    config = dataclasses.replace(world.config, cors_origins=(ORIGIN,))
    with (
        serving(config) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {world.keys['admin']}"}
        ) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def openapi(api: httpx.Client) -> dict[str, Any]:
    """The published OpenAPI document."""
    schema: dict[str, Any] = api.get("/v1/openapi.json").json()
    return schema


def device(world: World) -> str:
    return world.of_tenant(TENANT_A)[0].device_id


# (method, path, expected status) over every kind of answer the API gives.
ANSWERS = [
    ("GET", "/v1/device-kinds", 200),
    ("GET", "/v1/latest", 200),
    ("GET", "/v1/latest?tenant=bad%20code", 400),
    ("GET", "/v1/devices/gm0363-nope/readings", 404),
    ("GET", "/v1/nothing-here", 404),
    ("DELETE", "/v1/device-kinds", 405),
    ("GET", "/v1/health/live", 200),
    ("GET", "/metrics", 200),
    ("GET", "/dashboard", 200),
    ("GET", "/v1/docs", 200),
]


@pytest.mark.parametrize(("method", "path", "status"), ANSWERS)
def test_every_answer_has_the_api_version_and_security_headers(
    api: httpx.Client, method: str, path: str, status: int
) -> None:
    response = api.request(method, path)
    assert response.status_code == status
    assert response.headers["API-Version"] == API_VERSION
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    if status >= 400:
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == status


def test_unauthorized_answers_carry_the_headers_too(api: httpx.Client) -> None:
    response = api.get("/v1/rejections", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["API-Version"] == API_VERSION
    assert response.headers["Cache-Control"] == "no-store"


def test_api_answers_are_not_cached_and_load_nothing(api: httpx.Client, world: World) -> None:
    for path in ("/v1/latest", f"/v1/devices/{device(world)}/readings", "/v1/device-kinds"):
        response = api.get(path)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_dashboard_may_load_only_its_own_code(api: httpx.Client) -> None:
    csp = api.get("/dashboard").headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src" not in csp  # so scripts fall back to 'self': no inline, no other origin
    assert api.get("/dashboard/app.js").headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("path", ["/v1/devices/", "/v1/latest/", "/v1/device-kinds/"])
def test_a_trailing_slash_is_404_not_a_redirect(api: httpx.Client, path: str) -> None:
    response = api.get(path, follow_redirects=False)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_405_names_the_allowed_methods(api: httpx.Client) -> None:
    response = api.post("/v1/latest")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert "GET" in response.headers["Allow"]


def test_bad_input_is_400_listing_every_problem(api: httpx.Client, world: World) -> None:
    response = api.get(
        f"/v1/devices/{device(world)}/readings", params={"limit": "0", "order": "sideways"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    names = {p["name"] for p in response.json()["invalidParams"]}
    assert names == {"limit", "order"}


def test_fastapis_422_appears_nowhere(openapi: dict[str, Any]) -> None:
    for operations in openapi["paths"].values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
            for code, answer in operation["responses"].items():
                if code.startswith("4"):
                    assert PROBLEM in answer["content"], code
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


def test_query_parameters_and_properties_are_camel_case(openapi: dict[str, Any]) -> None:
    names = [
        p["name"]
        for operations in openapi["paths"].values()
        for operation in operations.values()
        for p in operation.get("parameters", [])
        if p["in"] in ("query", "path")
    ]
    names += [
        prop
        for schema in openapi["components"]["schemas"].values()
        for prop in schema.get("properties", {})
    ]
    assert names
    assert [n for n in names if not CAMEL.fullmatch(n)] == []


def test_openapi_names_version_contact_and_security(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.")
    assert openapi["info"]["version"] == API_VERSION
    assert openapi["info"]["contact"]["url"]
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["apiKey"]["in"] == "header"
    assert schemes["apiKey"]["name"] == "X-API-Key"
    rejections = openapi["paths"]["/v1/rejections"]["get"]
    assert {"401", "403"} <= set(rejections["responses"])
    assert {next(iter(s)) for s in rejections["security"]} == {"bearer", "apiKey"}
    # Open data is read without a key: the key is optional there (an empty requirement).
    assert {} in openapi["paths"]["/v1/latest"]["get"]["security"]
    assert "security" not in openapi["paths"]["/v1/device-kinds"]["get"]


def test_cors_allows_only_the_listed_origins(api: httpx.Client) -> None:
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    allowed = api.options("/v1/latest", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert allowed.headers["API-Version"] == API_VERSION
    other = api.options("/v1/latest", headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in other.headers
    simple = api.get("/v1/latest", headers={"Origin": ORIGIN})
    assert simple.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "API-Version" in simple.headers["Access-Control-Expose-Headers"]


def test_metrics_count_requests_by_route_template(api: httpx.Client, world: World) -> None:
    device_id = device(world)
    api.get(f"/v1/devices/{device_id}/readings")
    api.get("/v1/devices/gm0363-nope/readings")
    api.get("/v1/random-probe-12345")
    text = api.get("/metrics").text
    route = 'route="/v1/devices/{deviceId}/readings"'
    assert re.search(
        rf'lantaarn_http_requests_total\{{method="GET",{route},status="200"\}} [1-9]', text
    )
    assert re.search(
        rf'lantaarn_http_requests_total\{{method="GET",{route},status="404"\}} [1-9]', text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert "lantaarn_http_request_duration_seconds_bucket" in text
    assert device_id not in text
    assert "random-probe" not in text
