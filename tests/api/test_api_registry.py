"""The registry routes: /v1/tenants and creating, changing, retiring and importing devices."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api import ApiConfig, create_app
from api.keys import KeyStore, Role
from devices import Registry
from devices.provisioning import verify_password
from timeseries import InfluxConfig

pytestmark = pytest.mark.anyio

LAMPPOST = {
    "deviceId": "gm0363-lp-00001",
    "tenant": "GM0363",
    "kind": "lamppost",
    "name": "Damrak 1",
    "location": {"type": "Point", "coordinates": [4.8963, 52.3752]},
    "ipv6Address": "2001:db8:363::1",
    "owner": "Gemeente Amsterdam",
    "observationGoal": "Street lighting",
    "legalGround": "Gemeentewet art. 108",
    "personalData": False,
}


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process with its lifespan, on a fresh SQLite registry; with two tenants."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url), KeyStore(url) as keys:  # the registry's tables first, then the keys'
        _key, admin = keys.create(Role.ADMIN, name="test admin")
    # Nothing here reads readings, so InfluxDB is never asked; the address only has to parse.
    app = create_app(ApiConfig(url, InfluxConfig("http://[::1]:9")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            for tenant in (
                {"code": "GM0363", "name": "Amsterdam", "ipv6Prefixes": ["2001:db8:363::/48"]},
                {"code": "GM0344", "name": "Utrecht", "ipv6Prefixes": ["2001:db8:344::/48"]},
            ):
                response = await client.post("/v1/tenants", json=tenant)
                assert response.status_code == 201, response.text
            yield client


async def test_tenants_are_created_listed_and_read(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/tenants?limit=1")
    assert response.status_code == 200
    assert [t["code"] for t in response.json()["items"]] == ["GM0344"]
    assert 'rel="next"' in response.headers["Link"]
    second = await http.get(f"/v1/tenants?limit=1&cursor={response.json()['next']}")
    assert [t["code"] for t in second.json()["items"]] == ["GM0363"]
    one = await http.get("/v1/tenants/GM0363")
    assert one.json() == {
        "code": "GM0363",
        "name": "Amsterdam",
        "ipv6Prefixes": ["2001:db8:363::/48"],
    }
    assert (await http.get("/v1/tenants/GM0001")).status_code == 404
    again = await http.post("/v1/tenants", json={"code": "GM0363", "name": "A"})
    assert again.status_code == 409
    bad = await http.post(
        "/v1/tenants", json={"code": "GM 1", "name": "", "ipv6Prefixes": ["2001:db8::1/32"]}
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    names = [p["name"] for p in bad.json()["invalidParams"]]
    assert names == ["code", "name", "ipv6Prefixes"]


async def test_a_device_is_created_with_a_broker_login_shown_once(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    response = await http.post("/v1/devices", json=LAMPPOST)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"].endswith("/v1/devices/gm0363-lp-00001")
    assert body["location"] == {"type": "Point", "coordinates": [4.8963, 52.3752]}
    assert body["legalGround"] == "Gemeentewet art. 108"
    login = body["brokerLogin"]
    assert login["username"] == "GM0363/gm0363-lp-00001"
    with Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}") as registry:
        (stored,) = registry.broker_logins()
    assert verify_password(login["password"], stored.password_hash)
    read = (await http.get("/v1/devices/gm0363-lp-00001")).json()
    assert "brokerLogin" not in read
    assert read["ipv6Address"] == "2001:db8:363::1"
    assert (await http.post("/v1/devices", json=LAMPPOST)).status_code == 409


async def test_bad_devices_get_every_problem_and_change_nothing(http: httpx.AsyncClient) -> None:
    bad = {
        **LAMPPOST,
        "kind": "streetlight",
        "ipv6Address": "2001:db8:344::1",
        "location": {"type": "Point", "coordinates": [4.9, 95.0]},
    }
    response = await http.post("/v1/devices", json=bad)
    assert response.status_code == 400
    problems = response.json()["invalidParams"]
    assert [p["name"] for p in problems] == ["kind", "latitude", "ipv6Address"]
    assert "2001:db8:363::/48" in problems[2]["reason"]
    typo = await http.post("/v1/devices", json={**LAMPPOST, "ipv6Adress": "2001:db8:363::1"})
    assert typo.status_code == 400
    assert (await http.get("/v1/devices")).json()["items"] == []


async def test_problems_are_named_as_the_api_spells_the_properties(
    http: httpx.AsyncClient,
) -> None:
    bad = {
        **LAMPPOST,
        "deviceId": "Lamp_1",
        "extraKinds": ["radar"],
        "intervalSeconds": 0,
        "installedOn": "2030-01-01",
        "activeUntil": "2029-01-01",
    }
    response = await http.post("/v1/devices", json=bad)
    assert response.status_code == 400
    assert [p["name"] for p in response.json()["invalidParams"]] == [
        "deviceId",
        "extraKinds",
        "intervalSeconds",
        "activeUntil",
    ]
    assert (await http.post("/v1/devices", json=LAMPPOST)).status_code == 201
    taken = {**LAMPPOST, "deviceId": "gm0363-lp-00002"}  # the same IPv6 address
    csv = "deviceId,tenant,kind,name,latitude,longitude,ipv6Address\n" + (
        "gm0363-lp-00001,GM0363,lamppost,Again,52.37,4.89,\n"
        "gm0363-lp-00003,GM0363,lamppost,Other,52.37,4.89,2001:db8:363::1\n"
    )
    for response in (
        await http.post("/v1/devices", json=taken),
        await http.post("/v1/device-imports", content=csv, headers={"Content-Type": "text/csv"}),
    ):
        assert response.status_code == 400, response.text
        names = {p["name"] for p in response.json()["invalidParams"]}
        assert names <= {"deviceId", "ipv6Address"}, names
        assert "ipv6Address" in names


async def test_patch_changes_only_what_is_given(http: httpx.AsyncClient) -> None:
    await http.post("/v1/devices", json=LAMPPOST)
    response = await http.patch(
        "/v1/devices/gm0363-lp-00001",
        json={"name": "Damrak 2", "firmware": "2.0", "owner": None},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["firmware"], body["owner"]) == ("Damrak 2", "2.0", None)
    assert body["legalGround"] == "Gemeentewet art. 108"
    bad = await http.patch(
        "/v1/devices/gm0363-lp-00001", json={"ipv6Address": "2001:db8:344::1", "name": None}
    )
    assert bad.status_code == 400
    outside = await http.patch(
        "/v1/devices/gm0363-lp-00001", json={"ipv6Address": "2001:db8:344::1"}
    )
    assert outside.status_code == 400
    assert "2001:db8:363::/48" in outside.json()["detail"]
    moved = await http.patch("/v1/devices/gm0363-lp-00001", json={"tenant": "GM0344"})
    assert moved.status_code == 400
    assert (await http.patch("/v1/devices/nope", json={"name": "x"})).status_code == 404
    assert (await http.get("/v1/devices/gm0363-lp-00001")).json()["name"] == "Damrak 2"


async def test_retire_and_the_list_filters(http: httpx.AsyncClient) -> None:
    for device_id, tenant, kind, lon, lat in (
        ("a-1", "GM0363", "lamppost", 4.89, 52.37),
        ("b-1", "GM0363", "noise", 4.90, 52.36),
        ("c-1", "GM0344", "noise", 5.12, 52.09),
    ):
        created = await http.post(
            "/v1/devices",
            json={
                "deviceId": device_id,
                "tenant": tenant,
                "kind": kind,
                "name": device_id,
                "location": {"type": "Point", "coordinates": [lon, lat]},
            },
        )
        assert created.status_code == 201, created.text
    retired = await http.post("/v1/devices/b-1/retire", json={"retiredAt": "2026-01-01T00:00:00Z"})
    assert retired.status_code == 200
    assert retired.json()["retiredAt"] == "2026-01-01T00:00:00Z"
    assert (await http.post("/v1/devices/b-1/retire")).json()["retiredAt"] == (
        "2026-01-01T00:00:00Z"
    )
    assert (await http.post("/v1/devices/b-1/broker-login")).status_code == 400

    async def ids(query: str) -> list[str]:
        response = await http.get(f"/v1/devices?{query}")
        assert response.status_code == 200, response.text
        return [d["deviceId"] for d in response.json()["items"]]

    assert await ids("tenant=GM0363") == ["a-1", "b-1"]
    assert await ids("kind=noise") == ["b-1", "c-1"]
    assert await ids("status=active") == ["a-1", "c-1"]
    assert await ids("status=retired") == ["b-1"]
    assert await ids("bbox=4.7,52.2,5.0,52.45") == ["a-1", "b-1"]
    assert await ids("bbox=4.7,52.2,5.0,52.45&status=active&kind=lamppost") == ["a-1"]
    bad = await http.get("/v1/devices?bbox=4.7,52.2,5.0")
    assert bad.status_code == 400
    assert bad.json()["invalidParams"][0]["name"] == "bbox"
    assert (await http.get("/v1/devices?status=gone")).status_code == 400
    first = await http.get("/v1/devices?limit=2")
    assert first.json()["next"] is not None
    link = first.headers["Link"]
    rest = await http.get(link[1 : link.index(">")])
    assert [d["deviceId"] for d in rest.json()["items"]] == ["c-1"]
    geo = await http.get("/v1/devices?tenant=GM0344", headers={"Accept": "application/geo+json"})
    assert geo.headers["content-type"].startswith("application/geo+json")
    assert [f["id"] for f in geo.json()["features"]] == ["c-1"]
    table = await http.get("/v1/devices?status=retired", headers={"Accept": "text/csv"})
    assert table.text.splitlines()[1].startswith("b-1,GM0363,noise,")


async def test_import_through_the_api_is_all_or_nothing(http: httpx.AsyncClient) -> None:
    header = "deviceId,tenant,kind,name,latitude,longitude"
    bad = f"{header}\nok-1,GM0363,noise,a,52.3,4.9\nbad-2,GM0363,radar,b,52.3,4.9\n"
    response = await http.post(
        "/v1/device-imports", content=bad, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 400
    assert response.json()["invalidParams"][0]["reason"].startswith("line 3: unknown device kind")
    assert (await http.get("/v1/devices")).json()["items"] == []
    good = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [4.9, 52.3]},
                "properties": {
                    "deviceId": "ok-1",
                    "tenant": "GM0363",
                    "kind": "noise",
                    "name": "a",
                },
            }
        ],
    }
    response = await http.post(
        "/v1/device-imports",
        content=json.dumps(good),
        headers={"Content-Type": "application/geo+json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 1
    assert response.json()["brokerLogins"][0]["username"] == "GM0363/ok-1"
    wrong_type = await http.post(
        "/v1/device-imports", content="x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415


async def test_changing_devices_needs_an_operator_of_that_tenant(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with KeyStore(url) as keys:
        _k, utrecht_operator = keys.create(Role.OPERATOR, ["GM0344"])
        _k, amsterdam_viewer = keys.create(Role.VIEWER, ["GM0363"])
    anonymous = await http.post("/v1/devices", json=LAMPPOST, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    viewer = {"Authorization": f"Bearer {amsterdam_viewer}"}
    assert (await http.post("/v1/devices", json=LAMPPOST, headers=viewer)).status_code == 403
    other = {"Authorization": f"Bearer {utrecht_operator}"}
    assert (await http.post("/v1/devices", json=LAMPPOST, headers=other)).status_code == 403
    created = await http.post("/v1/devices", json=LAMPPOST)
    assert created.status_code == 201
    device = f"/v1/devices/{LAMPPOST['deviceId']}"
    # Another tenant's operator neither sees nor changes it: 404, as if it did not exist.
    assert (await http.get(device, headers=other)).status_code == 404
    assert (await http.post(f"{device}/retire", headers=other)).status_code == 404
    assert (await http.get(device, headers=viewer)).status_code == 200
    listed = await http.get("/v1/devices", headers=other)
    assert listed.json()["items"] == []
    tenants = await http.get("/v1/tenants", headers=other)
    assert [t["code"] for t in tenants.json()["items"]] == ["GM0344"]
