"""The status board a change feed keeps (api/status_board.py), on SQLite and PostgreSQL: it
decides each device's status by the same rule as the registry's SQL (devices.registry
.live_status), counts and finds the longest silent as the registry does, leaves retired
devices out, and follows devices registered, changed and retired after it was read."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest

from api.routes.events import ChangeFeed, Listener
from api.status_board import StatusBoard
from api.summary import compute
from devices import DEVICE_KINDS, Device, Registry
from devices.registry import ReadingUpdate, StatusUpdate, live_status
from tests.devices.conftest import AMSTERDAM, UTRECHT, registry, registry_url

__all__ = ["registry", "registry_url"]  # the fixtures, shared with tests/devices

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
NOW = 1_800_000_000 * NS
INTERVAL = DEVICE_KINDS["air_quality"].interval_s


def _device(n: int, tenant: str = AMSTERDAM.code, kind: str = "air_quality") -> Device:
    return Device(
        device_id=f"b{n:04d}",
        tenant=tenant,
        kind=kind,
        name=f"device {n}",
        latitude=52.37,
        longitude=4.89,
        created_at=datetime.fromtimestamp(NOW / NS - 86400 + n, UTC),
    )


def _reading(device: Device, ts: int) -> ReadingUpdate:
    return ReadingUpdate(device.device_id, device.tenant, ts, {"pm25": 1.0})


def _fleet(registry: Registry) -> list[Device]:
    """Every status: online, silent by the kind's interval and by its own, offline, offline
    and then a reading after it, never seen, retired; two kinds, two tenants."""
    devices = [_device(n) for n in range(8)]
    devices.append(_device(8, kind="noise"))
    devices.append(_device(9, tenant=UTRECHT.code))
    devices.append(replace(_device(10), interval_s=1.0))
    registry.add_devices(devices)
    registry.retire("b0005")
    registry.record_states(
        [
            _reading(devices[0], NOW - NS),
            _reading(devices[1], NOW - int(4 * INTERVAL * NS)),  # silent
            _reading(devices[2], NOW - NS),  # offline below
            _reading(devices[3], NOW - NS),  # offline below, then a newer reading
            _reading(devices[5], NOW - NS),  # retired
            _reading(devices[8], NOW - NS),
            _reading(devices[9], NOW - NS),
            _reading(devices[10], NOW - 10 * NS),  # its own interval: silent after 3 s
        ],
        [
            StatusUpdate("b0002", AMSTERDAM.code, "offline", NOW),
            StatusUpdate("b0003", AMSTERDAM.code, "offline", NOW - 2 * NS),
        ],
        now_ns=NOW,
    )  # b0004, b0006, b0007 never seen
    return devices


async def test_the_board_counts_and_finds_the_silent_as_the_registry_does(
    registry: Registry,
) -> None:
    _fleet(registry)
    for tenants in [None, (AMSTERDAM.code,), (UTRECHT.code,)]:
        board = StatusBoard(registry, tenants)
        await board.load()
        for at in (NOW, NOW + 3 * NS, NOW + int(10 * INTERVAL * NS)):
            counts, silent = board.statuses(at, 10)
            assert counts == registry.status_counts(tenants, at), (tenants, at)
            expected = [(d.device_id, last) for d, last in registry.most_silent(tenants, at, 10)]
            assert [(s[0], s[3]) for s in silent] == expected
            # fewer than there are: the same first ones (ties of never seen broken by id)
            assert [s[0] for s in board.statuses(at, 2)[1]] == [i for i, _ in expected[:2]]
    # The summary made from the board is the one made from the registry.
    board = StatusBoard(registry, (AMSTERDAM.code,))
    await board.load()
    from_sql = compute(registry, [AMSTERDAM.code], NOW)
    from_board = compute(
        registry,
        [AMSTERDAM.code],
        NOW,
        statuses=board.statuses(NOW, 10),
    )
    assert from_board == from_sql
    assert from_sql.worst.silence, "the fleet has silent devices to list"


async def test_each_change_is_shown_with_the_status_of_the_rule(registry: Registry) -> None:
    devices = _fleet(registry)
    board = StatusBoard(registry, None)
    await board.load()
    rows = registry.state_changes(None, (0, ""), None, 100)
    noted = board.note(rows)
    states = registry.device_states(d.device_id for d in devices)
    by_id = {d.device_id: d for d in devices}
    assert noted.unknown == []
    # every device with a state but the retired one, in change order
    assert noted.show == [r[0] for r in rows if r[0] != "b0005"]
    # each shown with its values and the rule's status
    shown = board.shown(registry.state_records(noted.show), NOW)
    assert {s[0]: s[1] for s in shown} == {
        i: live_status(by_id[i], state, NOW) for i, state in states.items() if i != "b0005"
    }
    assert {s[0]: s[1] for s in shown}["b0003"] == "online"  # read after its last will
    assert all(orjson.loads(s[3]) == states[s[0]].metrics for s in shown)
    # A retired device's row is not shown even when asked for by id.
    assert board.shown(registry.state_records(["b0005"]), NOW) == []


async def test_the_board_follows_devices_registered_changed_and_retired(
    registry: Registry,
) -> None:
    _fleet(registry)
    board = StatusBoard(registry, (AMSTERDAM.code,))
    await board.load()
    late = _device(20)
    registry.add_device(late)
    registry.add_device(_device(21, tenant=UTRECHT.code))  # not of the board's set
    registry.update("b0000", {"interval_s": 1.0})  # silent after 3 s from now on
    registry.retire("b0008")
    registry.record_states([_reading(late, NOW - NS)], now_ns=NOW)
    start = (0, "")
    rows = registry.state_changes([AMSTERDAM.code], start, None, 100)
    assert [r[0] for r in board.note(rows).unknown] == ["b0020"]
    await board.follow()
    assert board.loads == 1  # followed, not read again
    noted = board.note(rows)
    assert "b0020" in noted.show
    assert "b0008" not in noted.show  # retired since
    later = NOW + 5 * NS
    assert board.statuses(later, 10)[0] == registry.status_counts([AMSTERDAM.code], later)


async def test_a_feed_sends_statuses_from_its_board_and_counts_without_the_registry(
    registry: Registry,
) -> None:
    devices = _fleet(registry)
    feed = ChangeFeed(registry, (AMSTERDAM.code,), registry.change_position())
    listener = Listener()
    feed.listeners.add(listener)
    await feed.tick()  # reads the board
    assert feed.board.ready
    late = _device(30)
    registry.add_device(late)  # registered after the board was read: followed on the way
    now = time.time_ns()  # the feed decides statuses by the clock
    registry.record_states(
        [_reading(late, now), _reading(devices[6], now), _reading(devices[4], now - 3600 * NS)],
        [StatusUpdate("b0000", AMSTERDAM.code, "offline", NOW)],
        now_ns=now,
    )
    await feed.tick()
    [event] = listener.waiting
    shown = orjson.loads(event.split(b"data: ", 1)[1])["devices"]
    statuses = {d["deviceId"]: d["status"] for d in shown}
    assert statuses == {"b0000": "offline", "b0004": "silent", "b0006": "online", "b0030": "online"}
    assert feed.board.statuses(now, 10)[0] == registry.status_counts([AMSTERDAM.code], now)
    assert feed.board.loads == 1


async def test_a_board_applies_every_row_but_shows_only_the_devices_wanted(
    registry: Registry,
) -> None:
    devices = _fleet(registry)
    board = StatusBoard(registry, None)
    await board.load()
    later = NOW + 60 * NS
    start = registry.change_position()
    # Readings of b0001 (silent until now) and b0004 (never seen): both count as online from
    # here on, though only b0004 is wanted (and b9999 is no device of the board).
    registry.record_states([_reading(devices[1], later), _reading(devices[4], later)], now_ns=later)
    rows = registry.state_changes(None, start, None, 100)
    assert sorted(r[0] for r in rows) == ["b0001", "b0004"]
    assert board.note(rows, frozenset({"b0004", "b9999"})).show == ["b0004"]
    assert board.statuses(later, 10)[0] == registry.status_counts(None, later)
    # None of those wanted among the rows: nothing shown, every row applied all the same.
    assert board.note(rows, frozenset({"b0000"})).show == []
    assert board.note(rows, frozenset()).show == []
