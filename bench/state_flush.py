"""The worker's device-state flush per changed device: CPU time, or instructions under callgrind.

A SQLite registry with `--devices` lampposts; a StateRecorder is told one batch in which every
device has a newer six-metric reading (as in `bench.ingest`'s drain and in any fleet reporting
less often than once a second), then flushes; `--flushes` times. The registry and the first
flush (inserts) are made before the count starts, so what is counted is steady state: every
device's row updated.

    .venv/bin/python -m bench.state_flush --devices 2000 --flushes 10

Instructions, independent of the machine's load: under callgrind with instrumentation off at
start, `--callgrind` switches it on for the counted flushes only (`callgrind_control`); the
`totals:` of all threads' files over flushes x devices is the count per changed device:

    valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
        --callgrind-out-file=/tmp/sf/cg \
        .venv/bin/python -m bench.state_flush --flushes 3 --callgrind
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

from devices import Registry
from ingest.device_state import StateRecorder
from lantaarn.seed import register_fleet
from simulators import make_fleet
from timeseries.lineprotocol import Point, tags
from timeseries.schema import raw_measurement


def readings(devices: list[tuple[str, str]], at_ns: int) -> list[Point]:
    """One lamppost reading per device, as the decoder makes them."""
    measurement = raw_measurement("lamppost")
    return [
        Point(
            measurement,
            tags(device_id=device_id, tenant=tenant),
            {
                "dim_level": float(n % 101),
                "active_power": 20.0 + n % 40,
                "active_energy": 1000.0 + n / 10,
                "operating_hours": 5000.0 + n / 100,
                "lamp_failure": 0.0,
                "supply_voltage": 229.5,
                "seq": n,
            },
            at_ns + n,
        )
        for n, (device_id, tenant) in enumerate(devices)
    ]


def instrument(on: bool) -> None:
    """Switch callgrind's instrumentation of this process on or off."""
    state = "on" if on else "off"
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True)


async def run(devices: int, flushes: int, callgrind: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'registry.sqlite3'}"
        fleet = make_fleet(devices * 3, tenants=2, seed=5)
        lamps = [(d.device_id, d.tenant) for d in fleet.devices if d.kind == "lamppost"][:devices]
        with Registry(url) as registry:
            register_fleet(registry, fleet)
            recorder = StateRecorder(registry)
            recorder.note(readings(lamps, 1_000_000_000))
            await recorder.flush()  # the rows exist: what follows updates them
            batches = [readings(lamps, (2 + i) * 1_000_000_000) for i in range(flushes)]
            if callgrind:
                instrument(True)
            started = time.process_time()  # every thread of this process
            for batch in batches:
                recorder.note(batch)
                await recorder.flush()
            spent = time.process_time() - started
            if callgrind:
                instrument(False)
    if flushes:
        per_device = spent / (flushes * len(lamps)) * 1e6
        print(
            f"{len(lamps)} devices, {flushes} flushes: {per_device:.1f} µs CPU per changed device"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--flushes", type=int, default=10)
    parser.add_argument("--callgrind", action="store_true", help="count only the flushes")
    args = parser.parse_args()
    asyncio.run(run(args.devices, args.flushes, args.callgrind))


if __name__ == "__main__":
    main()
