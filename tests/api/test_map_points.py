"""/v1/map/points: every device of the caller's tenants as columns for the dashboard's map."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from devices import Registry
from devices.registry import StatusUpdate
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, World, seed_world, serving

COLUMNS = {"statuses", "tenants", "kinds", "ids", "names", "lon", "lat", "tenant", "kind", "status"}


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and keys."""
    return seed_world(influx, tmp_path_factory.mktemp("points"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    with serving(world.config) as url:
        yield url


def _key(world: World, use: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.keys[use]}"}


def test_points_hold_the_callers_tenants_only(api: str, world: World) -> None:
    answer = httpx.get(f"{api}/v1/map/points", headers=_key(world, "viewer_b"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == COLUMNS
    ours = sorted(world.of_tenant(TENANT_B), key=lambda d: d.device_id)
    assert body["ids"] == [d.device_id for d in ours]
    assert body["tenants"] == [TENANT_B]
    assert body["names"] == [d.name for d in ours]
    for i, device in enumerate(ours):
        assert body["lon"][i] == pytest.approx(device.longitude, abs=1e-6)
        assert body["lat"][i] == pytest.approx(device.latitude, abs=1e-6)
        assert body["kinds"][body["kind"][i]] == device.kind
        assert body["tenants"][body["tenant"][i]] == TENANT_B
    everyone = httpx.get(f"{api}/v1/map/points", headers=_key(world, "admin")).json()
    assert set(everyone["ids"]) == {d.device_id for d in world.devices}
    # Another tenant's points: refused, never an empty map that looks like an answer.
    other = httpx.get(f"{api}/v1/map/points?tenant={TENANT_A}", headers=_key(world, "viewer_b"))
    assert other.status_code == 403
    assert other.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(f"{api}/v1/map/points").status_code == 401
    bad = httpx.get(f"{api}/v1/map/points?tenant=x;y", headers=_key(world, "admin"))
    assert bad.status_code == 400


def test_points_answer_304_until_a_status_changes(api: str, world: World) -> None:
    headers = _key(world, "viewer_a")
    first = httpx.get(f"{api}/v1/map/points", headers=headers)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    same = httpx.get(f"{api}/v1/map/points", headers={**headers, "If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    # A device's last will says offline: its status, hence the answer, changes.
    device = sorted(world.of_tenant(TENANT_A), key=lambda d: d.device_id)[0]
    with Registry(world.config.registry_url) as registry:
        now = time.time_ns()
        will = StatusUpdate(device.device_id, TENANT_A, "offline", now)
        registry.record_states([], [will], now_ns=now)
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.get(f"{api}/v1/map/points", headers={**headers, "If-None-Match": etag})
        if answer.status_code == 200:
            break
        assert time.monotonic() < deadline, "the points did not change"
        time.sleep(0.5)
    body = answer.json()
    i = body["ids"].index(device.device_id)
    assert body["statuses"][body["status"][i]] == "offline"
