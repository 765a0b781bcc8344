"""/v1/events with a device whose state is rewritten more often than the feed reads: a live API
over real HTTP, its SQLite registry written as a worker's flushes would, with the event stream's
real timings (nothing patched).

A device re-stamped every half second must still reach an open dashboard while it keeps
reporting, and its last state must arrive once it stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from devices import DEVICE_KINDS, Registry
from devices.registry import ReadingUpdate
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, World, seed_world, serving

WRITE_EVERY_S = 0.5
WRITE_FOR_S = 8.0


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    return seed_world(influx, tmp_path_factory.mktemp("busy"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    with serving(world.config) as url:
        yield url


def test_a_device_written_every_half_second_reaches_the_stream(api: str, world: World) -> None:
    device = sorted(world.of_tenant(TENANT_A), key=lambda d: d.device_id)[0]
    metric = DEVICE_KINDS[device.kind].metrics[0]
    written: list[float] = []
    stop = threading.Event()

    def write() -> None:
        # A worker's flushes: every half second a newer reading of the same device.
        value = metric.minimum
        with Registry(world.config.registry_url) as registry:
            ends = time.monotonic() + WRITE_FOR_S
            while time.monotonic() < ends and not stop.is_set():
                now = time.time_ns()
                value += 0.25
                registry.record_states(
                    [ReadingUpdate(device.device_id, device.tenant, now, {metric.name: value})],
                    now_ns=now,
                )
                written.append(value)
                stop.wait(WRITE_EVERY_S)

    headers = {"Authorization": f"Bearer {world.keys['viewer_a']}"}
    seen: list[tuple[float, float]] = []  # (seconds since the writer started, value)
    writer = threading.Thread(target=write)
    with httpx.stream("GET", f"{api}/v1/events", headers=headers, timeout=10) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:  # the first summary: the stream is open and the feed placed
            if line.startswith("data: "):
                break
        started = time.monotonic()
        writer.start()
        try:
            deadline = started + WRITE_FOR_S + 6
            for line in lines:
                assert time.monotonic() < deadline, f"the device's last state never came: {seen}"
                if not line.startswith('data: {"devices"'):
                    continue
                for item in orjson.loads(line.removeprefix("data: "))["devices"]:
                    if item["deviceId"] == device.device_id:
                        seen.append((time.monotonic() - started, item["metrics"][metric.name]))
                if not writer.is_alive() and seen and seen[-1][1] == written[-1]:
                    break
        finally:
            stop.set()
            writer.join(10)
    assert len(written) >= WRITE_FOR_S / WRITE_EVERY_S / 2  # it did keep writing
    # It reached the dashboard while it was still being written, within a few seconds ...
    assert seen[0][0] < 5.0, seen
    assert sum(1 for at, _ in seen if at < WRITE_FOR_S) >= 2, seen
    # ... in the order it was written, each state one that was written, the last one last.
    values = [value for _, value in seen]
    assert values == sorted(values)
    assert set(values) <= set(written)
    assert values[-1] == written[-1]
