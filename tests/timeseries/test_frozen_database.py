"""A database that stops answering without closing the connection is noticed within seconds.

InfluxDB frozen (SIGSTOP: the kernel still accepts connections and reads requests, nothing
answers) used to be invisible until the client's timeout: no log line, `unavailable` false.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.sink import InfluxSink
from lantaarn.localstack import Influx, private_influx
from tests.conftest import require_program
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.schema import RAW_RP

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_influx(tmp_path: Path) -> Iterator[Influx]:
    """An InfluxDB of this test's own: it is going to be frozen."""
    require_program("influxd", "influxdb")
    database = private_influx(tmp_path / "influx")
    yield database
    database.stop()


@pytest.fixture
def freezer(own_influx: Influx) -> Iterator[tuple[Influx, int]]:
    process = own_influx.service.process
    assert process is not None
    yield own_influx, process.pid
    os.kill(process.pid, signal.SIGCONT)  # never leave it frozen, whatever happened


async def test_a_write_influxdb_does_not_answer_for_seconds_is_logged_and_counted(
    freezer: tuple[Influx, int], caplog: pytest.LogCaptureFixture
) -> None:
    influx, pid = freezer
    an_hour_ago = time.time_ns() - 3_600_000_000_000
    caplog.set_level(logging.INFO, logger="timeseries.writer")
    async with InfluxClient(InfluxConfig(influx.url)) as client:
        await ensure_schema(client, Retention())
        writer = BatchWriter(client)
        sink = InfluxSink(writer, 5000, "ingest-0")
        os.kill(pid, signal.SIGSTOP)
        write = asyncio.create_task(
            writer.write([f"probe,tenant=t value=1.0 {an_hour_ago}"], retention_policy=RAW_RP)
        )
        async with asyncio.timeout(20):  # well within the client's own timeout (30 s)
            while True:
                if sink.unavailable:
                    break
                await asyncio.sleep(0.1)
        assert sink.slow_writes == 1
        assert any(
            r.levelno == logging.WARNING and "has not answered" in r.getMessage()
            for r in caplog.records
        )
        assert not write.done()
        os.kill(pid, signal.SIGCONT)
        outcome = await write
        assert not outcome.refused
        assert not sink.unavailable  # answered: back to normal
        stored = await client.query('SELECT count("value") FROM "raw"."probe"')
    assert stored[0][0].values[0][1] == 1
