"""Scale-down on real processes: a retired worker's session is drained, then deleted.

Mosquitto keeps routing a shared subscription's messages to a member whose persistent session
is offline. `lantaarn ingest --index N --leave` must store what that session holds and make the
broker forget it, so that afterwards the workers that remain get every message.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices import Registry
from tests.ingest.processes import publish_all
from tests.ingest.test_faults import (
    Stack,
    assert_reconciled,
    messages,
    private_stack,
    readings,
    rejected,
    stored,
    wait_until_stored,
)
from tests.ingest.test_source import session_present

pytestmark = pytest.mark.slow


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Stack]:
    """A private broker, database and registry for two worker processes (ingest-0, ingest-1)."""
    # Two workers and a leaver: no /metrics ports to share out.
    with private_stack(tmp_path, seed=22, metrics_port=0) as made:
        yield made


async def settled_count(stack: Stack, quiet_s: float = 2.0, timeout_s: float = 30.0) -> int:
    """How many readings are stored once the count stops growing for `quiet_s` seconds."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(await stored(stack))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        await asyncio.sleep(0.2)
    return last


@pytest.mark.anyio
async def test_leaving_drains_a_stopped_workers_session_and_strands_nothing_after(
    two_workers: Stack,
) -> None:
    stack = two_workers
    stays, retired = stack.worker(0), stack.worker(1)
    stays.start()
    retired.start()
    assert retired.terminate() < 10.0  # scaled down: its session stays a share member

    # About half of these are routed to ingest-1's offline session and wait there.
    sent = readings(stack, 4000)
    await asyncio.to_thread(publish_all, stack.mosquitto.port, messages(stack, sent))
    before = await settled_count(stack)
    assert 0 < before < len(sent) * 3 // 4, f"{before} of {len(sent)} stored without ingest-1"

    code, output = await asyncio.to_thread(retired.leave, 2.0)
    assert code == 0, output[-3000:]
    assert "unsubscribed from" in output
    drained = re.search(r"ingest-1 left: drained (\d+) messages", output)
    assert drained is not None, output[-3000:]
    assert int(drained.group(1)) >= len(sent) - before  # redeliveries may add a few
    assert_reconciled(sent, await wait_until_stored(stack, len(sent), timeout_s=30))

    # The broker forgot ingest-1: nothing is routed to it, ingest-0 alone gets everything.
    more = readings(stack, 2000, first=len(sent))
    await asyncio.to_thread(publish_all, stack.mosquitto.port, messages(stack, more))
    got = await wait_until_stored(stack, len(sent) + len(more), timeout_s=8)
    assert_reconciled(sent | more, got)
    assert not await session_present(stack.mosquitto.port, "ingest-1")
    stays.terminate()
    assert await rejected(stack) == {}

    # What Mosquitto saw (its log reaches the file when it exits): ingest-1 connected three
    # times, as a worker, as the leaver and as the probe above, and never since.
    stack.mosquitto.stop()
    log = (stack.folder / "mosquitto" / "mosquitto.log").read_text()
    visits = re.findall(r"New client connected from \S+ as ingest-1 \(p5, c0", log)
    assert len(visits) == 3, log[-3000:]


@pytest.mark.anyio
async def test_leaving_a_session_that_holds_nothing_is_quick_and_harmless(
    two_workers: Stack,
) -> None:
    stack = two_workers
    retired = stack.worker(3)  # never ran: the broker has no session for it
    started = time.monotonic()
    code, output = await asyncio.to_thread(retired.leave, 0.5)
    assert code == 0, output[-3000:]
    assert "ingest-3 left: drained 0 messages" in output
    assert time.monotonic() - started < 20
    assert not await session_present(stack.mosquitto.port, "ingest-3")


@pytest.mark.anyio
async def test_leaving_records_the_drained_devices_state(two_workers: Stack) -> None:
    """What the leaver stores also reaches the device-state store (/v1/latest, /v1/summary)."""
    stack = two_workers
    first, second = stack.worker(0), stack.worker(1)
    first.start()
    second.start()
    first.terminate()
    second.terminate()  # both sessions offline: each holds about half of what follows
    sent = readings(stack, 600)
    await asyncio.to_thread(publish_all, stack.mosquitto.port, messages(stack, sent))

    code, output = await asyncio.to_thread(second.leave, 1.0)
    assert code == 0, output[-3000:]
    drained = await stored(stack)  # ingest-1's share only: ingest-0 is not running
    assert 0 < len(drained) < len(sent)
    newest: dict[str, int] = {}
    for device_id, ts in drained:
        newest[device_id] = max(ts, newest.get(device_id, 0))
    with Registry(stack.env["LANTAARN_REGISTRY_URL"]) as registry:
        states = registry.device_states(d for _t, d, _k in stack.devices)
        counted = registry.minute_counts(None, 0)
    assert {d: s.last_ns for d, s in states.items()} == newest
    assert sum(n for n, _r in counted.values()) >= len(drained)  # redeliveries may add a few
