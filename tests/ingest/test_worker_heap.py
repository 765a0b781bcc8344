"""A running worker keeps its start-up heap out of full garbage collections (issue 12).

Each full collection walked every object the worker made to start (modules, the registry
snapshot, clients): with the typed pipeline's Point per message they came twice as often, and
the worker's CPU per message rose by about a third (bench/results/ingest.md).
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from devices import Registry
from ingest import BrokerConfig, Worker, run_worker
from lantaarn.localstack import Influx, Mosquitto
from lantaarn.seed import register_fleet
from lantaarn.settings import IngestSettings
from simulators import make_fleet
from timeseries import InfluxConfig, Retention

pytestmark = pytest.mark.anyio


def collected(obj: object) -> bool:
    """Whether the garbage collector's generations (not the frozen heap) hold `obj`."""
    return any(o is obj for o in gc.get_objects())


async def test_the_registry_snapshot_is_out_of_full_collections_while_the_worker_runs(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(6, tenants=1, seed=8)
    tag = uuid.uuid4().hex[:8]
    config = replace(
        IngestSettings(share_group=f"g{tag}", client_id_prefix=f"w{tag}").worker(0),
        rollups=replace(IngestSettings().worker(0).rollups, windows=()),
    )
    workers: list[Worker] = []
    assert gc.get_freeze_count() == 0
    with Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}") as registry:
        register_fleet(registry, fleet)
        stop, ready = asyncio.Event(), asyncio.Event()
        run = asyncio.create_task(
            run_worker(
                config,
                BrokerConfig("::1", mosquitto.port, session_expiry_s=30),
                InfluxConfig(influx.url, database=f"test_{tag}"),
                registry,
                Retention(),
                stop,
                ready,
                observe=workers.append,
            )
        )
        async with asyncio.timeout(30):
            await ready.wait()
        known = next(iter(workers[0].view.decoder.devices.values()))
        try:
            running_frozen = gc.get_freeze_count()
            running_collected = collected(known)
        finally:
            stop.set()
            await run
    assert running_frozen > 0
    assert not running_collected  # a full collection does not walk it
    # Once the worker returns, the collector has the whole heap again: nothing is kept frozen.
    assert gc.get_freeze_count() == 0
    assert collected(known)
