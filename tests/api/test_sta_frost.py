"""SensorThings as a client uses it: frost-sta-client (the reference client's Python library)
against the live API with a real InfluxDB and registry, authenticated with an API key."""

from __future__ import annotations

from collections.abc import Iterator

import frost_sta_client as fsc
import pytest
import requests
from frost_sta_client.service.auth_handler import AuthHandler

from api.timefmt import format_ns
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B
from tests.api.sta_world import DAY_NS, STEP_NS, StaWorld, day_value, sta_world

# frost-sta-client 1.1 calls furl's deprecated `pathstr` on every request: its warning, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning")


class _Bearer(requests.auth.AuthBase):
    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.key}"
        return request


class ApiKeyAuth(AuthHandler):  # type: ignore[misc]
    """frost-sta-client's extension point for credentials, sending our API key."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def add_auth_header(self) -> requests.auth.AuthBase:
        return _Bearer(self.key)


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaWorld]:
    with sta_world(influx, tmp_path_factory.mktemp("sta-frost")) as running:
        yield running


def _service(world: StaWorld, use: str) -> fsc.SensorThingsService:
    return fsc.SensorThingsService(
        f"{world.url}/sta/v1.1", auth_handler=ApiKeyAuth(world.world.keys[use])
    )


def test_list_things_with_a_filter(world: StaWorld) -> None:
    service = _service(world, "admin")
    found = service.things().query().filter(f"properties/tenant eq '{TENANT_B}'").list()
    ids = sorted(thing.id for thing in found)
    assert ids == sorted(d.device_id for d in world.world.of_tenant(TENANT_B))
    names = [t.name for t in service.things().query().filter("endswith(name, 'Amsterdam')").list()]
    assert names
    assert all(n.endswith("Amsterdam") for n in names)


def test_expand_datastreams_of_a_thing(world: StaWorld) -> None:
    service = _service(world, "viewer_a")
    things = (
        service.things()
        .query()
        .filter(f"id eq '{world.device.device_id}'")
        .expand("Datastreams($select=id,name,unitOfMeasurement)")
        .list()
    )
    [thing] = list(things)
    streams = {d.id: d for d in thing.datastreams}
    assert f"{world.device.device_id}:temperature" in streams
    assert f"{world.device.device_id}:temperature:mean_1h" in streams
    assert streams[f"{world.device.device_id}:temperature"].unit_of_measurement.symbol == "Cel"


def test_page_through_observations_of_a_datastream_with_a_time_filter(world: StaWorld) -> None:
    service = _service(world, "viewer_a")
    stream = service.datastreams().find(f"{world.device.device_id}:temperature")
    start = world.day_start_ns + 6 * 3600 * 10**9
    end = start + 2 * 3600 * 10**9
    query = (
        stream.get_observations()
        .query()
        .filter(f"phenomenonTime ge {format_ns(start)} and phenomenonTime lt {format_ns(end)}")
        .orderby("phenomenonTime", "asc")
        .top(25)
    )
    seen = list(query.list())  # follows @iot.nextLink page after page
    assert len(seen) == (end - start) // STEP_NS == 120
    steps = [(start - world.day_start_ns) // STEP_NS + n for n in range(120)]
    metric_index = 0  # temperature is the weather kind's first metric
    assert [o.result for o in seen] == [day_value(metric_index, s) for s in steps]
    assert len({o.id for o in seen}) == 120
    assert end - world.day_start_ns < DAY_NS


def test_another_tenants_things_are_invisible(world: StaWorld) -> None:
    service = _service(world, "viewer_b")
    ids = {thing.id for thing in service.things().query().list()}
    assert ids == {d.device_id for d in world.world.of_tenant(TENANT_B)}
    assert world.device.tenant == TENANT_A
    with pytest.raises(requests.exceptions.HTTPError) as refused:
        service.things().find(world.device.device_id)
    assert refused.value.response is not None
    assert refused.value.response.status_code == 404
