"""The NLGov API Design Rules, checked by Spectral on the live `/v1/openapi.json`, and each rule
the linter found broken (issue 15) checked once more in Python, so each stays fixed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import API_VERSION
from lantaarn.localstack import Influx
from tests.api.liveapi import World, seed_world, serving
from tests.conftest import IN_CI, require_program
from timeseries import InfluxConfig

ROOT = Path(__file__).resolve().parents[2]
RULESET = Path(__file__).resolve().parent / "spectral" / "nlgov-adr.yaml"
SPECTRAL = Path(os.environ.get("LANTAARN_SPECTRAL", ROOT / ".venv/js/node_modules/.bin/spectral"))
PROBLEM = "application/problem+json"
# What an OpenAPI 3.1 Media Type object may hold (a `description` is not among them).
MEDIA_TYPE_FIELDS = {"schema", "example", "examples", "encoding"}


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, and keys."""
    return seed_world(influx, tmp_path_factory.mktemp("adr"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    """The live API's base URL."""
    with serving(world.config) as url:
        yield url


@pytest.fixture(scope="module")
def openapi(api: str) -> dict[str, Any]:
    """The published OpenAPI document."""
    document: dict[str, Any] = httpx.get(f"{api}/v1/openapi.json").json()
    return document


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def _spectral() -> Path:
    require_program("node", "nodejs")
    if not SPECTRAL.exists():
        message = f"{SPECTRAL} is missing: run scripts/vendor-js.sh (make setup does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return SPECTRAL


def test_spectral_finds_no_error(openapi: dict[str, Any], tmp_path: Path) -> None:
    spectral = _spectral()
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi))
    node = shutil.which("node")
    assert node is not None
    ran = subprocess.run(
        [node, str(spectral.resolve()), "lint", "--ruleset", str(RULESET), "--format", "json",
         "--quiet", "--fail-severity", "error", str(document)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    findings = json.loads(ran.stdout or "[]")
    errors = [f"{f['code']}: {f['message']} at {'/'.join(map(str, f['path']))}"
              for f in findings if f["severity"] == 0]  # fmt: skip
    assert errors == [], "\n".join(errors)
    assert ran.returncode == 0, ran.stderr


def test_spectral_catches_what_the_rules_forbid(openapi: dict[str, Any], tmp_path: Path) -> None:
    # The linter and the ruleset work: a copy with each finding of issue 15 put back fails.
    spectral = _spectral()
    broken = json.loads(json.dumps(openapi))
    broken.pop("servers")
    broken["info"]["contact"].pop("email")
    live = broken["paths"]["/v1/health/live"]["get"]["responses"]["200"]
    live.pop("headers")
    ready = broken["paths"]["/v1/health/ready"]["get"]["responses"]["503"]
    ready["content"] = {"application/json": {"schema": {"type": "object"}}}
    latest = broken["paths"]["/v1/latest"]["get"]["responses"]["200"]["content"]
    latest["application/geo+json"] = {"description": "a FeatureCollection"}
    document = tmp_path / "broken.json"
    document.write_text(json.dumps(broken))
    node = shutil.which("node")
    assert node is not None
    ran = subprocess.run(
        [node, str(spectral.resolve()), "lint", "--ruleset", str(RULESET), "--format", "json",
         "--quiet", str(document)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    codes = sorted({f["code"] for f in json.loads(ran.stdout) if f["severity"] == 0})
    assert codes == [
        "nlgov:info-contact-fields-exist",
        "nlgov:missing-header",
        "nlgov:use-problem-schema",
        "oas3-api-servers",
        "oas3-schema",
    ]
    assert ran.returncode != 0


# -- each rule again, without node -------------------------------------------------------------


def test_every_successful_answer_declares_the_api_version(openapi: dict[str, Any]) -> None:
    # nlgov:missing-header
    header = openapi["components"]["headers"]["API-Version"]
    assert header["schema"]["example"] == API_VERSION
    missing = [
        f"{name} {code}"
        for name, operation in _operations(openapi)
        for code, answer in operation["responses"].items()
        if code.startswith("2") and "API-Version" not in answer.get("headers", {})
    ]
    assert missing == []


def test_every_error_answer_is_a_problem_document(openapi: dict[str, Any]) -> None:
    # nlgov:use-problem-schema
    plain = [
        f"{name} {code}"
        for name, operation in _operations(openapi)
        for code, answer in operation["responses"].items()
        if code[0] in "45" and PROBLEM not in answer.get("content", {})
    ]
    assert plain == []


def test_the_document_names_its_server_and_contact(openapi: dict[str, Any]) -> None:
    # oas3-api-servers, nlgov:info-contact-fields-exist
    assert openapi["servers"]
    assert openapi["servers"][0]["url"]
    contact = openapi["info"]["contact"]
    assert contact["name"]
    assert contact["url"]
    assert "@" in contact["email"]


def test_media_types_hold_only_what_openapi_allows(openapi: dict[str, Any]) -> None:
    # oas3-schema (the GeoJSON answer of /v1/latest had a `description` there)
    wrong = [
        f"{name} {code} {media}: {sorted(set(body) - MEDIA_TYPE_FIELDS)}"
        for name, operation in _operations(openapi)
        for code, answer in operation["responses"].items()
        for media, body in answer.get("content", {}).items()
        if set(body) - MEDIA_TYPE_FIELDS
    ]
    assert wrong == []


def test_the_openapi_document_is_readable_from_any_origin(api: str) -> None:
    answer = httpx.get(f"{api}/v1/openapi.json", headers={"Origin": "https://elders.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert answer.headers["API-Version"] == API_VERSION


def test_health_answers_503_as_a_problem_document(world: World) -> None:
    # nlgov:use-problem-schema, live: InfluxDB unreachable (a port nothing listens on).
    dead = dataclasses.replace(world.config, influx=InfluxConfig("http://[::1]:9", database="x"))
    with serving(dead) as url:
        for path in ("/v1/health", "/v1/health/ready"):
            answer = httpx.get(url + path)
            assert answer.status_code == 503
            assert answer.headers["content-type"] == PROBLEM
            body = answer.json()
            assert body["status"] == 503
            assert "influxdb" in body["detail"]
            assert {c["name"]: c["status"] for c in body["checks"]} == {
                "influxdb": "down",
                "registry": "up",
            }
        assert httpx.get(url + "/v1/health/live").status_code == 200


def test_the_docs_page_loads_nothing_from_elsewhere(api: str) -> None:
    page = httpx.get(f"{api}/v1/docs")
    assert page.status_code == 200
    assert "http" not in page.text  # every reference is a path of our own
    assert "<script>" not in page.text  # no inline script: the CSP allows 'self' only
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp
    assert "https:" not in csp
    for asset in ("docs/assets/swagger-ui-bundle.js", "docs/assets/swagger-ui.css",
                  "docs/swagger-init.js"):  # fmt: skip
        answer = httpx.get(f"{api}/v1/{asset}")
        assert answer.status_code == 200, asset
        assert len(answer.content) > 200
