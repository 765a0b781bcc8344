"""A running API keeps its start-up heap out of full garbage collections.

A full collection walked the ~175,000 objects every API process starts with, ~150 ms of CPU in
the middle of whichever request set it off (a day of SensorThings Observations makes ~30,000
objects, so every few such answers): the slowest answers of bench/sta.py were these.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import httpx
import pytest

from api import ApiConfig
from devices import Registry
from lantaarn.localstack import Influx
from lantaarn.serve import bind_free, serve_api
from tests.platform import api_live
from timeseries import InfluxConfig

pytestmark = pytest.mark.anyio


def collected(obj: object) -> bool:
    """Whether the garbage collector's generations (not the frozen heap) hold `obj`."""
    return any(o is obj for o in gc.get_objects())


async def test_the_start_up_heap_is_out_of_full_collections_while_the_api_serves(
    influx: Influx, tmp_path: Path
) -> None:
    registry_url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    Registry(registry_url).close()  # the schema
    config = ApiConfig(registry_url, InfluxConfig(influx.url), anonymous_read=True)
    before = ["made before the API started"]
    assert gc.get_freeze_count() == 0
    sockets, port = bind_free(["::1"])
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_api(config, ["::1"], port, stop, sockets=sockets))
    try:
        async with httpx.AsyncClient(base_url=f"http://[::1]:{port}", timeout=10) as http:
            await api_live(http, within_s=30)
            for _ in range(200):  # frozen just after the server says it has started
                if gc.get_freeze_count():
                    break
                await asyncio.sleep(0.05)
            serving_frozen = gc.get_freeze_count()
            serving_collected = collected(before)
            # Still answers as before.
            assert (await http.get("/v1/device-kinds")).status_code == 200
    finally:
        stop.set()
        await serving
    assert serving_frozen > 100_000
    assert not serving_collected  # a full collection does not walk it
    # Once the API has stopped, the collector has the whole heap again.
    assert gc.get_freeze_count() == 0
    assert collected(before)
