"""The batched writer and the schema against a real InfluxDB: 413 splits, 400 isolates, tiers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lantaarn.localstack import Influx, private_influx
from tests.conftest import require_program
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def small_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx]:
    """An InfluxDB that takes at most 2,000 bytes a request, as a proxy or a hosted one might."""
    require_program("influxd", "influxdb")
    database = private_influx(tmp_path_factory.mktemp("small-influx"), max_body_bytes=2000)
    yield database
    database.stop()


# An hour ago: inside the raw tier (older points would be refused as beyond retention).
AN_HOUR_AGO = (time.time_ns() - 3_600_000_000_000) // 1_000_000 * 1_000_000


def lines(count: int, first_ts: int = AN_HOUR_AGO) -> list[str]:
    return [
        f"air_quality,device_id=d{n % 7},tenant=GM0363 pm25={n}.5,no2=1.25 {first_ts + n}"
        for n in range(count)
    ]


async def count_of(client: InfluxClient, field: str = "pm25") -> int:
    result = await client.query(f'SELECT count("{field}") FROM "raw"."air_quality"')
    return int(result[0][0].values[0][1]) if result[0] else 0


async def test_a_batch_too_large_is_split_until_it_fits(small_influx: Influx) -> None:
    async with InfluxClient(InfluxConfig(small_influx.url, database="split")) as client:
        await ensure_schema(client, Retention())
        batch = lines(300)  # about 20 kB: ten times what the database takes at once
        assert len("\n".join(batch)) > 10 * 2000
        outcome = await BatchWriter(client).write(batch, retention_policy="raw")
        assert outcome.refused == []
        assert await count_of(client) == 300


async def test_a_refused_line_is_isolated_and_the_rest_kept(small_influx: Influx) -> None:
    async with InfluxClient(InfluxConfig(small_influx.url, database="partial")) as client:
        await ensure_schema(client, Retention())
        writer = BatchWriter(client)
        await writer.write(lines(1), retention_policy="raw")  # no2 is a float from now on
        batch = lines(20, first_ts=AN_HOUR_AGO + 1000)
        bad = f'air_quality,device_id=x,tenant=GM0363 no2="high" {AN_HOUR_AGO + 2000}'
        outcome = await writer.write([*batch[:9], bad, *batch[9:]], retention_policy="raw")
        assert [line for line, _why in outcome.refused] == [bad]
        assert "conflict" in outcome.refused[0][1]
        assert await count_of(client) == 21


async def test_the_retention_tiers_are_set_up_and_follow_the_settings(influx: Influx) -> None:
    async with InfluxClient(InfluxConfig(influx.url, database="tiers")) as client:
        await ensure_schema(client, Retention())
        await ensure_schema(client, Retention(raw="30d", rollup_1m="52w"))  # changed settings
        result = await client.query('SHOW RETENTION POLICIES ON "tiers"', database=False)
        series = result[0][0]
        at = {name: i for i, name in enumerate(series.columns)}
        policies = {
            row[at["name"]]: (row[at["duration"]], row[at["default"]]) for row in series.values
        }
    assert policies["raw"] == ("720h0m0s", True)
    assert policies["rollup_1m"] == ("8736h0m0s", False)
    assert policies["rollup_1h"] == ("0s", False)  # for ever


def test_a_retention_influxql_would_not_take_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not an InfluxQL duration"):
        Retention(raw="ninety days")
    assert Retention(raw="13w").raw == "13w"
