"""Open data: a caller without a key reads exactly the published, non-personal devices, on every
read route, with their licence and attribution; personal data can never be published."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lantaarn.localstack import Influx
from tests.api.liveapi import World, seed_world, serving

PROBLEM = "application/problem+json"
CC_BY = "https://creativecommons.org/licenses/by/4.0/"
CC0 = "https://creativecommons.org/publicdomain/zero/1.0/"
# Amsterdam publishes its parking sensors (one of them flagged personal below) and one weather
# station; Utrecht its water level gauge, under CC0.
OPEN = {"gm0363-pk-00004", "gm0363-wx-00006", "gm0344-wl-00007"}
FLAGGED = "gm0363-pk-00008"


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, keys; anonymous reading off."""
    return seed_world(influx, tmp_path_factory.mktemp("opendata"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    """The live API's base URL."""
    with serving(world.config) as url:
        yield url


def _key(world: World, use: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.keys[use]}"}


@pytest.fixture(scope="module")
def published(api: str, world: World) -> None:
    """The publications of both tenants, made through the API."""
    admin = _key(world, "admin")
    flag = httpx.patch(
        f"{api}/v1/devices/{FLAGGED}",
        content=b'{"personalData": true}',
        headers={**admin, "Content-Type": "application/merge-patch+json"},
    )
    assert flag.status_code == 200, flag.text
    amsterdam = {
        "licence": "CC-BY-4.0",
        "attribution": "Gemeente Amsterdam",
        "kinds": ["parking"],
        "devices": ["gm0363-wx-00006"],
    }
    answer = httpx.put(
        f"{api}/v1/tenants/GM0363/open-data", json=amsterdam, headers=_key(world, "operator_a")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["licenceUrl"] == CC_BY
    utrecht = {"licence": "CC0-1.0", "attribution": "Gemeente Utrecht", "kinds": ["water_level"]}
    answer = httpx.put(f"{api}/v1/tenants/GM0344/open-data", json=utrecht, headers=admin)
    assert answer.status_code == 200, answer.text


def _anonymous(api: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(api + path, params=params or None)


def test_a_caller_without_a_key_lists_exactly_the_open_devices(
    api: str, world: World, published: None
) -> None:
    answer = _anonymous(api, "/v1/devices")
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert {i["deviceId"] for i in items} == OPEN
    for item in items:
        assert item["ipv6Address"] is None  # the public learns no device's address
        terms = item["openData"]
        if item["tenant"] == "GM0363":
            assert terms == {
                "licence": "CC-BY-4.0",
                "licenceUrl": CC_BY,
                "attribution": "Gemeente Amsterdam",
            }
        else:
            assert terms["licenceUrl"] == CC0
    assert 'rel="license"' in answer.headers["Link"]
    assert "Gemeente%20Amsterdam" in answer.headers["Link"]
    utrecht = _anonymous(api, "/v1/devices", tenant="GM0344").json()["items"]
    assert {i["deviceId"] for i in utrecht} == {"gm0344-wl-00007"}
    parking = _anonymous(api, "/v1/devices", kind="parking").json()["items"]
    assert {i["deviceId"] for i in parking} == {"gm0363-pk-00004"}
    paged = _anonymous(api, "/v1/devices", limit=2)
    assert len(paged.json()["items"]) == 2
    after = _anonymous(api, "/v1/devices", limit=2, cursor=paged.json()["next"]).json()["items"]
    assert {i["deviceId"] for i in paged.json()["items"] + after} == OPEN
    listed = _anonymous(api, "/v1/devices", bbox="-180,-90,180,90").json()["items"]
    assert {i["deviceId"] for i in listed} == OPEN
    as_csv = httpx.get(f"{api}/v1/devices", headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r[next(iter(r))] for r in rows} == OPEN
    geo = httpx.get(f"{api}/v1/devices", headers={"Accept": "application/geo+json"}).json()
    assert {f["properties"].get("deviceId") or f.get("id") for f in geo["features"]} == OPEN
    # A key holder still sees its own tenant, not the open data of others.
    viewer = httpx.get(f"{api}/v1/devices", headers=_key(world, "viewer_b")).json()["items"]
    assert {i["deviceId"] for i in viewer} == {d.device_id for d in world.of_tenant("GM0344")}


def test_every_read_route_answers_open_devices_and_refuses_the_rest(
    api: str, world: World, published: None
) -> None:
    for device in world.devices:
        path = f"/v1/devices/{device.device_id}"
        kind_metric = {
            "parking": "occupied",
            "weather": "temperature",
            "water_level": "level",
            "lamppost": "dim_level",
            "noise": "laeq",
            "air_quality": "pm25",
            "traffic_counter": "cars",
            "waste_bin": "fill_level",
        }[device.kind]
        answers = [
            _anonymous(api, path),
            _anonymous(api, f"{path}/readings"),
            httpx.get(f"{api}{path}/readings", headers={"Accept": "text/csv"}),
            _anonymous(api, f"{path}/aggregates", metric=kind_metric, interval="1h"),
        ]
        for answer in answers:
            if device.device_id in OPEN:
                assert answer.status_code == 200, (device.device_id, answer.text)
                assert 'rel="license"' in answer.headers["Link"]
            else:
                assert answer.status_code == 401, (device.device_id, answer.text)
                assert answer.headers["content-type"] == PROBLEM
                assert "not open data" in answer.json()["detail"]
        if device.device_id in OPEN:
            assert answers[0].json()["openData"]["attribution"].startswith("Gemeente")
            assert len(answers[1].json()["items"]) == 5
            assert answers[2].text.count("\n") == 6  # header and five readings
    # A device that does not exist is answered as a closed one: nothing leaks.
    missing = _anonymous(api, "/v1/devices/gm0363-nope/readings")
    assert missing.status_code == 401


def test_fleet_answers_cover_the_open_devices_only(api: str, world: World, published: None) -> None:
    latest = _anonymous(api, "/v1/latest")
    assert latest.status_code == 200
    assert {i["deviceId"] for i in latest.json()} == OPEN
    assert all(i["openData"]["licence"] in {"CC0-1.0", "CC-BY-4.0"} for i in latest.json())
    assert {i["deviceId"] for i in _anonymous(api, "/v1/latest", tenant="GM0344").json()} == {
        "gm0344-wl-00007"
    }
    assert _anonymous(api, "/v1/latest", kind="lamppost").json() == []
    geo = httpx.get(f"{api}/v1/latest", headers={"Accept": "application/geo+json"})
    assert {f["id"] for f in geo.json()["features"]} == OPEN
    assert CC_BY in geo.headers["Link"]
    day = {"interval": "1h", "start": _ago(hours=3), "end": _ago(hours=-1)}
    parking = _anonymous(api, "/v1/aggregates", kind="parking", metric="occupied", **day).json()
    assert parking["devices"] == 1  # of three parking sensors: one closed, one flagged personal
    assert sum(i["count"] for i in parking["items"]) == 5
    lamps = _anonymous(api, "/v1/aggregates", kind="lamppost", metric="dim_level", **day).json()
    assert lamps["devices"] == 0
    assert lamps["items"] == []
    # Routes that serve no open data still need a key.
    for path in ("/v1/rejections", "/v1/tenants", "/v1/fleet/activity"):
        assert _anonymous(api, path).status_code == 401, path


def _ago(*, hours: float) -> str:
    moment = datetime.now(UTC) - timedelta(hours=hours)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_the_catalogue_lists_each_open_dataset_with_its_licence(api: str, published: None) -> None:
    answer = _anonymous(api, "/v1/catalog")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/ld+json"
    catalog = answer.json()
    assert catalog["@type"] == "dcat:Catalog"
    assert catalog["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    datasets = {d["dct:identifier"]: d for d in catalog["dcat:dataset"]}
    assert set(datasets) == {
        "lantaarn:GM0363:parking",
        "lantaarn:GM0363:weather",
        "lantaarn:GM0344:water_level",
    }
    parking = datasets["lantaarn:GM0363:parking"]
    assert parking["dct:license"] == {"@id": CC_BY}
    assert parking["dct:publisher"]["foaf:name"] == "Gemeente Amsterdam"
    downloads = [d for d in parking["dcat:distribution"] if "dcat:downloadURL" in d]
    assert len(downloads) == 7
    assert all(d["dcat:downloadURL"]["@id"].endswith(".csv") for d in downloads)
    assert datasets["lantaarn:GM0344:water_level"]["dct:license"] == {"@id": CC0}


def test_a_day_of_a_kind_downloads_as_csv(api: str, published: None) -> None:
    now = datetime.now(UTC)
    rows = []
    # The seeded readings are of the last minutes: around midnight some are of yesterday.
    for day in {now.date(), (now - timedelta(minutes=10)).date()}:
        answer = _anonymous(api, f"/v1/open-data/GM0363/parking/{day.isoformat()}.csv")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        assert CC_BY in answer.headers["Link"]
        rows += list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 5
    assert {r["device_id"] for r in rows} == {"gm0363-pk-00004"}
    assert set(rows[0]) == {"ts", "device_id", "latitude", "longitude", "occupied"}
    for path, status in (
        ("/v1/open-data/GM0363/lamppost/2026-01-01.csv", 404),
        ("/v1/open-data/GM0363/parking/2026-13-01.csv", 400),
        ("/v1/open-data/GM0363/parking/tomorrow.csv", 400),
        ("/v1/open-data/GM9999/parking/2026-01-01.csv", 404),
    ):
        answer = _anonymous(api, path)
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["content-type"] == PROBLEM


def test_personal_data_can_never_be_published(api: str, world: World, published: None) -> None:
    admin = _key(world, "admin")
    body = {
        "licence": "CC0-1.0",
        "attribution": "Gemeente Utrecht",
        "kinds": ["traffic_counter", "water_level"],
    }
    refused = httpx.put(f"{api}/v1/tenants/GM0344/open-data", json=body, headers=admin)
    assert refused.status_code == 400
    assert refused.headers["content-type"] == PROBLEM
    assert "personal data" in refused.text
    flagged = {"licence": "CC-BY-4.0", "attribution": "Amsterdam", "devices": [FLAGGED]}
    refused = httpx.put(f"{api}/v1/tenants/GM0363/open-data", json=flagged, headers=admin)
    assert refused.status_code == 400
    assert FLAGGED in refused.text
    other = {**flagged, "devices": ["gm0344-wl-00007"]}  # another tenant's device
    assert (
        httpx.put(f"{api}/v1/tenants/GM0363/open-data", json=other, headers=admin).status_code
        == 400
    )
    bad_licence = {"licence": "MIT", "attribution": "Amsterdam"}
    assert (
        httpx.put(f"{api}/v1/tenants/GM0363/open-data", json=bad_licence, headers=admin)
    ).status_code == 400
    # Nothing changed: the publications stand as they were.
    kept = httpx.get(f"{api}/v1/tenants/GM0344/open-data", headers=admin).json()
    assert kept["kinds"] == ["water_level"]
    kinds = {k["name"]: k for k in httpx.get(f"{api}/v1/device-kinds", headers=admin).json()}
    assert kinds["traffic_counter"]["personalData"] is True
    assert kinds["water_level"]["personalData"] is False


def test_only_the_tenants_operators_manage_its_publication(
    api: str, world: World, published: None
) -> None:
    url = f"{api}/v1/tenants/GM0363/open-data"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=_key(world, "viewer_a")).status_code == 403
    assert httpx.get(url, headers=_key(world, "operator_a")).status_code == 200
    other = f"{api}/v1/tenants/GM0344/open-data"
    body = {"licence": "CC0-1.0", "attribution": "Not Utrecht"}
    assert httpx.put(other, json=body, headers=_key(world, "operator_a")).status_code == 403
    assert httpx.delete(other, headers=_key(world, "operator_a")).status_code == 403


def test_withdrawing_closes_the_data_again(api: str, world: World, published: None) -> None:
    admin = _key(world, "admin")
    utrecht = f"{api}/v1/tenants/GM0344/open-data"
    kept = httpx.get(utrecht, headers=admin).json()
    assert httpx.delete(utrecht, headers=admin).status_code == 204
    try:
        assert httpx.get(utrecht, headers=admin).status_code == 404
        assert httpx.delete(utrecht, headers=admin).status_code == 404
        listed = {i["deviceId"] for i in _anonymous(api, "/v1/devices").json()["items"]}
        assert listed == OPEN - {"gm0344-wl-00007"}
        assert _anonymous(api, "/v1/devices/gm0344-wl-00007").status_code == 401
    finally:
        again = {k: kept[k] for k in ("licence", "attribution", "kinds", "devices")}
        assert httpx.put(utrecht, json=again, headers=admin).status_code == 200
