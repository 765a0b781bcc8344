"""Queries on a real InfluxDB whatever the number of devices; answers that are not results."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs

import orjson
import pytest

from lantaarn.localstack import Influx
from tests.timeseries.strange import Answer, strange_influx
from timeseries import (
    InfluxBadAnswer,
    InfluxClient,
    InfluxConfig,
    InfluxRejected,
    InfluxUnavailable,
    Retention,
    ensure_schema,
)
from timeseries.client import MAX_URL_QUERY_BYTES
from timeseries.lineprotocol import line, series_key
from timeseries.queries import last_status, latest_readings, read_rollups
from timeseries.rollups import read_raw
from timeseries.schema import RAW_RP
from timeseries.selection import CHUNK, Selection

pytestmark = pytest.mark.anyio

NS = 1_000_000_000


async def _fresh(influx: Influx) -> InfluxClient:
    client = InfluxClient(InfluxConfig(influx.url, database=f"q_{uuid.uuid4().hex[:10]}"))
    await ensure_schema(client, Retention())
    return client


def _reading(tenant: str, device_id: str, pm25: float, ts_ns: int) -> str:
    key = series_key("air_quality", {"tenant": tenant, "device_id": device_id})
    return line(key, {"pm25": pm25}, ts_ns)


async def test_thousands_of_devices_are_asked_about_in_chunks_sent_in_the_body(
    influx: Influx,
) -> None:
    now = time.time_ns()
    ids = [f"gm0363-air-quality-sensor-with-a-long-name-{n:05d}" for n in range(5 * CHUNK + 7)]
    async with await _fresh(influx) as client:
        body = [_reading("GM0363", d, float(n), now - n) for n, d in enumerate(ids)]
        await client.write("\n".join(body).encode(), retention_policy=RAW_RP)
        asked = ids[::2]
        assert len(",".join(asked)) > 65536  # past what a URL may hold
        found = await latest_readings(
            client, ["air_quality"], now - 60 * NS, Selection.of_devices(asked)
        )
        assert {d: r.metrics["pm25"] for d, r in found.items()} == {
            d: float(n) for n, d in enumerate(ids) if n % 2 == 0
        }
        samples = await read_raw(
            client, "air_quality", now - 60 * NS, now + NS, devices=Selection.of_devices(asked)
        )
        assert sorted(d for _t, d in samples.devices) == sorted(asked)
        assert samples.values["pm25"].shape == (len(asked),)
        assert await last_status(client, now - 60 * NS, Selection.of_devices(asked)) == {}
        owners, rows = await read_rollups(
            client, "air_quality", "1m", "pm25", ["count"], 0, now, Selection.of_devices(asked)
        )
        assert (owners, rows) == ([], [])


async def test_a_query_too_long_for_a_url_is_answered(influx: Influx) -> None:
    async with await _fresh(influx) as client:
        padding = " " * 70_000  # httpx refuses URLs over 64 KiB
        short, long = await client.query(["SHOW MEASUREMENTS", f"SHOW MEASUREMENTS{padding}"])
        assert short == long == []


async def test_a_long_query_goes_in_the_body_and_a_short_one_in_the_url() -> None:
    with strange_influx() as (url, server):
        async with InfluxClient(InfluxConfig(url, timeout_s=5)) as client:
            await client.query("SELECT * FROM x")
            long = "SELECT * FROM x WHERE " + " OR ".join(["a = 'b'"] * MAX_URL_QUERY_BYTES)
            await client.query(long)
    short_asked, long_asked = server.asked
    assert (short_asked.method, short_asked.body) == ("GET", b"")
    assert long_asked.method == "POST"
    assert long_asked.url_bytes < 100
    assert parse_qs(long_asked.body.decode())["q"] == [long]


async def test_a_selection_matches_its_devices_exactly(influx: Influx) -> None:
    now = time.time_ns()
    # Neighbours that a loose pattern would also match: prefixes, and punctuation that means
    # something in a regular expression or in InfluxQL.
    ids = ["dev-1", "dev-10", "a.c", "abc", "a/b", "a b", "x|y", "x", "y", "ä", "a", "(z)", "z"]
    ids += ["it's", 'say "hi"', "back\\slash"]
    tenants = {"dev-1": "GM1", "dev-10": "GM10", "a.c": "G.1", "abc": "GX1"}
    async with await _fresh(influx) as client:
        body = [_reading(tenants.get(d, "GM0363"), d, float(n), now - n) for n, d in enumerate(ids)]
        await client.write("\n".join(body).encode(), retention_policy=RAW_RP)
        since = now - 60 * NS
        wanted = ["dev-1", "a.c", "a/b", "a b", "x|y", "ä", "(z)"]
        found = await latest_readings(client, ["air_quality"], since, Selection.of_devices(wanted))
        assert sorted(found) == sorted(wanted)
        for one in [*wanted, "it's", 'say "hi"', "back\\slash"]:  # alone: an equality
            alone = await latest_readings(
                client, ["air_quality"], since, Selection.of_devices([one])
            )
            assert list(alone) == [one]
        by_tenant = await latest_readings(
            client, ["air_quality"], since, Selection.of_tenants(["GM1", "G.1"])
        )
        assert sorted(by_tenant) == ["a.c", "dev-1"]
        everything = await latest_readings(client, ["air_quality"], since)
        assert sorted(everything) == sorted(ids)
        assert await latest_readings(client, ["air_quality"], since, Selection.of_tenants([])) == {}
        assert await latest_readings(client, ["air_quality"], since, Selection.of_devices([])) == {}


RESULT = {"results": [{"statement_id": 0}]}
NOT_RESULTS = {
    "an HTML page": Answer(200, "text/html", b"<html><body>Sign in</body></html>"),
    "an empty body": Answer(200, "application/json", b""),
    "cut off": Answer(200, "application/json", b'{"results":[{"statement_id":0,"ser'),
    "a JSON list": Answer(200, "application/json", b"[]"),
    "results not a list": Answer(200, "application/json", b'{"results":"none"}'),
    "no result for the statement": Answer(200, "application/json", b'{"results":[]}'),
    "a result not an object": Answer(200, "application/json", b'{"results":[1]}'),
    "series not a list": Answer(200, "application/json", b'{"results":[{"series":{}}]}'),
    "a series not an object": Answer(200, "application/json", b'{"results":[{"series":[1]}]}'),
    "tags not text": Answer(
        200,
        "application/json",
        orjson.dumps({"results": [{"series": [{"tags": {"device_id": 1}}]}]}),
    ),
    "a row shorter than the columns": Answer(
        200,
        "application/json",
        orjson.dumps({"results": [{"series": [{"columns": ["time", "x"], "values": [[1]]}]}]}),
    ),
    "a time that is not epoch ns": Answer(
        200,
        "application/json",
        orjson.dumps(
            {"results": [{"series": [{"columns": ["time"], "values": [["2026-12-02T00:00Z"]]}]}]}
        ),
    ),
}


@pytest.mark.parametrize("answer", NOT_RESULTS.values(), ids=NOT_RESULTS.keys())
async def test_an_answer_that_is_not_a_result_is_a_bad_answer(answer: Answer) -> None:
    with strange_influx() as (url, server):
        server.answer = answer
        async with InfluxClient(InfluxConfig(url, timeout_s=5)) as client:
            with pytest.raises(InfluxBadAnswer):
                await client.query("SELECT * FROM x")
            with pytest.raises(InfluxBadAnswer):
                await latest_readings(client, ["air_quality"], 0, Selection.of_tenants(["GM1"]))


async def test_errors_in_an_answer_are_refusals_and_5xx_pages_unavailability() -> None:
    with strange_influx() as (url, server):
        async with InfluxClient(InfluxConfig(url, timeout_s=5)) as client:
            server.answer = Answer(200, "application/json", b'{"error":"query too heavy"}')
            with pytest.raises(InfluxRejected, match="query too heavy"):
                await client.query("SELECT * FROM x")
            server.answer = Answer(502, "text/html", b"<html>Bad gateway</html>")
            with pytest.raises(InfluxUnavailable):
                await client.query("SELECT * FROM x")
            server.answer = Answer(200, "application/json", orjson.dumps(RESULT))
            assert await client.query("SELECT * FROM x") == [[]]
            with pytest.raises(InfluxBadAnswer, match="1 results to 2"):
                await client.query(["SELECT * FROM x", "SELECT * FROM y"])


async def test_an_answer_asked_for_in_messagepack_holds_what_json_holds(influx: Influx) -> None:
    """`packed=True`: the same series, tags and rows as the JSON answer, errors included."""
    client = await _fresh(influx)
    try:
        t0 = (int(time.time()) - 3600) * NS
        lines = [
            line(
                series_key("air_quality", {"tenant": "GM1", "device_id": f"aq-{d}"}),
                {"pm25": 5.5 + i, "no2": 20.0, "seq": i, "ok": i % 2 == 0, "note": f"n{i}"},
                t0 + i * 10 * NS,
            )
            for d in range(3)
            for i in range(50)
        ]
        await client.write("\n".join(lines).encode(), retention_policy=RAW_RP)
        statements = [
            f'SELECT "pm25", "no2", "seq", "ok", "note" FROM "{RAW_RP}"."air_quality" '
            f"WHERE time >= {t0} ORDER BY time ASC LIMIT 70",
            f'SELECT count("pm25") FROM "{RAW_RP}"."air_quality" GROUP BY "device_id"',
            f'SELECT "pm25" FROM "{RAW_RP}"."no_such_kind"',
        ]
        as_json = await client.query(statements)
        as_packed = await client.query(statements, packed=True)
        assert len(as_packed[0][0].values) == 70
        assert [[(s.name, s.tags, s.columns) for s in r] for r in as_packed] == [
            [(s.name, s.tags, s.columns) for s in r] for r in as_json
        ]
        for packed_result, json_result in zip(as_packed, as_json, strict=True):
            for packed_series, json_series in zip(packed_result, json_result, strict=True):
                # JSON writes a whole float as an integer (20.0 as 20); MessagePack keeps it.
                assert packed_series.values == json_series.values
                for row in packed_series.values:
                    assert type(row[0]) is int
        # The reasons InfluxDB gives, read from its MessagePack answers: one statement refused
        # in a 200 answer, and a 400.
        with pytest.raises(InfluxRejected, match="retention policy not found"):
            await client.query('SELECT "pm25" FROM "nope"."air_quality"', packed=True)
        with pytest.raises(InfluxRejected, match="error parsing query"):
            await client.query(['SELECT "pm25" FROM', "SELECT 1"], packed=True)
    finally:
        await client.aclose()


async def test_a_messagepack_answer_that_is_not_one_is_a_bad_answer() -> None:
    packed = "application/x-msgpack"
    with strange_influx() as (url, server):
        async with InfluxClient(InfluxConfig(url, timeout_s=5)) as client:
            server.answer = Answer(200, packed, b"\xc1 not MessagePack")
            with pytest.raises(InfluxBadAnswer, match="not MessagePack"):
                await client.query("SELECT * FROM x", packed=True)
            server.answer = Answer(200, packed, b"\x92\x01")  # an array cut off
            with pytest.raises(InfluxBadAnswer):
                await client.query("SELECT * FROM x", packed=True)
            server.answer = Answer(200, packed, b"\x81\xa5error\xaetoo heavy here")
            with pytest.raises(InfluxRejected, match="too heavy here"):
                await client.query("SELECT * FROM x", packed=True)
            server.answer = Answer(400, packed, b"\x81\xa5error\xa9bad query")
            with pytest.raises(InfluxRejected, match="bad query"):
                await client.query("SELECT * FROM x", packed=True)
            # Asked for MessagePack, answered JSON (a proxy, an older server): read as JSON.
            server.answer = Answer(200, "application/json", orjson.dumps(RESULT))
            assert await client.query("SELECT * FROM x", packed=True) == [[]]
