"""The SensorThings conformance classes `/sta/v1.1` declares, checked against the live API with
a real InfluxDB and registry: data model, resource paths, request data (query options); plus
rollup Datastreams, tenancy, and the 400/501 answers for what is malformed or not implemented."""

from __future__ import annotations

import dataclasses
import gzip
import statistics
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isal import igzip

from api.sta import CONFORMANCE
from api.timefmt import format_ns
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, serving
from tests.api.sta_world import STEP_NS, StaWorld, day_value, sta_world

HOUR_NS = 3600 * 10**9
SETS = (
    "Things",
    "Locations",
    "HistoricalLocations",
    "Sensors",
    "ObservedProperties",
    "Datastreams",
    "Observations",
    "FeaturesOfInterest",
)
# STA 1.1 section 8.2: mandatory properties and navigation properties of each entity type.
REQUIRED = {
    "Things": ({"name", "description"}, {"Locations", "HistoricalLocations", "Datastreams"}),
    "Locations": ({"name", "description", "encodingType", "location"},
                  {"Things", "HistoricalLocations"}),
    "HistoricalLocations": ({"time"}, {"Thing", "Locations"}),
    "Sensors": ({"name", "description", "encodingType", "metadata"}, {"Datastreams"}),
    "ObservedProperties": ({"name", "definition", "description"}, {"Datastreams"}),
    "Datastreams": ({"name", "description", "unitOfMeasurement", "observationType"},
                    {"Thing", "Sensor", "ObservedProperty", "Observations"}),
    "Observations": ({"phenomenonTime", "result", "resultTime"},
                     {"Datastream", "FeatureOfInterest"}),
    "FeaturesOfInterest": ({"name", "description", "encodingType", "feature"}, {"Observations"}),
}  # fmt: skip


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaWorld]:
    with sta_world(influx, tmp_path_factory.mktemp("sta")) as running:
        yield running


@pytest.fixture(scope="module")
def admin(world: StaWorld) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{world.url}/sta/v1.1", headers=world.headers("admin")) as c:
        yield c


@pytest.fixture(scope="module")
def viewer_b(world: StaWorld) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{world.url}/sta/v1.1", headers=world.headers("viewer_b")
    ) as client:
        yield client


def _ok(client: httpx.Client, path: str, **params: str) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _day(world: StaWorld, hour: int, minutes: int = 0) -> str:
    return format_ns(world.day_start_ns + hour * HOUR_NS + minutes * STEP_NS)


# ---------------------------------------------------------------------------- service document


def test_service_document_lists_the_sets_and_only_implemented_conformance(
    admin: httpx.Client,
) -> None:
    body = _ok(admin, "")
    assert [entry["name"] for entry in body["value"]] == list(SETS)
    for entry in body["value"]:
        assert entry["url"].endswith(f"/sta/v1.1/{entry['name']}")
    conformance = body["serverSettings"]["conformance"]
    assert conformance == list(CONFORMANCE)
    # Writing, batches, data arrays and MQTT are not implemented, so not declared.
    assert not [c for c in conformance if "create-update-delete" in c or "mqtt" in c.lower()]
    assert not [c for c in conformance if "batch" in c or "data-array" in c]


# ---------------------------------------------------------------------------------- data model


@pytest.mark.parametrize("entity_set", SETS)
def test_data_model_every_set_has_its_mandatory_properties_and_links(
    admin: httpx.Client, world: StaWorld, entity_set: str
) -> None:
    params = {"$top": "3"}
    if entity_set == "Observations":
        params["$filter"] = f"phenomenonTime lt {_day(world, 1)}"
    body = _ok(admin, f"/{entity_set}", **params)
    assert body["value"], entity_set
    properties, navigation = REQUIRED[entity_set]
    for item in body["value"]:
        assert properties <= set(item), (entity_set, item)
        assert isinstance(item["@iot.id"], str)
        for name in navigation:
            assert item[f"{name}@iot.navigationLink"] == f"{item['@iot.selfLink']}/{name}"
        # The self link answers the same entity.
        again = httpx.get(item["@iot.selfLink"], headers=admin.headers)
        assert again.status_code == 200, again.text
        assert again.json()["@iot.id"] == item["@iot.id"]


def test_datastreams_carry_ucum_units_and_their_time_and_area_from_the_data(
    admin: httpx.Client, world: StaWorld
) -> None:
    stream = _ok(admin, f"/Datastreams('{world.device.device_id}:temperature')")
    assert stream["unitOfMeasurement"]["symbol"] == "Cel"
    assert stream["unitOfMeasurement"]["definition"].endswith("#Cel")
    start, _, _end = stream["phenomenonTime"].partition("/")
    assert start == format_ns(world.day_start_ns)
    assert stream["observedArea"] == {
        "type": "Point",
        "coordinates": [world.device.longitude, world.device.latitude],
    }
    prop = _ok(admin, "/ObservedProperties('temperature')")
    assert prop["definition"] == "urn:lantaarn:metric:temperature"
    sensor = _ok(admin, "/Sensors('weather')")
    assert {m["name"] for m in sensor["metadata"]["metrics"]} >= {"temperature", "rain"}


# ------------------------------------------------------------------------------- resource paths


def test_resource_paths_entities_properties_navigation_and_refs(
    admin: httpx.Client, world: StaWorld
) -> None:
    device_id = world.device.device_id
    stream_id = f"{device_id}:temperature"
    assert _ok(admin, f"/Things('{device_id}')/name") == {"name": world.device.name}
    value = admin.get(f"/Things('{device_id}')/name/$value")
    assert value.status_code == 200
    assert value.text == world.device.name
    assert _ok(admin, f"/Datastreams('{stream_id}')/Thing")["@iot.id"] == device_id
    assert _ok(admin, f"/Datastreams('{stream_id}')/Sensor")["@iot.id"] == "weather"
    assert _ok(admin, f"/Datastreams('{stream_id}')/ObservedProperty")["@iot.id"] == "temperature"
    streams = _ok(admin, f"/Things('{device_id}')/Datastreams", **{"$top": "1000"})["value"]
    assert stream_id in {s["@iot.id"] for s in streams}
    assert _ok(admin, f"/Things('{device_id}')/Datastreams('{stream_id}')")["@iot.id"] == stream_id
    assert _ok(admin, f"/Things('{device_id}')/Locations")["value"][0]["@iot.id"] == device_id
    located = _ok(admin, f"/Locations('{device_id}')/Things/$ref")
    assert located["value"] == [{"@iot.selfLink": f"{world.url}/sta/v1.1/Things('{device_id}')"}]
    first = _ok(admin, f"/Datastreams('{stream_id}')/Observations", **{"$top": "1"})["value"][0]
    assert first["phenomenonTime"] == format_ns(world.day_start_ns)
    assert _ok(admin, f"/Observations('{first['@iot.id']}')/Datastream")["@iot.id"] == stream_id
    foi = _ok(admin, f"/Observations('{first['@iot.id']}')/FeatureOfInterest")
    assert foi["feature"]["coordinates"] == [world.device.longitude, world.device.latitude]
    for missing in (
        "/Things('no-such-device')",
        f"/Datastreams('{device_id}:pm25')",  # a weather station measures no PM2.5
        f"/Things('{device_id}')/Datastreams('other:temperature')",
        f"/Observations('{stream_id}:1')",
        "/Nonsense",
    ):
        assert admin.get(missing).status_code == 404, missing


# -------------------------------------------------------------------------------- request data


def test_top_skip_count_and_next_links_cover_everything_once(
    admin: httpx.Client, world: StaWorld
) -> None:
    everything = _ok(admin, "/Datastreams", **{"$top": "10000", "$count": "true"})
    assert everything["@iot.count"] == len(everything["value"]) > 20
    assert "@iot.nextLink" not in everything
    seen: list[str] = []
    link: str | None = f"{world.url}/sta/v1.1/Datastreams?$top=7&$count=true"
    while link:
        page = httpx.get(link, headers=admin.headers).json()
        assert page["@iot.count"] == everything["@iot.count"]
        seen.extend(item["@iot.id"] for item in page["value"])
        link = page.get("@iot.nextLink")
    assert seen == [item["@iot.id"] for item in everything["value"]]
    assert _ok(admin, "/Things", **{"$top": "0", "$count": "true"})["value"] == []
    # More than a page may hold is served a page at a time, not refused.
    huge = _ok(admin, "/Datastreams", **{"$top": "1000000"})
    assert [i["@iot.id"] for i in huge["value"]] == [i["@iot.id"] for i in everything["value"]]
    # Without a filter the page is cut before entities are built: the same order either way.
    kept = _ok(admin, "/Datastreams", **{"$top": "10000", "$filter": "true"})
    assert [i["@iot.id"] for i in kept["value"]] == [i["@iot.id"] for i in everything["value"]]


def test_orderby_select_and_nested_expand(admin: httpx.Client, world: StaWorld) -> None:
    things = _ok(admin, "/Things", **{"$orderby": "properties/kind desc,name", "$top": "100"})
    keys = [(t["properties"]["kind"], t["name"]) for t in things["value"]]
    expected = sorted(keys, key=lambda k: k[1])
    expected.sort(key=lambda k: k[0], reverse=True)
    assert keys == expected
    picked = _ok(admin, "/Things", **{"$select": "name,@iot.id", "$top": "2"})["value"]
    assert all(set(t) == {"name", "@iot.id"} for t in picked)
    device_id = world.device.device_id
    nested = _ok(
        admin,
        f"/Things('{device_id}')",
        **{
            "$select": "name,Datastreams",
            "$expand": "Datastreams($filter=endswith(@iot.id, ':temperature');"
            "$expand=Observations($top=2;$orderby=phenomenonTime desc;$select=result),"
            "ObservedProperty($select=name)),Locations",
        },
    )
    assert set(nested) >= {"name", "Datastreams", "Locations"}
    [stream] = nested["Datastreams"]
    assert stream["ObservedProperty"] == {"name": "Temperature"}
    assert len(stream["Observations"]) == 2
    assert all(set(o) == {"result"} for o in stream["Observations"])
    assert "Observations@iot.nextLink" in stream
    assert nested["Locations"][0]["location"]["type"] == "Point"
    shorthand = _ok(admin, f"/Things('{device_id}')", **{"$expand": "Datastreams/Sensor"})
    assert all(s["Sensor"]["@iot.id"] == "weather" for s in shorthand["Datastreams"])


@pytest.mark.parametrize(
    ("expression", "wanted"),
    [
        ("properties/tenant eq 'GM0344'", lambda t: t["properties"]["tenant"] == "GM0344"),
        ("properties/tenant ne 'GM0344' and properties/kind eq 'parking'",
         lambda t: t["properties"]["tenant"] != "GM0344" and t["properties"]["kind"] == "parking"),
        ("properties/kind eq 'noise' or not (properties/kind lt 'w')",
         lambda t: t["properties"]["kind"] == "noise" or t["properties"]["kind"] >= "w"),
        ("properties/reportingIntervalS mul 2 ge 600",
         lambda t: t["properties"].get("reportingIntervalS", 0) * 2 >= 600),
        ("properties/reportingIntervalS div 60 sub 1 mod 2 eq 0",
         lambda t: "reportingIntervalS" in t["properties"]
         and (t["properties"]["reportingIntervalS"] / 60 - 1 % 2) == 0),
        ("substringof('Amsterdam', name)", lambda t: "Amsterdam" in t["name"]),
        ("startswith(@iot.id, 'gm0344-')", lambda t: t["@iot.id"].startswith("gm0344-")),
        ("endswith(tolower(name), 'utrecht')", lambda t: t["name"].lower().endswith("utrecht")),
        ("length(name) gt 20", lambda t: len(t["name"]) > 20),
        ("indexof(name, ' ') eq 7", lambda t: t["name"].find(" ") == 7),
        ("toupper(substring(@iot.id, 0, 6)) eq 'GM0363'", lambda t: t["@iot.id"][:6] == "gm0363"),
        ("concat(properties/kind, '!') eq 'weather!'",
         lambda t: t["properties"]["kind"] == "weather"),
        ("geo.intersects(Locations/location, geography'POLYGON((4.7 52.3, 5 52.3, 5 52.45, "
         "4.7 52.45, 4.7 52.3))')", lambda t: t["properties"]["tenant"] == "GM0363"),
    ],
)  # fmt: skip
def test_filter_operators_and_functions(
    admin: httpx.Client, world: StaWorld, expression: str, wanted: Any
) -> None:
    everything = _ok(admin, "/Things", **{"$top": "1000"})["value"]
    found = _ok(admin, "/Things", **{"$filter": expression, "$top": "1000"})["value"]
    expected = [t["@iot.id"] for t in everything if wanted(t)]
    assert [t["@iot.id"] for t in found] == expected
    assert 0 < len(expected) < len(everything), "a filter that keeps all or nothing tests nothing"


def test_st_within_on_locations(admin: httpx.Client, world: StaWorld) -> None:
    lon, lat = world.device.longitude, world.device.latitude
    box = (
        f"geography'POLYGON(({lon - 0.001} {lat - 0.001}, {lon + 0.001} {lat - 0.001}, "
        f"{lon + 0.001} {lat + 0.001}, {lon - 0.001} {lat + 0.001}, {lon - 0.001} {lat - 0.001}))'"
    )
    found = _ok(admin, "/Locations", **{"$filter": f"st_within(location, {box})"})["value"]
    assert [f["@iot.id"] for f in found] == [world.device.device_id]
    foi = _ok(admin, "/FeaturesOfInterest", **{"$filter": f"geo.intersects(feature, {box})"})
    assert [f["@iot.id"] for f in foi["value"]] == [world.device.device_id]


def test_observations_time_filter_result_filter_and_order(
    admin: httpx.Client, world: StaWorld
) -> None:
    path = f"/Datastreams('{world.device.device_id}:temperature')/Observations"
    window = f"phenomenonTime ge {_day(world, 3)} and phenomenonTime lt {_day(world, 4)}"
    body = _ok(admin, path, **{"$filter": window, "$top": "1000", "$count": "true"})
    assert body["@iot.count"] == len(body["value"]) == 60
    results = [o["result"] for o in body["value"]]
    assert results == [day_value(0, 180 + n) for n in range(60)]
    high = _ok(
        admin,
        path,
        **{"$filter": f"{window} and result ge 30", "$top": "5", "$count": "true",
           "$orderby": "phenomenonTime desc"},
    )  # fmt: skip
    expected = [v for v in reversed(results) if v >= 30]
    assert high["@iot.count"] == len(expected)
    assert [o["result"] for o in high["value"]] == expected[:5]
    assert [o["phenomenonTime"] for o in high["value"]] == sorted(
        (o["phenomenonTime"] for o in high["value"]), reverse=True
    )
    # The whole-collection form with the Datastream in the filter gives the same.
    same = _ok(
        admin,
        "/Observations",
        **{"$filter": f"Datastream/@iot.id eq '{world.device.device_id}:temperature' and {window}",
           "$top": "1000"},
    )  # fmt: skip
    assert [o["result"] for o in same["value"]] == results
    hour_of = _ok(admin, path, **{"$filter": f"{window} and minute(phenomenonTime) eq 7"})
    assert [o["phenomenonTime"] for o in hour_of["value"]] == [_day(world, 3, 7)]


def test_hourly_mean_datastream_is_the_mean_of_the_raw_readings(
    admin: httpx.Client, world: StaWorld
) -> None:
    stream_id = f"{world.device.device_id}:temperature:mean_1h"
    listed = _ok(admin, f"/Things('{world.device.device_id}')/Datastreams", **{"$top": "100"})
    assert stream_id in {s["@iot.id"] for s in listed["value"]}
    stream = _ok(admin, f"/Datastreams('{stream_id}')")
    assert stream["properties"] == {"aggregation": "gauge", "statistic": "mean", "window": "1h"}
    hours = _ok(
        admin,
        f"/Datastreams('{stream_id}')/Observations",
        **{"$filter": f"phenomenonTime ge {_day(world, 5)} and phenomenonTime lt {_day(world, 8)}"},
    )["value"]
    assert [o["phenomenonTime"] for o in hours] == [
        f"{_day(world, h)}/{_day(world, h + 1)}" for h in (5, 6, 7)
    ]
    for hour, observation in zip((5, 6, 7), hours, strict=True):
        raw = [day_value(0, hour * 60 + m) for m in range(60)]
        assert observation["result"] == pytest.approx(statistics.fmean(raw), rel=1e-12)
    # A window that only starts before the bound does not lie before it.
    partial = _ok(
        admin,
        f"/Datastreams('{stream_id}')/Observations",
        **{
            "$filter": f"phenomenonTime ge {_day(world, 5)} and "
            f"phenomenonTime lt {_day(world, 7, 30)}"
        },
    )["value"]
    assert [o["phenomenonTime"] for o in partial] == [o["phenomenonTime"] for o in hours[:2]]
    other = _ok(admin, f"/Datastreams('{world.device.device_id}:temperature:max_1h')/Observations",
                **{"$top": "1"})  # fmt: skip
    assert other["value"][0]["result"] == max(day_value(0, m) for m in range(60))


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/Things", {"$filter": "name eq"}, 400),
        ("/Things", {"$filter": "name gt 3"}, 400),
        ("/Things", {"$filter": "floor(1e308 mul 10) eq 1"}, 400),  # infinity has no floor
        ("/Things", {"$filter": "(1e308 mul 10) mod 2 eq 1"}, 400),
        ("/Things", {"$top": "-1"}, 400),
        ("/Things", {"$top": "abc"}, 400),
        ("/Things", {"$count": "yes"}, 400),
        ("/Things", {"$select": "nosuch"}, 400),
        ("/Things", {"$expand": "Nosuch"}, 400),
        ("/Things", {"$expand": "Datastreams($top=1"}, 400),
        ("/Things", {"$bogus": "1"}, 400),
        ("/Things('x')/name/extra", {}, 404),
        ("/Things", {"$resultFormat": "dataArray"}, 501),
        ("/Things", {"$filter": "now() gt 1"}, 501),
        ("/Observations", {"$orderby": "result"}, 501),
        ("/Things",
         {"$filter": "geo.intersects(Locations/location, geography'LINESTRING(1 2, 3 4)')"},
         501),
        ("/Things", {"$filter": "Datastreams/name eq 'x'"}, 501),
    ],
)  # fmt: skip
def test_malformed_is_400_and_unimplemented_is_501(
    admin: httpx.Client, path: str, params: dict[str, str], status: int
) -> None:
    response = admin.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"]


# ------------------------------------------------------------------------------------- tenancy


def test_another_tenants_entities_are_invisible_everywhere(
    viewer_b: httpx.Client, world: StaWorld
) -> None:
    device_id = world.device.device_id
    assert world.device.tenant == TENANT_A
    for path in (
        f"/Things('{device_id}')",
        f"/Locations('{device_id}')",
        f"/HistoricalLocations('{device_id}')",
        f"/FeaturesOfInterest('{device_id}')",
        f"/Datastreams('{device_id}:temperature')",
        f"/Datastreams('{device_id}:temperature')/Observations",
        f"/Datastreams('{device_id}:temperature:mean_1h')/Observations",
        f"/Observations('{device_id}:temperature:{world.day_start_ns}')",
    ):
        assert viewer_b.get(path).status_code == 404, path
    mine = {d.device_id for d in world.world.of_tenant(TENANT_B)}
    for entity_set in ("Things", "Locations", "FeaturesOfInterest", "HistoricalLocations"):
        ids = {t["@iot.id"] for t in _ok(viewer_b, f"/{entity_set}", **{"$top": "1000"})["value"]}
        assert ids == mine, entity_set
    streams = _ok(viewer_b, "/Datastreams", **{"$top": "10000"})["value"]
    assert {s["@iot.id"].split(":")[0] for s in streams} == mine
    named = _ok(viewer_b, "/Observations",
                **{"$filter": f"Datastream/Thing/@iot.id eq '{device_id}'"})  # fmt: skip
    assert named["value"] == []
    everything = _ok(viewer_b, "/Observations", **{"$top": "1000"})["value"]
    assert everything
    assert {o["@iot.id"].split(":")[0] for o in everything} <= mine


def test_without_a_key_only_open_data_is_served(world: StaWorld) -> None:
    # Nothing is published yet: the public sees no Thing; a wrong key is refused.
    response = httpx.get(f"{world.url}/sta/v1.1/Things")
    assert response.status_code == 200
    assert response.json()["value"] == []
    wrong = httpx.get(f"{world.url}/sta/v1.1/Things", headers={"Authorization": "Bearer ltn_x"})
    assert wrong.status_code == 401


def test_observations_over_several_datastreams_with_a_rare_condition_page_correctly(
    admin: httpx.Client, world: StaWorld
) -> None:
    # Few rows pass `result ge 37`: the server must fetch further than its first batch.
    device_id = world.device.device_id
    condition = (
        f"Datastream/Thing/@iot.id eq '{device_id}' and phenomenonTime ge {_day(world, 3)} and "
        f"phenomenonTime lt {_day(world, 9)} and result ge 37 and "
        "not endswith(Datastream/@iot.id, '_1h')"
    )
    metrics = ["temperature", "relative_humidity", "wind_speed", "wind_direction", "rain"]
    expected = sorted(
        (
            (world.day_start_ns + step * STEP_NS, f"{device_id}:{metric}")
            for step in range(180, 540)
            for index, metric in enumerate(metrics)
            if day_value(index, step) >= 37
        ),
        reverse=True,
    )
    assert 5 < len(expected) < 200
    seen: list[tuple[str, str]] = []
    link: str | None = httpx.URL(
        f"{world.url}/sta/v1.1/Observations",
        params={"$filter": condition, "$top": "4", "$orderby": "phenomenonTime desc"},
    ).__str__()
    while link:
        page = httpx.get(link, headers=admin.headers).json()
        seen.extend((o["phenomenonTime"], o["@iot.id"].rsplit(":", 1)[0]) for o in page["value"])
        link = page.get("@iot.nextLink")
    assert seen == [(format_ns(t), stream) for t, stream in expected]


_PIECES = st.sampled_from(
    ["name", "result", " eq ", " ne ", " gt ", " and ", " or ", "not ", "(", ")", "'x'", "1",
     "1e308", "-", " mul ", " div ", " mod ", "0", ",", "/", "round(", "floor(", "substring(",
     "length(", "geo.intersects(", "geography'POINT(1 2)'", "phenomenonTime", "@iot.id",
     "2026-01-01T00:00:00Z", "Datastream", "Thing", "properties", "null", " asc", " desc",
     "Datastreams", "Observations", "$top=2", ";", "$filter=", "$expand=", "="]
)  # fmt: skip
_TEXT = st.lists(_PIECES, max_size=14).map("".join)
_PATHS = st.sampled_from(
    ["/Things", "/Datastreams", "/Observations", "/Locations", "/Sensors",
     "/FeaturesOfInterest('gm0363-wx-00006')/Observations", "/Things('gm0363-wx-00006')",
     "/Datastreams('gm0363-wx-00006:temperature')/Observations", "/HistoricalLocations"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(path=_PATHS, option=st.sampled_from(["$filter", "$orderby", "$expand", "$select"]),
       text=_TEXT)  # fmt: skip
def test_any_query_answers_without_a_server_error(
    admin: httpx.Client, path: str, option: str, text: str
) -> None:
    response = admin.get(path, params={option: text, "$top": "3"})
    assert response.status_code in (200, 400, 404, 501), (path, option, text, response.text)
    if response.status_code != 200:
        assert response.json()["detail"]


def test_anonymous_reading_sees_what_anonymous_v1_sees(world: StaWorld) -> None:
    config = dataclasses.replace(world.world.config, anonymous_read=True)
    with serving(config) as url:
        things = httpx.get(f"{url}/sta/v1.1/Things", params={"$top": "1000"}).json()["value"]
        devices = httpx.get(f"{url}/v1/devices", params={"limit": "1000"}).json()["items"]
        assert sorted(t["@iot.id"] for t in things) == sorted(d["deviceId"] for d in devices)


def test_links_use_the_public_url_when_one_is_configured(world: StaWorld) -> None:
    config = dataclasses.replace(world.world.config, public_url="https://data.example.nl/")
    with serving(config) as url:
        body = httpx.get(
            f"{url}/sta/v1.1/Things", params={"$top": "1"}, headers=world.headers("admin")
        ).json()
    assert body["value"][0]["@iot.selfLink"].startswith("https://data.example.nl/sta/v1.1/Things(")
    assert body["@iot.nextLink"].startswith("https://data.example.nl/sta/v1.1/Things?")


def test_a_time_to_the_nanosecond_finds_exactly_its_observation(
    admin: httpx.Client, world: StaWorld
) -> None:
    # The seeded recent readings are stamped to the nanosecond (time.time_ns()); a client that
    # copies an Observation's phenomenonTime into a filter must get that Observation, only.
    path = f"/Datastreams('{world.device.device_id}:temperature')/Observations"
    recent = _ok(admin, path, **{"$orderby": "phenomenonTime desc", "$top": "2"})["value"]
    when = recent[0]["phenomenonTime"]
    assert len(when) == len("2026-01-01T00:00:00.123456789Z")
    exact = _ok(admin, path, **{"$filter": f"phenomenonTime eq {when}"})["value"]
    assert [o["@iot.id"] for o in exact] == [recent[0]["@iot.id"]]
    before = _ok(admin, path, **{"$filter": f"phenomenonTime lt {when}", "$top": "1",
                                 "$orderby": "phenomenonTime desc"})["value"]  # fmt: skip
    assert [o["@iot.id"] for o in before] == [recent[1]["@iot.id"]]
    # Python evaluates the same comparison when InfluxDB cannot take it (under an `or`).
    either = _ok(admin, path, **{"$filter": f"phenomenonTime eq {when} or result lt -100"})
    assert [o["@iot.id"] for o in either["value"]] == [recent[0]["@iot.id"]]


def test_the_public_reads_exactly_the_open_data_with_its_licence(world: StaWorld) -> None:
    # Amsterdam publishes its weather stations (the device with a day of readings is one).
    terms = {"licence": "CC-BY-4.0", "attribution": "Gemeente Amsterdam", "kinds": ["weather"]}
    published = httpx.put(
        f"{world.url}/v1/tenants/{TENANT_A}/open-data", json=terms, headers=world.headers("admin")
    )
    assert published.status_code == 200, published.text
    base = f"{world.url}/sta/v1.1"
    opened = {d.device_id for d in world.world.devices if d.kind == "weather"
              and d.tenant == TENANT_A and not d.personal_data}  # fmt: skip
    assert world.device.device_id in opened
    things = httpx.get(f"{base}/Things", params={"$top": "1000"})
    assert things.status_code == 200
    assert {t["@iot.id"] for t in things.json()["value"]} == opened
    assert "creativecommons.org/licenses/by/4.0" in things.headers["Link"]
    assert 'rel="license"' in things.headers["Link"]
    stream = f"{base}/Datastreams('{world.device.device_id}:temperature')/Observations"
    assert httpx.get(stream, params={"$top": "2"}).json()["value"]
    everything = httpx.get(f"{base}/Observations", params={"$top": "1000"}).json()["value"]
    assert {o["@iot.id"].split(":")[0] for o in everything} <= opened
    closed = next(d for d in world.world.devices if d.device_id not in opened)
    assert httpx.get(f"{base}/Things('{closed.device_id}')").status_code == 404
    assert httpx.get(f"{base}/Locations('{closed.device_id}')").status_code == 404
    # A key holder still sees its own tenants, not the public view of others.
    mine = httpx.get(f"{base}/Things", params={"$top": "1000"}, headers=world.headers("viewer_b"))
    assert {t["@iot.id"] for t in mine.json()["value"]} == {
        d.device_id for d in world.world.of_tenant(TENANT_B)
    }
    assert "Link" not in mine.headers


def test_a_whole_day_is_the_same_answer_gzipped_or_not(world: StaWorld) -> None:
    # A day every minute (~700 kB of JSON): compressed by the STA layer itself (ISA-L, level 1)
    # when the client accepts gzip; the answer inflates to the very same bytes.
    path = f"/sta/v1.1/Datastreams('{world.device.device_id}:temperature')/Observations"
    params = {"$top": "5000", "$filter": f"phenomenonTime ge {_day(world, 0)}"}
    answers = {}
    with httpx.Client(base_url=world.url, headers=world.headers("admin")) as client:
        for encoding in ("gzip", "identity"):
            asked = {"Accept-Encoding": encoding}
            with client.stream("GET", path, params=params, headers=asked) as response:
                assert response.status_code == 200
                answers[encoding] = (response.headers, b"".join(response.iter_raw()))
    zipped_headers, zipped = answers["gzip"]
    plain_headers, plain = answers["identity"]
    assert zipped_headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped_headers["Vary"]
    assert int(zipped_headers["Content-Length"]) == len(zipped) < len(plain) // 5
    assert "Content-Encoding" not in plain_headers
    assert zipped == igzip.compress(plain, compresslevel=1, mtime=0)  # not the middleware's
    assert gzip.decompress(zipped) == plain
    assert len(orjson.loads(plain)["value"]) >= 1440  # the day, and what other tests add
