"""What one registry change costs the ingest worker and the API, and their memory per device.

For each fleet size: a SQLite registry of that many simulated devices (kept in `--db-dir` for
the next run), then
- CPU of one change: one device added, then the worker's RegistryView.refresh and the API's
  FleetCache.devices() that follows it (process CPU, threads included; median of `--changes`);
- memory per device: tracemalloc's traced bytes of a fresh view after its first refresh and one
  message from every device (its routes filled), and of a fresh FleetCache, divided by the fleet.

It uses the `ingest` and `api` packages on the path, so the same script measures another
checkout: copied out of bench/ (whose ingest.py would hide the package),
`PYTHONPATH=/work/main python /tmp/registry_scale.py` gives "before".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import orjson

import ingest
from api.fleet import FleetCache
from devices import Registry, topic
from ingest.decode import Decoded, TimeRules
from ingest.registry_view import RegistryView
from lantaarn.seed import register_fleet
from simulators import make_fleet


def _registry(folder: Path, size: int) -> Registry:
    """An open registry of `size` simulated devices, made once per size."""
    path = folder / f"registry-{size}.sqlite3"
    made = path.exists()
    registry = Registry(f"sqlite:///{path}")
    registry.open()
    if not made:
        register_fleet(registry, make_fleet(size, tenants=4))
    return registry


def _cpu_of_changes(registry: Registry, changes: int) -> tuple[float, float, int]:
    """Median CPU seconds of the worker's and the API's catching up with one added device,
    and the devices the view read for the last one."""

    async def run() -> tuple[float, float, int]:
        view = RegistryView(registry, TimeRules())
        fleet = FleetCache(registry)
        await view.refresh()
        await fleet.devices()
        template = (await fleet.devices())[0]
        worker_s, api_s = [], []
        read = 0
        for _ in range(changes):
            new_id = f"bench-{time.time_ns()}"
            registry.add_device(replace(template, device_id=new_id, ipv6_address=None))
            before = getattr(view, "rows_fetched", 0)
            started = time.process_time()
            await view.refresh()
            worker_s.append(time.process_time() - started)
            read = getattr(view, "rows_fetched", 0) - before
            started = time.process_time()
            await fleet.devices(tenants=[template.tenant])
            api_s.append(time.process_time() - started)
        return statistics.median(worker_s), statistics.median(api_s), read

    return asyncio.run(run())


def _memory_per_device(registry: Registry, size: int) -> tuple[float, float, float]:
    """Traced bytes per device of the worker's view (after its first refresh; then with the
    routes of one message per device) and of the API's cache."""
    found = []

    async def worker() -> object:
        view = RegistryView(registry, TimeRules())
        await view.refresh()
        gc.collect()
        found.append((tracemalloc.get_traced_memory()[0] - base) / size)
        out = Decoded()
        payload = orjson.dumps({"metrics": {}})
        now = time.time_ns()
        for known in list(view.decoder.devices.values()):
            device = known.device
            view.decoder.decode(topic(device.tenant, device.device_id), payload, now, out)
        return view

    async def api() -> object:
        fleet = FleetCache(registry)
        await fleet.devices(tenants=["none"])
        return fleet

    for build in (worker, api):
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        held = asyncio.run(build())
        gc.collect()
        found.append((tracemalloc.get_traced_memory()[0] - base) / size)
        tracemalloc.stop()
        del held
    return found[0], found[1], found[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,50000,150000")
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--db-dir", type=Path, default=Path("/tmp/lantaarn-registry-scale"))
    args = parser.parse_args()
    args.db_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(
        f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}), "
        f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, code from "
        f"{Path(str(ingest.__file__)).parent.parent}"
    )
    print()
    print(
        "| devices | worker CPU per change | API CPU per change | devices read per change "
        "| worker bytes/device (with routes) | API bytes/device |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in (int(s) for s in args.sizes.split(",")):
        registry = _registry(args.db_dir, size)
        try:
            worker_s, api_s, read = _cpu_of_changes(registry, args.changes)
            viewed_b, worker_b, api_b = _memory_per_device(registry, size)
        finally:
            registry.close()
        print(
            f"| {size:,} | {worker_s * 1000:,.1f} ms | {api_s * 1000:,.1f} ms | {read:,} "
            f"| {viewed_b:,.0f} ({worker_b:,.0f}) | {api_b:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
