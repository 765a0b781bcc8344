"""A running platform for integration tests: registry, one or more ingest workers, the API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from api import ApiConfig
from devices import Registry
from ingest import BrokerConfig, WorkerStats, run_worker
from ingest.rollups import RollupConfig
from lantaarn.localstack import Influx, Mosquitto
from lantaarn.seed import register_fleet
from lantaarn.serve import bind_free, serve_api
from lantaarn.settings import IngestSettings
from simulators import Fleet
from timeseries import InfluxConfig, Retention


@dataclass
class Platform:
    """What a test can reach: the registry, the API over ::1, the configurations."""

    registry: Registry
    influx: InfluxConfig
    broker: BrokerConfig
    api_port: int
    http: httpx.AsyncClient
    group: str
    stats: list[WorkerStats] = field(default_factory=list)


async def api_live(http: httpx.AsyncClient, within_s: float = 15.0) -> None:
    """Wait until the API `http` is pointed at answers `/v1/health/live` (TimeoutError after
    `within_s`)."""
    async with asyncio.timeout(within_s):
        while True:
            try:
                if (await http.get("/v1/health/live")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_platform(
    mosquitto: Mosquitto,
    influx: Influx,
    folder: Path,
    *,
    fleet: Fleet | None = None,
    workers: int = 1,
    rollups: RollupConfig | None = None,
    anonymous_read: bool = True,
) -> AsyncIterator[Platform]:
    """Start workers and the API against the session's broker and database; stop them after.

    Every call gets its own database, share group and client ids, so tests do not meet. The
    workers' rollup job is off unless `rollups` is given (tests drive it with their own clock).
    """
    tag = uuid.uuid4().hex[:10]
    influx_config = InfluxConfig(influx.url, database=f"test_{tag}")
    # A short session expiry: the test's workers leave no session queueing messages for the
    # rest of the test run on the shared broker.
    broker = BrokerConfig("::1", mosquitto.port, session_expiry_s=30)
    sockets, api_port = bind_free(["::1", "127.0.0.1"])
    with Registry(f"sqlite:///{folder / f'registry-{tag}.sqlite3'}") as registry:
        if fleet is not None:
            register_fleet(registry, fleet)
        stop = asyncio.Event()
        readies = [asyncio.Event() for _ in range(workers)]
        configs = [
            replace(
                IngestSettings(
                    share_group=f"g{tag}", client_id_prefix=f"ingest-{tag}", flush_interval_s=0.05
                ).worker(i, workers),
                registry_refresh_s=0.2,
                rollups=rollups or RollupConfig(windows=(), grace_s=0),
            )
            for i in range(workers)
        ]
        api_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            runs = [
                tasks.create_task(
                    run_worker(c, broker, influx_config, registry, Retention(), stop, ready)
                )
                for c, ready in zip(configs, readies, strict=True)
            ]
            api = tasks.create_task(
                serve_api(
                    ApiConfig(registry.url, influx_config, anonymous_read=anonymous_read),
                    ["::1", "127.0.0.1"],
                    api_port,
                    api_stop,
                    sockets=sockets,
                )
            )
            async with asyncio.timeout(30):
                for ready in readies:
                    await ready.wait()
            async with httpx.AsyncClient(base_url=f"http://[::1]:{api_port}", timeout=30) as http:
                await api_live(http)
                platform = Platform(registry, influx_config, broker, api_port, http, f"g{tag}")
                try:
                    yield platform
                finally:
                    stop.set()
                    api_stop.set()
                    platform.stats.extend([await r for r in runs])
                    await api
