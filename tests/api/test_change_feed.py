"""The shared change feed behind /v1/events on SQLite and PostgreSQL: one read per tick for every
listener of a tenant set, only that set's devices, and a listener that does not keep up is told
to resync instead of holding an ever longer queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import orjson
import pytest
from fastapi import Request

import api.routes.events as events_route
from api.routes.events import ChangeFeed, Listener, _hand_out
from api.summary import SummaryCache
from devices import Device, Registry
from devices.registry import ReadingUpdate, StateRecord
from tests.devices.conftest import AMSTERDAM, UTRECHT, registry, registry_url

__all__ = ["registry", "registry_url"]  # the fixtures, shared with tests/devices

pytestmark = pytest.mark.anyio


@pytest.fixture
def quick() -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setattr(events_route, "QUEUED_EVENTS", 2)
    yield
    patch.undo()


def _devices(registry: Registry) -> tuple[Device, Device]:
    ours = Device("feed-a", AMSTERDAM.code, "air_quality", "a", 52.37, 4.89)
    theirs = Device("feed-b", UTRECHT.code, "air_quality", "b", 52.09, 5.12)
    registry.add_device(ours)
    registry.add_device(theirs)
    return ours, theirs


def _record(registry: Registry, devices: tuple[Device, ...], value: float) -> None:
    now = time.time_ns()
    registry.record_states(
        [ReadingUpdate(d.device_id, d.tenant, now, {"pm25": value}) for d in devices],
        now_ns=now,
    )


def _ids(event: bytes) -> list[str]:
    data = event.split(b"data: ", 1)[1]
    return [d["deviceId"] for d in orjson.loads(data)["devices"]]


async def test_one_read_per_tick_for_every_listener_of_the_set(
    registry: Registry, quick: None
) -> None:
    ours, theirs = _devices(registry)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), (0, ""))
    listeners = [Listener() for _ in range(3)]
    feed.listeners.update(listeners)
    _record(registry, (ours, theirs), 1.0)
    await feed.tick()
    assert feed.reads == 1  # one read (fewer changes than a batch) for three listeners
    events = [listener.waiting.popleft() for listener in listeners]
    assert all(event is events[0] for event in events)  # serialised once, the same bytes
    assert _ids(events[0]) == [ours.device_id]  # the other tenant's device is not in it


async def test_a_listener_that_does_not_keep_up_is_told_to_resync(
    registry: Registry, quick: None
) -> None:
    ours, _theirs = _devices(registry)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), (0, ""))
    slow, keeping_up = Listener(), Listener()
    feed.listeners.update((slow, keeping_up))
    got: list[bytes] = []
    for value in range(6):
        _record(registry, (ours,), float(value))
        await feed.tick()
        got.extend(keeping_up.waiting)
        keeping_up.waiting.clear()
        assert len(slow.waiting) <= events_route.QUEUED_EVENTS
    assert len(got) == 6  # every change reached the listener that reads
    assert slow.behind
    assert not slow.waiting
    assert slow.dropped == 6
    assert not keeping_up.behind


async def test_a_reconnecting_listener_catches_up_to_the_feed(
    registry: Registry, quick: None
) -> None:
    ours, theirs = _devices(registry)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), (0, ""))
    _record(registry, (ours,), 1.0)
    await feed.tick()
    seen = feed.after  # where a browser that got this event left off
    _record(registry, (ours, theirs), 2.0)
    await feed.tick()  # the feed moved on while that browser was away
    gap = [event async for event in feed.catch_up(seen)]
    assert len(gap) == 1
    assert _ids(gap[0]) == [ours.device_id]
    assert b'"pm25":2.0' in gap[0]
    assert [event async for event in feed.catch_up(feed.after)] == []  # nothing missed


async def test_a_listener_naming_devices_is_sent_their_changes_only(registry: Registry) -> None:
    ours, theirs = _devices(registry)
    other = Device("feed-c", AMSTERDAM.code, "air_quality", "c", 52.38, 4.9)
    registry.add_device(other)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), (0, ""))
    everything = Listener()
    named = Listener(frozenset({other.device_id}))
    twice = Listener(frozenset({other.device_id}))
    theirs_named = Listener(frozenset({theirs.device_id}))  # another tenant's: never sent
    nothing = Listener(frozenset())
    feed.listeners.update((everything, named, twice, theirs_named, nothing))
    _record(registry, (ours, theirs), 1.0)
    await feed.tick()
    assert [_ids(e) for e in everything.waiting] == [[ours.device_id]]
    for quiet in (named, twice, theirs_named, nothing):
        assert not quiet.waiting
    _record(registry, (ours, other, theirs), 2.0)
    await feed.tick()
    assert _ids(everything.waiting[-1]) == [ours.device_id, other.device_id]
    assert [_ids(e) for e in named.waiting] == [[other.device_id]]
    assert named.waiting[0] == twice.waiting[0]
    assert f"id: {feed.after[0]}.{feed.after[1]}".encode() in named.waiting[0]
    assert not theirs_named.waiting
    assert not nothing.waiting
    # Every listener has been handed all it is to get up to where the feed read, events or not
    # (a stream's summary carries that position as its id).
    assert {listener.position for listener in feed.listeners} == {feed.after}
    assert feed.reads == 2  # one read per tick, however many listeners name what


async def test_a_feed_of_named_listeners_still_keeps_its_board_current(
    registry: Registry,
) -> None:
    ours, _theirs = _devices(registry)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), registry.change_position())
    feed.listeners.add(Listener(frozenset()))
    await feed.tick()
    _record(registry, (ours,), 3.0)
    await feed.tick()
    now = time.time_ns()
    assert feed.board.statuses(now, 10)[0] == registry.status_counts([AMSTERDAM.code], now)
    [count] = feed.board.statuses(now, 10)[0]
    assert count.online == 1  # the reading no stream was sent reached the board


async def test_catching_up_sends_a_named_listener_its_devices_only(registry: Registry) -> None:
    ours, _theirs = _devices(registry)
    other = Device("feed-c", AMSTERDAM.code, "air_quality", "c", 52.38, 4.9)
    registry.add_device(other)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), (0, ""))
    feed.listeners.add(Listener())
    await feed.tick()
    seen = feed.after
    _record(registry, (ours, other), 4.0)
    await feed.tick()
    gap = [event async for event in feed.catch_up(seen, frozenset({other.device_id}))]
    assert [_ids(e) for e in gap] == [[other.device_id]]
    assert [e async for e in feed.catch_up(seen, frozenset({"feed-z"}))] == []


class Joining:
    """Who wants what, as a feed asks: nobody for the first `calls` questions, then a stream
    naming `devices` has joined."""

    def __init__(self, calls: int, devices: frozenset[str]) -> None:
        self.calls = calls
        self.devices = devices
        self.asked = 0

    def __call__(self) -> frozenset[str]:
        self.asked += 1
        return frozenset() if self.asked <= self.calls else self.devices


# A feed asks before the read, once the rows are in, again after following the registry (a
# device it did not know), and once more at the end: the stream joins during the follow, or
# only after everything else was read.
@pytest.mark.parametrize("calls", [2, 3])
async def test_a_stream_joining_during_a_read_gets_its_devices_of_that_batch(
    registry: Registry, calls: int
) -> None:
    ours, _theirs = _devices(registry)
    late = Device("feed-d", AMSTERDAM.code, "air_quality", "d", 52.38, 4.9)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), registry.change_position())
    await feed.board.load()
    registry.add_device(late)  # not on the board yet: followed during the read
    _record(registry, (ours, late), 5.0)
    joining = Joining(calls, frozenset({ours.device_id, late.device_id}))
    shown, read, _ = await feed._read(feed.after, None, joining)
    assert read == 2
    assert joining.asked == calls + 2  # asked once more after the last read
    assert sorted(s[0] for s in shown) == [ours.device_id, late.device_id]
    assert all(s[3] == '{"pm25":5.0}' for s in shown)


class _Request:
    """What `_stream` uses of a request: the app's state, and whether the client has gone."""

    def __init__(self, registry: Registry) -> None:
        cache = SummaryCache(registry, max_age_s=0.0, cost_factor=0.0)  # computed each time
        self.app = SimpleNamespace(state=SimpleNamespace(summaries=cache, change_feeds={}))

    async def is_disconnected(self) -> bool:
        return False


async def test_a_stream_fallen_behind_while_sending_says_resync_before_a_summary_id(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _devices(registry)

    async def idle(self: ChangeFeed, feeds: object) -> None:  # the test hands events out
        await asyncio.Event().wait()

    monkeypatch.setattr(ChangeFeed, "run", idle)
    request = _Request(registry)
    stream = events_route._stream(cast(Request, request), registry, [AMSTERDAM.code], None, None)
    try:
        assert await anext(stream) == b"retry: 5000\n\n"
        assert (await anext(stream)).startswith(b"event: summary\nid: ")
        [feed] = request.app.state.change_feeds.values()
        [listener] = feed.listeners
        # The next summary differs (readings counted this minute): it would be sent.
        now = time.time_ns()
        minute = now - now % (60 * 1_000_000_000)
        registry.record_states([], minutes={(AMSTERDAM.code, minute): (10, 0)}, now_ns=now)
        listener.offer(b"event: devices\ndata: {}\n\n")
        assert await anext(stream) == b"event: devices\ndata: {}\n\n"
        # While that event was being sent, the client read too slowly: events were dropped,
        # and the listener's position went past them.
        for _ in range(events_route.QUEUED_EVENTS + 1):
            listener.offer(b"event: devices\ndata: {}\n\n")
            _hand_out([], (feed.after[0] + 1, "zzz"), [listener])
        assert listener.behind
        # Not a summary whose id would let a reconnecting browser skip what was dropped.
        assert await anext(stream) == events_route._RESYNC
        assert (await anext(stream)).startswith(b"event: summary\nid: ")
    finally:
        await stream.aclose()
        if feed.task is not None:
            feed.task.cancel()


async def test_a_feed_of_named_listeners_reads_the_values_of_their_devices_only(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _theirs = _devices(registry)
    other = Device("feed-c", AMSTERDAM.code, "air_quality", "c", 52.38, 4.9)
    registry.add_device(other)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), registry.change_position())
    named = Listener(frozenset({other.device_id}))
    feed.listeners.add(named)
    await feed.tick()  # reads the board
    asked: list[list[str]] = []
    read_records = registry.state_records

    def records(device_ids: list[str]) -> list[StateRecord]:
        asked.append(list(device_ids))
        return read_records(device_ids)

    def every_row(*args: object) -> list[StateRecord]:
        raise AssertionError("no stream is sent every change: no read of every row's values")

    monkeypatch.setattr(registry, "state_records", records)
    monkeypatch.setattr(registry, "changed_records", every_row)
    _record(registry, (ours, other), 7.0)
    await feed.tick()
    assert asked == [[other.device_id]]  # the values of the named device only
    assert [_ids(e) for e in named.waiting] == [[other.device_id]]
    assert b'"pm25":7.0' in named.waiting[0]
    now = time.time_ns()  # and both changes reached the board
    assert feed.board.statuses(now, 10)[0] == registry.status_counts([AMSTERDAM.code], now)
