"""API keys at the door: 401 and 403 as problem details, and one tenant never sees another's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from api import problems
from api.auth import Admin, Operator, Principal, Reader, Role
from api.keys import KeyStore
from api.problems import Forbidden
from api.throttle import FailedLogins
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, World, seed_world, serving

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, and keys of every kind."""
    return seed_world(influx, tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    """The API with anonymous reading off (the default)."""
    with serving(world.config) as url:
        yield url


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    return body


# -- 401 -------------------------------------------------------------------------------------------


# /v1/latest answers a caller without a key with the open data (tests/api/test_open_data.py).
@pytest.mark.parametrize("path", ["/v1/rejections", "/v1/devices/gm0363-xyz/readings"])
def test_no_key_is_401_with_a_challenge(api: str, path: str) -> None:
    response = httpx.get(api + path)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="lantaarn"'


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer ltn_0123456789abcdef_" + "A" * 43},
        {"Authorization": "Bearer not-a-key"},
        {"X-API-Key": "ltn_nope"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["unknown", "malformed", "x-api-key", "basic"],
)
def test_a_wrong_key_is_401_invalid_token(api: str, headers: dict[str, str]) -> None:
    response = httpx.get(f"{api}/v1/latest", headers=headers)
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_revoked_key_is_401(api: str, world: World) -> None:
    assert_problem(httpx.get(f"{api}/v1/latest", headers=bearer(world.keys["revoked"])), 401)


def test_a_key_with_its_secret_changed_is_401(api: str, world: World) -> None:
    key = world.keys["admin"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert_problem(httpx.get(f"{api}/v1/latest", headers=bearer(tampered)), 401)


def test_two_different_keys_are_401(api: str, world: World) -> None:
    headers = {**bearer(world.keys["admin"]), "X-API-Key": world.keys["viewer_a"]}
    assert_problem(httpx.get(f"{api}/v1/latest", headers=headers), 401)


def test_the_key_works_in_either_header(api: str, world: World) -> None:
    key = world.keys["viewer_a"]
    by_bearer = httpx.get(f"{api}/v1/latest", headers=bearer(key))
    by_header = httpx.get(f"{api}/v1/latest", headers={"X-API-Key": key})
    assert by_bearer.status_code == by_header.status_code == 200
    assert by_bearer.json() == by_header.json()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/health/live",
        "/v1/health/ready",
        "/v1/health",
        "/v1/openapi.json",
        "/v1/docs",
        "/v1/device-kinds",
        "/dashboard",
    ],
)
def test_open_endpoints_need_no_key(api: str, path: str) -> None:
    assert httpx.get(api + path).status_code == 200


# -- tenants ---------------------------------------------------------------------------------------


def test_a_tenant_key_sees_only_its_tenants_latest(api: str, world: World) -> None:
    for use, tenant in (("viewer_a", TENANT_A), ("viewer_b", TENANT_B)):
        answer = httpx.get(f"{api}/v1/latest", headers=bearer(world.keys[use]))
        assert answer.status_code == 200
        seen = {d["deviceId"] for d in answer.json()}
        assert seen == {d.device_id for d in world.of_tenant(tenant)}
        assert seen  # a test that cannot fail is worse than none


def test_an_admin_sees_every_tenant(api: str, world: World) -> None:
    answer = httpx.get(f"{api}/v1/latest", headers=bearer(world.keys["admin"]))
    assert {d["tenant"] for d in answer.json()} == {TENANT_A, TENANT_B}


def test_asking_for_another_tenant_is_403(api: str, world: World) -> None:
    key = bearer(world.keys["viewer_a"])
    body = assert_problem(httpx.get(f"{api}/v1/latest?tenant={TENANT_B}", headers=key), 403)
    assert TENANT_B in str(body["detail"])
    own = httpx.get(f"{api}/v1/latest?tenant={TENANT_A}", headers=key)
    assert own.status_code == 200
    assert {d["tenant"] for d in own.json()} == {TENANT_A}


def test_readings_of_another_tenant_are_404_like_a_missing_device(api: str, world: World) -> None:
    key = bearer(world.keys["viewer_a"])
    own = world.of_tenant(TENANT_A)[0].device_id
    other = world.of_tenant(TENANT_B)[0].device_id
    mine = httpx.get(f"{api}/v1/devices/{own}/readings", headers=key)
    assert mine.status_code == 200
    assert len(mine.json()["items"]) > 0
    hidden = assert_problem(httpx.get(f"{api}/v1/devices/{other}/readings", headers=key), 404)
    missing = assert_problem(httpx.get(f"{api}/v1/devices/gm0363-nope/readings", headers=key), 404)
    # The same answer, but for the id itself: nothing tells the two apart.
    assert str(hidden["detail"]).replace(other, "X") == str(missing["detail"]).replace(
        "gm0363-nope", "X"
    )
    assert hidden.keys() == missing.keys()
    csv = httpx.get(f"{api}/v1/devices/{other}/readings", headers={**key, "Accept": "text/csv"})
    assert csv.status_code == 404
    admin = httpx.get(f"{api}/v1/devices/{other}/readings", headers=bearer(world.keys["admin"]))
    assert admin.status_code == 200


# -- anonymous reading -----------------------------------------------------------------------------


def test_anonymous_reading_when_switched_on(world: World) -> None:
    with serving(dataclasses.replace(world.config, anonymous_read=True)) as url:
        answer = httpx.get(f"{url}/v1/latest")
        assert answer.status_code == 200
        assert {d["tenant"] for d in answer.json()} == {TENANT_A, TENANT_B}
        device = world.devices[0].device_id
        assert httpx.get(f"{url}/v1/devices/{device}/readings").status_code == 200
        # A wrong key is never quietly treated as no key.
        assert_problem(httpx.get(f"{url}/v1/latest", headers=bearer("ltn_wrong")), 401)


# -- roles -----------------------------------------------------------------------------------------


def role_app() -> FastAPI:
    """A small app with one route per role."""
    app = FastAPI()
    problems.install(app)

    @app.get("/read")
    async def _read(principal: Reader) -> dict[str, str]:
        return {"role": principal.role.value}

    @app.get("/operate")
    async def _operate(principal: Operator) -> dict[str, str]:
        return {"role": principal.role.value}

    @app.get("/administer")
    async def _administer(principal: Admin) -> dict[str, str]:
        return {"role": principal.role.value}

    return app


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("use", "read", "operate", "administer"),
    [
        (None, 200, 401, 401),
        ("viewer_a", 200, 403, 403),
        ("operator_a", 200, 200, 403),
        ("admin", 200, 200, 200),
    ],
)
async def test_roles_are_ordered(
    world: World, use: str | None, read: int, operate: int, administer: int
) -> None:
    app = role_app()
    headers = bearer(world.keys[use]) if use else {}
    with KeyStore(world.config.registry_url) as keys:
        app.state.keys = keys
        app.state.config = dataclasses.replace(world.config, anonymous_read=True)
        app.state.throttle = FailedLogins(100, 1.0)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            got = [
                await client.get(p, headers=headers) for p in ("/read", "/operate", "/administer")
            ]
    assert [r.status_code for r in got] == [read, operate, administer]
    for response in got:
        if response.status_code >= 400:
            assert response.headers["content-type"] == PROBLEM


def test_allowed_tenants() -> None:
    viewer = Principal(Role.VIEWER, frozenset({TENANT_A, "GM0599"}), "k")
    assert viewer.allowed_tenants(None) == sorted([TENANT_A, "GM0599"])
    assert viewer.allowed_tenants(TENANT_A) == [TENANT_A]
    with pytest.raises(Forbidden):
        viewer.allowed_tenants(TENANT_B)
    everyone = Principal(Role.ADMIN, None, "k")
    assert everyone.allowed_tenants(None) is None
    assert everyone.allowed_tenants(TENANT_B) == [TENANT_B]
