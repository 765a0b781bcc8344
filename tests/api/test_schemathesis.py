"""Schemathesis against the live API: generated from our own OpenAPI, no 5xx, answers match it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from api import ApiConfig, create_app
from lantaarn.localstack import Influx
from tests.api.liveapi import World, seed_world, serving
from timeseries import InfluxConfig

if TYPE_CHECKING:
    # The case type schemathesis itself gives an OpenAPI operation's cases (named for typing only).
    from schemathesis.specs.openapi.schemas import OpenApiCase

# A bounded run: the whole module stays well under a minute on a 2-core machine.
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings in a real registry and InfluxDB."""
    return seed_world(influx, tmp_path_factory.mktemp("schemathesis"))


@pytest.fixture(scope="module")
def live(world: World) -> Iterator[str]:
    """The API's base URL."""
    # Schemathesis checks that wrong keys are refused by sending some, from one address: more
    # than the rate limit of failed logins lets through (tested in test_hostile_requests).
    with serving(dataclasses.replace(world.config, auth_failure_burst=100_000)) as url:
        yield url


def _published_schema() -> dict[str, Any]:
    # The document depends on the code, not on the services: build it at collection. (Loading it
    # lazily from the live app with `schemathesis.pytest.from_fixture` fails on pytest 9, which
    # no longer has the `Function._nodeid` Schemathesis 4.32 sets.) The test below checks that
    # the live app publishes this very document.
    app = create_app(ApiConfig("sqlite://", InfluxConfig("http://[::1]:9", "unused")))
    return app.openapi()


# The event stream never ends by design: Schemathesis would wait on it forever. It is read as a
# stream in tests/api/test_device_state_api.py.
schema = schemathesis.openapi.from_dict(_published_schema()).exclude(path="/v1/events")
# Certificate signing requests travel as PEM text; Schemathesis knows no serializer for their
# media types and would filter every example of that operation out.
schemathesis.serializer.alias(["application/pkcs10", "application/x-pem-file"], "text/plain")


def test_the_live_app_publishes_the_schema_we_test(live: str) -> None:
    # A generous timeout: the first answer builds the schema, slow on a busy machine.
    assert httpx.get(f"{live}/v1/openapi.json", timeout=60).json() == _published_schema()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # The same examples on every run: CI must not turn red on a new random draw. Explore with
    # more examples (and derandomize off) by hand.
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_its_own_contract(case: OpenApiCase, world: World, live: str) -> None:
    case.call_and_validate(
        base_url=live,
        headers={"Authorization": f"Bearer {world.keys['admin']}"},
        # Schema-valid is not always valid: a cursor we never handed out, an unknown tenant or
        # kind is a 400 the schema cannot express. And "invalid" is not always invalid once
        # sent: a mutated header is replaced by our key, a null-or-array query value becomes the
        # string "false" in the URL (seen: /v1/latest?kind=false). Everything else is checked.
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )


def test_known_devices_are_reachable_through_the_schema(live: str, world: World) -> None:
    # Random ids almost never name a device; make sure the 200 path is exercised too.
    key = {"Authorization": f"Bearer {world.keys['admin']}"}
    for device in world.devices[:3]:
        answer = httpx.get(f"{live}/v1/devices/{device.device_id}/readings", headers=key)
        assert answer.status_code == 200
        assert answer.json()["items"]
