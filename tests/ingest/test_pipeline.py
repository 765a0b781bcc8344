"""The worker's pipeline with fakes: decode overlaps the write, acks follow storage in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from devices import Device
from ingest.decode import Decoder, Rejection, prepare
from ingest.errors import SourceClosed
from ingest.source import Delivery
from ingest.worker import Worker, WorkerConfig
from timeseries.errors import InfluxAuthFailed

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

    async def batch(self, _max_messages: int, _max_wait_s: float) -> list[Delivery]:
        if self.batches:
            batch = self.batches.pop(0)
            self.log.append(f"taken {batch[0].mid}")
            return batch
        await self.closed.wait()
        raise SourceClosed("closed")

    def ack(self, deliveries: Sequence[Delivery]) -> int:
        self.log.append(f"ack {deliveries[0].mid}")
        return len(deliveries)

    def close(self) -> None:
        self.closed.set()


class SlowSink:
    """Takes a while to store; or refuses our credentials."""

    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log = log
        self.fail = fail

    async def store(self, lines: Sequence[str], rejections: Sequence[Rejection]) -> list[Rejection]:
        seq = lines[0].split("seq=")[1].split("i")[0]
        self.log.append(f"store {int(seq) + 1} begins")
        await asyncio.sleep(0.05)
        if self.fail:
            raise InfluxAuthFailed("refused", status=401)
        self.log.append(f"store {int(seq) + 1} ends")
        return []


class View:
    decoder = Decoder(prepare([AQ]))


async def test_the_next_batch_is_decoded_while_the_last_is_written_and_acks_keep_order() -> None:
    log: list[str] = []
    batches = [[delivery(n)] for n in range(3)]
    source = FakeSource(batches, log)
    worker = Worker(WorkerConfig(), source, SlowSink(log), View())  # type: ignore[arg-type]
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
    worker = Worker(WorkerConfig(), source, SlowSink(log, fail=True), View())  # type: ignore[arg-type]
    with pytest.raises(InfluxAuthFailed):
        async with asyncio.timeout(5):  # no further message arrives: it must not wait for one
            await worker.run()
    assert not any(entry.startswith("ack") for entry in log)
