"""A live API for the API's tests: a SQLite registry, a real InfluxDB with readings, keys.

The server runs with uvicorn in a thread of its own, so tests (and Schemathesis) talk to it over
real HTTP, the way clients do.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api import ApiConfig
from api.keys import KeyStore, Role
from devices import DEVICE_KINDS, Device, Registry
from lantaarn.localstack import Influx
from lantaarn.seed import register_fleet
from lantaarn.serve import bind_free, serve_api
from simulators import make_fleet
from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.schema import RAW_RP, raw_measurement

READINGS_PER_DEVICE = 5
TENANT_A = "GM0363"
TENANT_B = "GM0344"


@dataclass
class World:
    """What the API serves: its configuration, the seeded devices, keys by their use."""

    config: ApiConfig
    devices: list[Device]
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def of_tenant(self, tenant: str) -> list[Device]:
        """The seeded devices of one tenant."""
        return [d for d in self.devices if d.tenant == tenant]


async def _write_readings(config: InfluxConfig, devices: list[Device]) -> None:
    now_ns = time.time_ns()
    lines = []
    for device in devices:
        kind = DEVICE_KINDS[device.kind]
        series = series_key(
            raw_measurement(kind.name), {"tenant": device.tenant, "device_id": device.device_id}
        )
        for i in range(READINGS_PER_DEVICE):
            fields: dict[str, float | int | bool | str] = {
                m.name: m.minimum + (m.maximum - m.minimum) * (i + 1) / (READINGS_PER_DEVICE + 2)
                for m in kind.metrics
            }
            fields["seq"] = i
            lines.append(line(series, fields, now_ns - (READINGS_PER_DEVICE - i) * 60_000_000_000))
    async with InfluxClient(config) as client:
        await ensure_schema(client, Retention())
        await client.write("\n".join(lines).encode(), retention_policy=RAW_RP)


def seed_world(influx: Influx, folder: Path, *, anonymous_read: bool = False) -> World:
    """A registry of two tenants' devices with readings of the last minutes, and API keys."""
    registry_url = f"sqlite:///{folder / 'registry.sqlite3'}"
    influx_config = InfluxConfig(influx.url, database=f"api_{uuid.uuid4().hex[:10]}")
    fleet = make_fleet(12, tenants=2, seed=7)
    with Registry(registry_url) as registry:
        register_fleet(registry, fleet)
        devices = registry.devices()
    asyncio.run(_write_readings(influx_config, devices))
    world = World(
        ApiConfig(registry_url, influx_config, anonymous_read=anonymous_read), list(devices)
    )
    with KeyStore(registry_url) as store:
        for use, role, tenants in (
            ("admin", Role.ADMIN, None),
            ("viewer_a", Role.VIEWER, [TENANT_A]),
            ("viewer_b", Role.VIEWER, [TENANT_B]),
            ("operator_a", Role.OPERATOR, [TENANT_A]),
            ("revoked", Role.ADMIN, None),
        ):
            key, secret = store.create(role, tenants, name=use)
            world.keys[use] = secret
            world.key_ids[use] = key.key_id
        store.revoke(world.key_ids["revoked"])
    return world


@contextmanager
def serving(
    config: ApiConfig, hosts: tuple[str, ...] = ("127.0.0.1",), **options: Any
) -> Iterator[str]:
    """Serve the API on `hosts` (same port) in a thread; yields the base URL of the first.

    `options` go to `serve_api` (certificate, trusted proxies).
    """
    sockets, port = bind_free(list(hosts))
    started = threading.Event()
    loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop_box.append((asyncio.get_running_loop(), stop))
        started.set()
        await serve_api(config, list(hosts), port, stop, sockets=sockets, **options)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="live-api", daemon=True)
    thread.start()
    assert started.wait(10)
    scheme = "https" if options.get("certfile") else "http"
    url = (
        f"{scheme}://{hosts[0]}:{port}"
        if ":" not in hosts[0]
        else f"{scheme}://[{hosts[0]}]:{port}"
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{url}/v1/health/live", verify=False).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API at {url} did not come up")
        time.sleep(0.05)
    try:
        yield url
    finally:
        loop, stop = loop_box[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        assert not thread.is_alive(), "the API did not stop"
