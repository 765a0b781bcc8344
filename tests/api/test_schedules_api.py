"""The schedule routes: create, check, change, assign, remove; roles and tenants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api import ApiConfig, create_app
from api.keys import KeyStore, Role
from devices import Device, Registry, Tenant
from devices.scheduler import SchedulerConfig
from timeseries import InfluxConfig

pytestmark = pytest.mark.anyio

LAMP_A = Device("gm0363-lp-1", "GM0363", "lamppost", "Damrak", 52.37, 4.89)
LAMP_A2 = Device("gm0363-lp-2", "GM0363", "lamppost", "Rokin", 52.368, 4.892)
NOISE_A = Device("gm0363-noise-1", "GM0363", "noise", "Dam", 52.373, 4.893)
LAMP_B = Device("gm0344-lp-1", "GM0344", "lamppost", "Oudegracht", 52.09, 5.12)
NIGHT = [
    {"at": "sunset", "level": 100},
    {"at": "23:00", "level": 40},
    {"at": "06:00", "level": 100},
    {"at": "sunrise", "level": 0},
]


@pytest.fixture
async def keys_and_http(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The app on a fresh SQLite registry with two tenants' lamps and keys of each role."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    keys = {}
    with Registry(url) as registry, KeyStore(url) as store:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_tenant(Tenant("GM0344", "Utrecht"))
        registry.add_devices([LAMP_A, LAMP_A2, NOISE_A, LAMP_B])
        for use, role, tenants in (
            ("admin", Role.ADMIN, None),
            ("operator_a", Role.OPERATOR, ["GM0363"]),
            ("operator_b", Role.OPERATOR, ["GM0344"]),
            ("viewer_a", Role.VIEWER, ["GM0363"]),
        ):
            keys[use] = store.create(role, tenants, name=use)[1]
    app = create_app(ApiConfig(url, InfluxConfig("http://[::1]:9")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield keys, client


def _as(keys: dict[str, str], use: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[use]}"}


async def test_an_operator_creates_changes_assigns_and_removes_a_schedule(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    keys, http = keys_and_http
    op = _as(keys, "operator_a")
    made = await http.post("/v1/schedules", json={"name": "Night", "steps": NIGHT}, headers=op)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["tenant"] == "GM0363"  # the key's only tenant
    assert body["steps"] == NIGHT
    assert body["group"] is None
    where = made.headers["Location"]
    assert where == f"/v1/schedules/{body['id']}"
    assigned = await http.put(f"{where}/group", json={"deviceIds": [LAMP_A.device_id]}, headers=op)
    assert assigned.json()["group"] == {"deviceIds": [LAMP_A.device_id]}
    patched = await http.patch(where, json={"name": "Late night"}, headers=op)
    assert patched.json()["name"] == "Late night"
    assert patched.json()["group"] == {"deviceIds": [LAMP_A.device_id]}  # kept
    unassigned = await http.patch(where, json={"group": None}, headers=op)
    assert unassigned.json()["group"] is None
    whole = await http.put(f"{where}/group", json={}, headers=op)
    assert whole.json()["group"] == {}
    listed = await http.get("/v1/schedules", headers=_as(keys, "viewer_a"))
    assert [s["name"] for s in listed.json()["items"]] == ["Late night"]
    assert (await http.delete(where, headers=op)).status_code == 204
    assert (await http.get(where, headers=op)).status_code == 404


async def test_a_bad_schedule_is_400_naming_each_bad_field(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    keys, http = keys_and_http
    bad = await http.post(
        "/v1/schedules",
        json={
            "name": "Bad",
            "steps": [{"at": "noon", "level": 50}, {"at": "25:00", "level": 10}],
        },
        headers=_as(keys, "operator_a"),
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert [p["name"] for p in bad.json()["invalidParams"]] == ["steps[0].at", "steps[1].at"]
    twice = await http.post(
        "/v1/schedules",
        json={"name": "Twice", "steps": [{"at": "sunset+400", "level": 5}] * 2},
        headers=_as(keys, "operator_a"),
    )
    # Both too far from the sun, and the second also repeats the first.
    assert [p["name"] for p in twice.json()["invalidParams"]] == [
        "steps[0].at",
        "steps[1].at",
        "steps[1].at",
    ]
    foreign = await http.post(
        "/v1/schedules",
        json={
            "name": "X",
            "steps": NIGHT,
            "group": {"deviceIds": [LAMP_B.device_id, NOISE_A.device_id]},
        },
        headers=_as(keys, "operator_a"),
    )
    assert foreign.status_code == 400
    (problem,) = foreign.json()["invalidParams"]
    assert problem["name"] == "group.deviceIds"
    assert LAMP_B.device_id in problem["reason"]
    assert NOISE_A.device_id in problem["reason"]
    admin = await http.post(
        "/v1/schedules", json={"name": "X", "steps": NIGHT}, headers=_as(keys, "admin")
    )
    assert [p["name"] for p in admin.json()["invalidParams"]] == ["tenant"]
    unknown = await http.post(
        "/v1/schedules",
        json={"tenant": "GM9999", "name": "X", "steps": NIGHT},
        headers=_as(keys, "admin"),
    )
    assert unknown.status_code == 400
    assert [p["name"] for p in unknown.json()["invalidParams"]] == ["tenant"]


async def test_viewers_read_and_other_tenants_see_nothing(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    keys, http = keys_and_http
    made = await http.post(
        "/v1/schedules",
        json={"tenant": "GM0363", "name": "Night", "steps": NIGHT, "group": {}},
        headers=_as(keys, "admin"),
    )
    where = made.headers["Location"]
    viewer = _as(keys, "viewer_a")
    assert (await http.get(where, headers=viewer)).status_code == 200
    assert (await http.patch(where, json={"name": "x"}, headers=viewer)).status_code == 403
    assert (await http.delete(where, headers=viewer)).status_code == 403
    other = _as(keys, "operator_b")
    assert (await http.get(where, headers=other)).status_code == 404
    assert (await http.patch(where, json={"name": "x"}, headers=other)).status_code == 404
    assert (await http.put(f"{where}/group", json={}, headers=other)).status_code == 404
    assert (await http.delete(where, headers=other)).status_code == 404
    assert (await http.get("/v1/schedules", headers=other)).json()["items"] == []
    refused = await http.post(
        "/v1/schedules",
        json={"tenant": "GM0363", "name": "Mine", "steps": NIGHT},
        headers=other,
    )
    assert refused.status_code == 403


async def test_the_scheduler_in_the_apis_process_sends_the_level_in_force(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url) as registry, KeyStore(url) as store:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_devices([LAMP_A, LAMP_A2])
        key = store.create(Role.OPERATOR, ["GM0363"], name="op")[1]
    config = ApiConfig(
        url,
        InfluxConfig("http://[::1]:9"),
        scheduler=SchedulerConfig("api-scheduler", tick_s=0.1, lease_s=5),
    )
    app = create_app(config)
    headers = {"Authorization": f"Bearer {key}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            # One step at midnight: 25 % is in force whenever this runs.
            made = await http.post(
                "/v1/schedules",
                json={
                    "name": "Quarter",
                    "steps": [{"at": "00:00", "level": 25}],
                    "group": {"deviceIds": [LAMP_A2.device_id]},
                },
                headers=headers,
            )
            assert made.status_code == 201
            schedule_id = made.json()["id"]
            url_a2 = f"/v1/devices/{LAMP_A2.device_id}/commands"
            async with asyncio.timeout(20):
                while True:
                    items = (await http.get(url_a2, headers=headers)).json()["items"]
                    if items:
                        break
                    await asyncio.sleep(0.05)
            (command,) = items
            assert (command["name"], command["args"]) == ("set_dim_level", {"level": 25})
            assert (command["issuedBy"], command["issuedRole"]) == (
                f"schedule:{schedule_id}",
                "scheduler",
            )
            other = await http.get(f"/v1/devices/{LAMP_A.device_id}/commands", headers=headers)
            assert other.json()["items"] == []


async def test_a_lamp_shows_the_schedule_it_follows_and_its_steps_now_and_next(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    keys, http = keys_and_http
    op = _as(keys, "operator_a")
    await http.post("/v1/schedules", json={"name": "All", "steps": NIGHT, "group": {}}, headers=op)
    listed = await http.post(
        "/v1/schedules",
        json={
            "name": "Quarter",
            "steps": [{"at": "00:00", "level": 25}],
            "group": {"deviceIds": [LAMP_A2.device_id]},
        },
        headers=op,
    )
    mine = await http.get(f"/v1/devices/{LAMP_A2.device_id}/schedule", headers=op)
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["schedule"]["id"] == listed.json()["id"]  # the list wins over the tenant
    assert (body["inForce"]["at"], body["inForce"]["level"]) == ("00:00", 25)
    assert body["next"]["at"] == "00:00"
    assert (
        body["inForce"]["moment"]
        < datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        < (body["next"]["moment"])
    )
    tenant_wide = (await http.get(f"/v1/devices/{LAMP_A.device_id}/schedule", headers=op)).json()
    assert tenant_wide["schedule"]["name"] == "All"
    assert tenant_wide["next"]["at"] in {"sunset", "23:00", "06:00", "sunrise"}
    noise = (await http.get(f"/v1/devices/{NOISE_A.device_id}/schedule", headers=op)).json()
    assert noise == {
        "deviceId": NOISE_A.device_id,
        "schedule": None,
        "inForce": None,
        "next": None,
    }
    other = await http.get(
        f"/v1/devices/{LAMP_A.device_id}/schedule", headers=_as(keys, "operator_b")
    )
    assert other.status_code == 404
