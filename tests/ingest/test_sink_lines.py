"""The sink writes the lines the decoder encoded, and encodes the points nobody encoded yet."""

from __future__ import annotations

import time

import orjson
import pytest

from ingest.decode import Decoded, Decoder, prepare
from ingest.sink import InfluxSink
from lantaarn.localstack import Influx
from tests.ingest.test_decode import AQ, TOPIC
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import Point, tags
from timeseries.schema import DEVICE_STATUS, raw_measurement

pytestmark = pytest.mark.anyio


async def test_points_the_decoder_encoded_and_points_it_did_not_are_all_stored(
    influx: Influx,
) -> None:
    at = time.time_ns() - 60 * 1_000_000_000
    decoded = Decoded()
    decoder = Decoder(prepare([AQ]))
    for n in range(3):
        payload = orjson.dumps({"seq": n, "metrics": {"pm25": 1.0 + n}})
        decoder.decode(TOPIC, payload, at + n * 1000, decoded)
    assert len(decoded.lines) == len(decoded.points) == 3
    # A status point, as the worker adds them after the decoded ones: not encoded yet.
    status = Point(DEVICE_STATUS, tags(device_id="aq-1", tenant="GM0363"), {"state": "up"}, at)
    async with InfluxClient(InfluxConfig(influx.url)) as client:
        await ensure_schema(client, Retention())
        sink = InfluxSink(BatchWriter(client), 5000, "ingest-0")
        added = await sink.store([*decoded.points, status], [], decoded.lines)
        assert added == []
        readings = await client.query(
            f'SELECT "pm25", "seq" FROM "raw"."{raw_measurement("air_quality")}" '
            "WHERE \"device_id\" = 'aq-1'"
        )
        states = await client.query(
            f'SELECT "state" FROM "raw"."{DEVICE_STATUS}" WHERE "device_id" = \'aq-1\''
        )
    assert [row[1:] for row in readings[0][0].values] == [[1.0, 0], [2.0, 1], [3.0, 2]]
    assert [row[1] for row in states[0][0].values] == ["up"]
