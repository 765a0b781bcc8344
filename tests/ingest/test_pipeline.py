"""The worker's pipeline with fakes: decode overlaps the write, acks follow storage in order.

The fakes satisfy the worker's Protocols (ingest.feed.Source, ingest.sink.Sink,
ingest.registry_view.DecoderView) as they are: mypy checks them, no `type: ignore`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from devices import Device
from ingest.decode import Decoder, Rejection, prepare
from ingest.errors import SourceClosed
from ingest.source import Delivery
from ingest.worker import Worker
from lantaarn.settings import IngestSettings
from timeseries.errors import InfluxAuthFailed
from timeseries.lineprotocol import Point

pytestmark = pytest.mark.anyio

AQ = Device("aq-1", "GM0363", "air_quality", "Dam", 52.37, 4.89, interval_s=60.0)


def delivery(n: int) -> Delivery:
    payload = orjson.dumps({"seq": n, "metrics": {"pm25": 1.0 + n}})
    return Delivery("lantaarn/v1/GM0363/aq-1/telemetry", payload, n + 1, 1, 1, 1_700_000_000 + n)


class FakeSource:
    """Hands out the given batches, then ends (or, with `wait`, waits until closed)."""

    def __init__(self, batches: list[list[Delivery]], log: list[str], wait: bool = False) -> None:
        self.batches = list(batches)
        self.log = log
        self.closed = asyncio.Event()
        if not wait:
            self.closed.set()
        self.received = sum(len(batch) for batch in batches)
        self.acked = 0

    async def batch(self, _max_messages: int, _max_wait_s: float) -> list[Delivery]:
        if self.batches:
            batch = self.batches.pop(0)
            self.log.append(f"taken {batch[0].mid}")
            return batch
        await self.closed.wait()
        raise SourceClosed("closed")

    def ack(self, deliveries: Sequence[Delivery]) -> int:
        self.log.append(f"ack {deliveries[0].mid}")
        self.acked += len(deliveries)
        return len(deliveries)

    def close(self) -> None:
        self.closed.set()


class SlowSink:
    """Takes a while to store; or refuses our credentials."""

    def __init__(self, log: list[str], fail: bool = False, seconds: float = 0.05) -> None:
        self.log = log
        self.fail = fail
        self.seconds = seconds
        self.unavailable = False
        self.slow_writes = 0
        self.stored: list[Point] = []
        self.writing = {n: asyncio.Event() for n in (1, 2, 3)}  # write of batch n has begun

    async def store(
        self,
        points: Sequence[Point],
        rejections: Sequence[Rejection],
        /,
        lines: Sequence[str] = (),
    ) -> list[Rejection]:
        seq = points[0].fields["seq"]
        assert isinstance(seq, int)
        self.log.append(f"store {seq + 1} begins")
        self.writing[seq + 1].set()
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            # Ending a write takes a moment too (an HTTP request is torn down).
            await asyncio.sleep(0.05)
            self.log.append(f"store {seq + 1} cancelled")
            raise
        if self.fail:
            raise InfluxAuthFailed("refused", status=401)
        self.stored.extend(points)
        self.log.append(f"store {seq + 1} ends")
        return []


class View:
    decoder = Decoder(prepare([AQ]))


CONFIG = IngestSettings().worker(0)


async def test_the_next_batch_is_decoded_while_the_last_is_written_and_acks_keep_order() -> None:
    log: list[str] = []
    batches = [[delivery(n)] for n in range(3)]
    source = FakeSource(batches, log)
    worker = Worker(CONFIG, source, SlowSink(log), View())
    await worker.run()
    at = log.index
    assert at("taken 2") < at("store 1 ends")  # decoded while batch 1 is being written
    assert at("taken 3") < at("store 2 ends")
    for n in (1, 2, 3):
        assert at(f"store {n} ends") < at(f"ack {n}")  # acked only once stored
    for n in (1, 2):
        assert at(f"ack {n}") < at(f"store {n + 1} begins")  # one write at a time, in order
    assert [e for e in log if e.startswith("ack")] == ["ack 1", "ack 2", "ack 3"]
    assert worker.stats.values_stored == 3


async def test_a_fatal_storage_error_ends_the_worker_without_acking() -> None:
    log: list[str] = []
    source = FakeSource([[delivery(0)]], log, wait=True)
    worker = Worker(CONFIG, source, SlowSink(log, fail=True), View())
    with pytest.raises(InfluxAuthFailed):
        async with asyncio.timeout(5):  # no further message arrives: it must not wait for one
            await worker.run()
    assert not any(entry.startswith("ack") for entry in log)


async def test_a_worker_cancelled_mid_write_ends_the_write_first_and_loses_nothing() -> None:
    log: list[str] = []
    source = FakeSource([[delivery(0)], [delivery(1)]], log, wait=True)
    sink = SlowSink(log, seconds=0.3)
    worker = Worker(CONFIG, source, sink, View())
    run = asyncio.create_task(worker.run())
    await sink.writing[2].wait()  # batch 1 is stored and acked, batch 2 is being written
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # The write was over before `run` returned: nothing of the worker runs on behind it.
    assert "store 2 cancelled" in log
    # Batch 1 stored and acked; batch 2 neither acked nor half-counted: it comes back.
    assert [e for e in log if e.startswith("ack")] == ["ack 1"]
    assert [p.fields["seq"] for p in sink.stored] == [0]
    assert source.acked == 1
    assert worker.stats.messages == 1
