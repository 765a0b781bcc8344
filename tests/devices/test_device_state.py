"""The device-state store on SQLite and PostgreSQL: newer wins, counts, pages, changes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from devices import DEVICE_KINDS, Device, Registry
from devices.registry import DeviceState, ReadingUpdate, StatusUpdate, live_status
from tests.devices.conftest import AMSTERDAM, UTRECHT, _postgres_schema

NS = 1_000_000_000
NOW = 1_800_000_000 * NS


def _device(n: int, tenant: str = AMSTERDAM.code, kind: str = "air_quality") -> Device:
    return Device(
        device_id=f"d{n:04d}",
        tenant=tenant,
        kind=kind,
        name=f"device {n}",
        latitude=52.37,
        longitude=4.89,
        created_at=datetime.fromtimestamp(NOW / NS - 86400, UTC),
    )


def _reading(device: Device, ts: int, pm25: float) -> ReadingUpdate:
    return ReadingUpdate(device.device_id, device.tenant, ts, {"pm25": pm25})


def test_a_reading_older_than_the_stored_one_changes_nothing(registry: Registry) -> None:
    device = _device(1)
    registry.add_device(device)
    registry.record_states([_reading(device, NOW, 7.0)], now_ns=NOW)
    # Another worker of the share group, behind: its older reading arrives later.
    registry.record_states([_reading(device, NOW - 5 * NS, 3.0)], now_ns=NOW + NS)
    state = registry.device_states([device.device_id])[device.device_id]
    assert (state.last_ns, state.metrics, state.changed_ns) == (NOW, {"pm25": 7.0}, NOW)
    registry.record_states([_reading(device, NOW + NS, 9.0)], now_ns=NOW + 2 * NS)
    state = registry.device_states([device.device_id])[device.device_id]
    assert (state.last_ns, state.metrics) == (NOW + NS, {"pm25": 9.0})


def test_the_last_will_is_kept_beside_the_reading_and_decides_offline(
    registry: Registry,
) -> None:
    device = _device(1)
    registry.add_device(device)
    registry.record_states(
        [_reading(device, NOW - 10 * NS, 7.0)],
        [StatusUpdate(device.device_id, device.tenant, "offline", NOW - 5 * NS)],
        now_ns=NOW,
    )
    # An older status message (redelivered late) does not undo the newer one.
    registry.record_states(
        [], [StatusUpdate(device.device_id, device.tenant, "online", NOW - 60 * NS)], now_ns=NOW
    )
    state = registry.device_states([device.device_id])[device.device_id]
    assert (state.status, state.status_ns) == ("offline", NOW - 5 * NS)
    assert state.metrics == {"pm25": 7.0}
    assert live_status(device, state, NOW) == "offline"
    [count] = registry.status_counts([device.tenant], NOW)
    assert (count.total, count.online, count.offline, count.silent) == (1, 0, 1, 0)
    # A reading after the last will: online again.
    registry.record_states([_reading(device, NOW - NS, 8.0)], now_ns=NOW)
    [count] = registry.status_counts([device.tenant], NOW)
    assert (count.online, count.offline, count.silent) == (1, 0, 0)


def test_status_counts_agree_with_the_status_rule_per_tenant_and_kind(registry: Registry) -> None:
    interval = DEVICE_KINDS["air_quality"].interval_s
    devices = [_device(n) for n in range(6)]
    devices.append(_device(6, kind="noise"))
    devices.append(_device(7, tenant=UTRECHT.code))
    devices.append(replace(_device(8), interval_s=1.0))
    registry.add_devices(devices)
    registry.retire("d0005")  # retired devices are not counted
    registry.record_states(
        [
            _reading(devices[0], NOW - NS, 1.0),  # online
            _reading(devices[1], NOW - int(4 * interval * NS), 1.0),  # silent
            _reading(devices[2], NOW - NS, 1.0),  # offline below
            _reading(devices[6], NOW - NS, 1.0),
            _reading(devices[7], NOW - NS, 1.0),
            _reading(devices[8], NOW - 10 * NS, 1.0),  # its own interval: silent after 3 s
        ],
        [StatusUpdate("d0002", AMSTERDAM.code, "offline", NOW)],
        now_ns=NOW,
    )
    counts = {(c.tenant, c.kind): c for c in registry.status_counts(None, NOW)}
    air = counts[(AMSTERDAM.code, "air_quality")]
    # d0000 online; d0001 and d0008 silent, d0003 and d0004 never seen; d0002 offline
    assert (air.total, air.online, air.offline, air.silent) == (6, 1, 1, 4)
    # The SQL aggregate and the rule in Python agree, device by device.
    states = registry.device_states(d.device_id for d in devices)
    by_rule = Counter(
        (d.tenant, d.kind, live_status(d, states.get(d.device_id), NOW))
        for d in devices
        if d.device_id != "d0005"
    )
    for c in counts.values():
        for status in ("online", "offline", "silent"):
            assert getattr(c, status) == by_rule[(c.tenant, c.kind, status)], (c, status)
    # Changes are read as stored, one row per device with a state (the status of each is the
    # reader's to decide: tests/api/test_status_board.py).
    changes = registry.state_changes(None, (0, ""), None, 100)
    assert {c[0] for c in changes} == {"d0000", "d0001", "d0002", "d0006", "d0007", "d0008"}
    assert {c[0]: (c[1], c[2], c[3]) for c in changes}["d0002"] == (NOW - NS, "offline", NOW)
    assert [(c.tenant, c.kind) for c in registry.status_counts([UTRECHT.code], NOW)] == [
        (UTRECHT.code, "air_quality")
    ]
    silent = registry.most_silent([AMSTERDAM.code], NOW, 10)
    # never seen first (by id), then the longest silent
    assert [d.device_id for d, _ in silent] == ["d0003", "d0004", "d0001", "d0008"]
    assert silent[2][1] == NOW - int(4 * interval * NS)


def test_pages_of_one_tenant_in_id_order_with_their_state(registry: Registry) -> None:
    ours = [_device(n) for n in range(0, 20, 2)]
    theirs = [_device(n, tenant=UTRECHT.code) for n in range(1, 20, 2)]
    registry.add_devices([*ours, *theirs])
    registry.record_states([_reading(d, NOW, float(i)) for i, d in enumerate(ours)], now_ns=NOW)
    first = registry.latest_page(tenants=[AMSTERDAM.code], limit=4)
    assert [d.device_id for d, _ in first] == [d.device_id for d in ours[:4]]
    second = registry.latest_page(tenants=[AMSTERDAM.code], after=first[-1][0].device_id, limit=4)
    assert [d.device_id for d, _ in second] == [d.device_id for d in ours[4:8]]
    assert all(d.tenant == AMSTERDAM.code for d, _ in first + second)
    assert second[0][1] == DeviceState(NOW, {"pm25": 4.0}, None, None, NOW)
    # Never seen: no state.
    assert all(state is None for _, state in registry.latest_page(tenants=[UTRECHT.code], limit=3))


def test_changes_are_read_in_order_and_per_tenant(registry: Registry) -> None:
    ours = [_device(n) for n in range(5)]
    theirs = _device(9, tenant=UTRECHT.code)
    registry.add_devices([*ours, theirs])
    start = registry.change_position()
    registry.record_states([_reading(d, NOW, 1.0) for d in ours[:3]], now_ns=NOW)
    registry.record_states([_reading(d, NOW, 1.0) for d in (*ours[3:], theirs)], now_ns=NOW + NS)
    first = registry.state_changes([AMSTERDAM.code], start, None, 2)
    assert [c[0] for c in first] == ["d0000", "d0001"]
    assert first[0] == ("d0000", NOW, None, None, NOW)  # the state, not its values
    # Their values, by id, in change order (devices without a state left out).
    assert registry.state_records(["d0001", "d0000", "d0009", "nothing"]) == [
        ("d0000", NOW, '{"pm25":1.0}', None, None, NOW),
        ("d0001", NOW, '{"pm25":1.0}', None, None, NOW),
        ("d0009", NOW, '{"pm25":1.0}', None, None, NOW + NS),
    ]
    after = (first[-1][4], first[-1][0])
    rest = registry.state_changes([AMSTERDAM.code], after, None, 10)
    assert [c[0] for c in rest] == ["d0002", "d0003", "d0004"]
    # Up to a position only (a reconnecting reader catching up to a feed).
    upto = registry.state_changes(None, after, (NOW, "d0002"), 10)
    assert [c[0] for c in upto] == ["d0002"]
    assert registry.state_mark([UTRECHT.code]) == (NOW + NS, 1)
    # Read from where a reader starts now: only what is committed later.
    assert registry.state_changes(None, registry.change_position(), None, 10) == []


def test_change_stamps_increase_in_commit_order_whatever_the_writers_clocks(
    registry: Registry,
) -> None:
    ours = [_device(n) for n in range(3)]
    registry.add_devices(ours)
    registry.record_states([_reading(ours[0], NOW, 1.0)], now_ns=NOW)
    after = (NOW, "d0000")
    # A worker whose clock is behind (or the same nanosecond) commits later: a later stamp,
    # so a reader that already read up to the first write still finds it.
    registry.record_states([_reading(ours[1], NOW, 1.0)], now_ns=NOW - 60 * NS)
    registry.record_states([_reading(ours[2], NOW, 1.0)], now_ns=NOW)
    later = registry.state_changes(None, after, None, 10)
    assert [(c[0], c[4]) for c in later] == [("d0001", NOW + 1), ("d0002", NOW + 2)]
    # A device rewritten moves forward, past where the reader got to, with its newest state.
    registry.record_states([_reading(ours[0], NOW + NS, 2.0)], now_ns=NOW)
    again = registry.state_changes(None, (later[-1][4], later[-1][0]), None, 10)
    assert [(c[0], c[1], c[4]) for c in again] == [("d0000", NOW + NS, NOW + 3)]
    assert registry.state_records(["d0000"])[0][2] == '{"pm25":2.0}'


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_schema()


def test_a_writer_that_commits_late_is_read_before_one_that_came_after(postgres_url: str) -> None:
    # PostgreSQL: writers run side by side, with row locks. (SQLite lets one writer at a time
    # into the database: commit order is stamp order there whatever the clock row does.)
    with Registry(postgres_url) as registry:
        registry.add_tenant(AMSTERDAM)
        slow, quick = _device(1), _device(2)
        registry.add_devices([slow, quick])
        registry.record_states([_reading(slow, NOW, 1.0)], now_ns=NOW)
        start = registry.change_position()
        engine = create_engine(postgres_url)
        blocker = engine.connect()
        # Something else holds the slow device's row: the next writer of it takes its stamp,
        # then waits for the row, its transaction open.
        blocker.execute(text("SELECT 1 FROM device_state WHERE device_id = 'd0001' FOR UPDATE"))
        writers = [
            threading.Thread(
                target=registry.record_states, args=([_reading(d, NOW + NS, 2.0)],),
                kwargs={"now_ns": NOW + NS},
            )
            for d in (slow, quick)
        ]  # fmt: skip
        try:
            writers[0].start()
            time.sleep(0.5)  # the slow writer has its stamp and waits for the row
            writers[1].start()
            time.sleep(0.5)
            # The writer that came after has not committed before the one holding an earlier
            # stamp: a reader finds neither yet, rather than the later one alone.
            assert writers[1].is_alive()
            assert registry.state_changes(None, start, None, 10) == []
        finally:
            blocker.rollback()
            blocker.close()
            for writer in writers:
                writer.join(10)
            engine.dispose()
        changes = registry.state_changes(None, start, None, 10)
        assert [c[0] for c in changes] == ["d0001", "d0002"]
        assert changes[0][4] < changes[1][4]


def test_minute_counts_add_up_across_workers(registry: Registry) -> None:
    minute = NOW - NOW % (60 * NS)
    registry.record_states([], minutes={(AMSTERDAM.code, minute): (10, 1)}, now_ns=NOW)
    registry.record_states(
        [],
        minutes={(AMSTERDAM.code, minute): (5, 0), (UTRECHT.code, minute): (7, 2)},
        now_ns=NOW,
    )
    assert registry.minute_counts([AMSTERDAM.code], minute) == {minute: (15, 1)}
    assert registry.minute_counts(None, minute) == {minute: (22, 3)}
    registry.forget_minutes(minute + 1)
    assert registry.minute_counts(None, 0) == {}


def test_positions_are_the_active_devices_by_id_with_their_status(registry: Registry) -> None:
    interval = DEVICE_KINDS["air_quality"].interval_s
    devices = [
        replace(_device(n), longitude=4.0 + n / 10, latitude=52.0 + n / 100) for n in range(5)
    ]
    devices.append(replace(_device(5, tenant=UTRECHT.code, kind="noise"), name="utrecht"))
    registry.add_devices(list(reversed(devices)))
    registry.retire("d0004")
    registry.record_states(
        [
            _reading(devices[0], NOW - NS, 1.0),  # online
            _reading(devices[1], NOW - 4 * int(interval) * NS, 1.0),  # silent: too long ago
            _reading(devices[2], NOW - 2 * NS, 1.0),
            _reading(devices[5], NOW - NS, 1.0),
        ],
        # offline: its last will came after its last reading; d0003 was never seen: silent
        [StatusUpdate("d0002", AMSTERDAM.code, "offline", NOW - NS)],
        now_ns=NOW,
    )
    every = registry.positions(None, NOW)
    assert every.device_ids == ["d0000", "d0001", "d0002", "d0003", "d0005"]
    assert every.statuses == ["online", "silent", "offline", "silent", "online"]
    assert every.tenants == [AMSTERDAM.code] * 4 + [UTRECHT.code]
    assert every.kinds == ["air_quality"] * 4 + ["noise"]
    assert every.names == ["device 0", "device 1", "device 2", "device 3", "utrecht"]
    assert every.longitudes[:4] == [4.0, 4.1, 4.2, 4.3]
    assert every.latitudes[:4] == [52.0, 52.01, 52.02, 52.03]
    # The status agrees with the rule the rest of the platform uses.
    states = registry.device_states(every.device_ids)
    by_id = {d.device_id: d for d in devices}
    assert every.statuses == [live_status(by_id[i], states.get(i), NOW) for i in every.device_ids]
    utrecht = registry.positions([UTRECHT.code], NOW)
    assert (utrecht.device_ids, utrecht.statuses) == (["d0005"], ["online"])
    assert registry.positions(["GM9999"], NOW).device_ids == []
