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
WRITES = 16  # 8 s of writes


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
    values_written = [metric.minimum + 0.25 * n for n in range(1, WRITES + 1)]
    written_at: list[float] = []  # seconds since the writer started
    stop = threading.Event()

    def write() -> None:
        # A worker's flushes: every half second a newer reading of the same device.
        with Registry(world.config.registry_url) as registry:
            for value in values_written:
                if stop.is_set():
                    return
                now = time.time_ns()
                registry.record_states(
                    [ReadingUpdate(device.device_id, device.tenant, now, {metric.name: value})],
                    now_ns=now,
                )
                written_at.append(time.monotonic() - started)
                stop.wait(WRITE_EVERY_S)

    headers = {"Authorization": f"Bearer {world.keys['viewer_a']}"}
    seen: list[tuple[float, float]] = []  # (seconds since the writer started, value)
    writer = threading.Thread(target=write)
    # Reads wait past the keep-alive comments (15 s): the assertions say what went wrong.
    timeout = httpx.Timeout(10, read=20)
    with httpx.stream("GET", f"{api}/v1/events", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:  # the first summary: the stream is open and the feed placed
            if line.startswith("data: "):
                break
        started = time.monotonic()
        writer.start()
        try:
            deadline = started + WRITES * WRITE_EVERY_S + 6
            for line in lines:
                assert time.monotonic() < deadline, f"the device's last state never came: {seen}"
                if not line.startswith('data: {"devices"'):
                    continue
                at = time.monotonic() - started
                seen.extend(
                    (at, item["metrics"][metric.name])
                    for item in orjson.loads(line.removeprefix("data: "))["devices"]
                    if item["deviceId"] == device.device_id
                )
                if seen and seen[-1][1] == values_written[-1]:
                    break
        finally:
            stop.set()
            writer.join(10)
    assert len(written_at) == WRITES
    # It reached the dashboard while it was still being written, within a few seconds ...
    assert seen[0][0] < 5.0, seen
    assert sum(1 for at, _ in seen if at < written_at[-1]) >= 2, seen
    # ... in the order it was written, each state one that was written, the last one last.
    values = [value for _, value in seen]
    assert values == sorted(set(values))
    assert set(values) <= set(values_written)
