"""The Observations of a page written as JSON text are the bytes the dict path gives.

`resources.observations_json` writes a page of Observations without a dict per item (a day of
raw readings is 8,640 of them); `observation_values` is the dict path, which `$select` still
takes. These unit tests hold the two to the same bytes for raw and rollup streams, several
streams in one page, ids and base URLs that need escaping, and results of every float shape.
The end-to-end answers are in test_sta_conformance.py and test_sta_frost.py.

Observations are read from InfluxDB in MessagePack, uncompressed
(`InfluxClient.query(packed=True)`): InfluxDB writes a large answer with less CPU that way, and
on loopback gzip there and inflating here cost more than the bytes saved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from api.sta import observations as obs
from api.sta import resources
from api.sta.entities import streams_of
from api.sta.options import parse_query
from devices import Device
from tests.timeseries.strange import strange_influx
from timeseries import InfluxClient, InfluxConfig

NS = 1_000_000_000
T0 = 1_764_633_600 * NS  # 2025-12-02T00:00:00Z

pytestmark = pytest.mark.anyio


@pytest.fixture
async def influx() -> AsyncIterator[InfluxClient]:
    # Never asked anything here: the Context only carries it.
    async with InfluxClient(InfluxConfig("http://[::1]:9")) as client:
        yield client


def _rows(device: Device, values: list[float], step_ns: int) -> list[obs.Row]:
    raw, hourly = streams_of(device)[:2]
    rows: list[obs.Row] = []
    for at, value in enumerate(values):
        ts = T0 + at * step_ns
        rows.append((ts, raw.id, raw, value))
        rows.append((ts, hourly.id, hourly, -value))
    return rows


def _dict_path(ctx: resources.Context, rows: list[obs.Row]) -> bytes:
    return orjson.dumps(resources.observation_values(ctx, rows, parse_query({})))


ODD_FLOATS = [0.0, -0.0, 5.5, 20.0, 1e20, 1.5e-7, -3.25, 123456789.125, 0.1 + 0.2, 1e-300]


@pytest.mark.parametrize(
    ("device_id", "base"),
    [
        ("gm0363-aq-1", "https://data.example.nl/sta/v1.1"),
        ('o\'neil "quoted" \\ back', "http://[::1]:8080/sta/v1.1"),
        ("straße-ü-1", 'http://h"ost\\/sta/v1.1'),
    ],
)
async def test_text_is_the_dict_path_byte_for_byte(
    influx: InfluxClient, device_id: str, base: str
) -> None:
    device = Device(device_id, "GM0363", "air_quality", "Dam", 52.37, 4.89)
    ctx = resources.Context({device.device_id: device}, influx, base)
    for step_ns in (10 * NS, 1, 1_000_000):  # times in s, ns and ms
        rows = _rows(device, ODD_FLOATS, step_ns)
        text = resources.observations_json(ctx, rows)
        assert text == _dict_path(ctx, rows)
        parsed = orjson.loads(text)
        assert len(parsed) == 2 * len(ODD_FLOATS)
        assert parsed[1]["phenomenonTime"].count("/") == 1  # the rollup's window


async def test_a_page_answer_embeds_the_text(influx: InfluxClient) -> None:
    device = Device("gm0363-aq-2", "GM0363", "air_quality", "Dam", 52.37, 4.89)
    ctx = resources.Context({device.device_id: device}, influx, "http://[::1]:1/sta/v1.1")
    rows = _rows(device, [1.5, 2.5, 3.5], 10 * NS)
    query = parse_query({"$top": "6"})
    page = resources.Page([], True, 42, rows)
    answer = orjson.dumps(await resources.render_page(ctx, "Observations", page, query))
    expected = {
        "@iot.count": 42,
        "@iot.nextLink": resources.next_link("http://[::1]:1/sta/v1.1/Observations", query, 6),
        "value": orjson.loads(_dict_path(ctx, rows)),
    }
    assert orjson.loads(answer) == expected
    assert resources.observations_json(ctx, []) == b"[]"
    assert orjson.loads(orjson.dumps({"value": orjson.Fragment(b"[]")})) == {"value": []}


async def test_observations_are_read_from_influxdb_uncompressed() -> None:
    device = Device("gm0363-aq-3", "GM0363", "air_quality", "Dam", 52.37, 4.89)
    with strange_influx() as (url, server):
        async with InfluxClient(InfluxConfig(url)) as client:
            await client.query("SELECT 1")  # the default still accepts gzip
            fetched = await obs.fetch(
                client, streams_of(device)[:1], T0, T0 + 10 * NS, descending=False, rows=10
            )
            long = "SELECT " + " " * 9000 + "1"  # past the URL limit: sent as a POST
            await client.query(long, compressed=False)
    assert fetched.rows == []
    default, observations, posted = server.asked
    assert "gzip" in default.accept_encoding
    assert observations.accept_encoding == "identity"
    assert (posted.method, posted.accept_encoding) == ("POST", "identity")
