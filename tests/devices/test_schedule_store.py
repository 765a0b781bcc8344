"""Stored schedules and the scheduler's sending on SQLite and PostgreSQL: each step once, the
level in force after a restart, one sender under the lease, and the summer-time changes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select

from devices import Device, InvalidDevice, NotFound, Registry
from devices.command_history import CommandStore, commands
from devices.schedule_store import LampGroup, LeaseLost, ScheduleStore
from devices.scheduler import Scheduler, SchedulerConfig
from devices.schedules import LOCAL_ZONE, Schedule, Step, occurrences
from lantaarn.night_schedule import seed_night_schedules

GRONINGEN = (53.2194, 6.5665)
MAASTRICHT = (50.8514, 5.6910)
NIGHT = (
    Step.parse("sunset", 100),
    Step.parse("23:00", 40),
    Step.parse("06:00", 100),
    Step.parse("sunrise", 0),
)
LEASE = 60.0


def _lamp(n: int, tenant: str = "GM0363", where: tuple[float, float] = GRONINGEN) -> Device:
    return Device(f"lp-{n}", tenant, "lamppost", f"Lamp {n}", *where)


def _local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LOCAL_ZONE).astimezone(UTC)


@pytest.fixture
def store(registry: Registry, registry_url: str) -> Iterator[ScheduleStore]:
    """A schedule store over a registry with lamps lp-1..lp-3 (GM0363) and lp-9 (GM0344)."""
    registry.add_devices(
        [
            _lamp(1),
            _lamp(2),
            _lamp(3, where=MAASTRICHT),
            _lamp(9, "GM0344"),
            Device("aq-1", "GM0363", "air_quality", "Air", *GRONINGEN),
        ]
    )
    with ScheduleStore(registry_url) as opened:
        yield opened


def _sent(url: str) -> list[tuple[str, int, str]]:
    """Every scheduled command stored: (device, level, giver), in order."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(commands.c.device_id, commands.c.args, commands.c.issued_by)
            .where(commands.c.issued_role == "scheduler")
            .order_by(commands.c.created_at, commands.c.device_id)
        ).all()
    engine.dispose()
    return [(d, int(a.split(":")[1].strip(" }")), str(by)) for d, a, by in rows]


def test_a_schedule_is_stored_checked_changed_and_removed(store: ScheduleStore) -> None:
    made = store.create("GM0363", "Night", NIGHT, LampGroup())
    assert store.get(made.id).schedule == made.schedule
    assert [s.id for s in store.schedules(["GM0344"])] == []
    with pytest.raises(InvalidDevice) as bad:
        store.create("GM0363", "Bad", (Step("clock", 60, 101),), LampGroup(bbox="1,2,3"))
    assert [p.field for p in bad.value.problems] == ["steps[0].level", "group.bbox"]
    changed = store.change(made.id, steps=NIGHT[:2], group=LampGroup(device_ids=("lp-2",)))
    assert store.get(made.id) == changed
    assert changed.group == LampGroup(device_ids=("lp-2",))
    assert store.change(made.id, unassign=True).group is None
    store.remove(made.id)
    with pytest.raises(NotFound):
        store.get(made.id)


def test_a_lamp_follows_its_most_specific_schedule(store: ScheduleStore) -> None:
    tenant = store.create("GM0363", "All", NIGHT, LampGroup())
    listed = store.create("GM0363", "Two", NIGHT, LampGroup(device_ids=("lp-2", "lp-9")))
    store.create("GM0363", "Unassigned", NIGHT, None)
    chosen = {lamp: stored.id for lamp, (stored, _) in store.assignments().items()}
    # Lampposts of the tenant only: not the air-quality sensor, not Utrecht's lp-9.
    assert chosen == {"lp-1": tenant.id, "lp-2": listed.id, "lp-3": tenant.id}


def test_each_step_is_sent_once_and_a_restart_sends_the_level_now(
    store: ScheduleStore, registry_url: str
) -> None:
    store.create("GM0363", "Night", NIGHT, LampGroup(device_ids=("lp-1",)))
    evening = _local(2026, 12, 21, 20, 0)
    assert store.dispatch("a", lease_s=LEASE, deadline_s=600, now=evening).sent == 1
    for minutes in (1, 30, 120):  # nothing new fell: nothing is sent again
        later = evening + timedelta(minutes=minutes)
        assert store.dispatch("a", lease_s=LEASE, deadline_s=600, now=later).sent == 0
    # Down from 22:00 until 07:00: 23:00 (40) and 06:00 (100) fell meanwhile; what applies
    # now, 100, is sent once, not both.
    morning = _local(2026, 12, 22, 7, 0)
    assert store.dispatch("a", lease_s=LEASE, deadline_s=600, now=morning).sent == 1
    assert store.dispatch("a", lease_s=LEASE, deadline_s=600, now=morning).sent == 0
    levels = [level for _, level, _ in _sent(registry_url)]
    assert levels == [100, 100]
    (_, _, giver), _ = _sent(registry_url)
    assert giver.startswith("schedule:")
    assert store.progress("lp-1") is not None


def test_the_audit_trail_shows_the_scheduler_as_the_giver(
    store: ScheduleStore, registry_url: str
) -> None:
    made = store.create("GM0363", "Night", NIGHT, LampGroup(device_ids=("lp-1",)))
    result = store.dispatch("a", lease_s=LEASE, deadline_s=600, now=_local(2026, 12, 21, 23, 30))
    with CommandStore(registry_url) as history:
        command = history.command(result.command_ids[0])
    assert (command.name, command.args, command.state.value) == (
        "set_dim_level",
        {"level": 40},
        "created",
    )
    assert (command.issuer.key_id, command.issuer.role) == (f"schedule:{made.id}", "scheduler")


def test_two_schedulers_never_both_send(store: ScheduleStore, registry_url: str) -> None:
    store.create("GM0363", "Night", NIGHT, LampGroup())
    t = _local(2026, 12, 21, 20, 0)
    assert store.dispatch("a", lease_s=LEASE, deadline_s=600, now=t).sent == 3
    store.change(store.schedules()[0].id, steps=(Step.parse("sunset", 80),))
    # b waits while a's lease runs; once it ran out, b takes over and sends.
    later = t + timedelta(seconds=LEASE / 2)
    assert not store.dispatch("b", lease_s=LEASE, deadline_s=600, now=later).held
    after = t + timedelta(seconds=LEASE + 1)
    assert store.dispatch("b", lease_s=LEASE, deadline_s=600, now=after).sent == 3
    assert not store.dispatch("a", lease_s=LEASE, deadline_s=600, now=after).held
    assert Counter(d for d, _, _ in _sent(registry_url)) == {"lp-1": 2, "lp-2": 2, "lp-3": 2}


def test_a_scheduler_that_lost_its_lease_midway_stops_and_the_other_sends_the_rest(
    store: ScheduleStore, registry_url: str
) -> None:
    store.create("GM0363", "Night", NIGHT, LampGroup())
    t = _local(2026, 12, 21, 20, 0)
    late = t + timedelta(seconds=LEASE + 1)

    def taken_over(_: object) -> None:
        # a stalled after its first lamp long enough for its lease to run out; b took it.
        assert store.take_lease("b", LEASE, late)

    with pytest.raises(LeaseLost):
        store.dispatch("a", lease_s=LEASE, deadline_s=600, now=t, chunk=1, after_chunk=taken_over)
    assert store.dispatch("b", lease_s=LEASE, deadline_s=600, now=late).sent == 2
    assert Counter(d for d, _, _ in _sent(registry_url)) == {"lp-1": 1, "lp-2": 1, "lp-3": 1}


class _Killed(BaseException):
    """Stands for the process dying between two transactions."""


def test_a_scheduler_stopped_during_a_step_neither_doubles_nor_skips(
    store: ScheduleStore, registry_url: str
) -> None:
    store.create("GM0363", "Night", NIGHT, LampGroup())
    t = _local(2026, 12, 21, 23, 5)

    def die(_: object) -> None:
        raise _Killed

    with pytest.raises(_Killed):
        store.dispatch("a", lease_s=LEASE, deadline_s=600, now=t, chunk=1, after_chunk=die)
    assert len(_sent(registry_url)) == 1
    # Restarted (same name, so its own lease is taken back at once) a minute later.
    later = t + timedelta(minutes=1)
    assert store.dispatch("a", lease_s=LEASE, deadline_s=600, now=later).sent == 2
    assert sorted(_sent(registry_url)) == [
        ("lp-1", 40, _sent(registry_url)[0][2]),
        ("lp-2", 40, _sent(registry_url)[0][2]),
        ("lp-3", 40, _sent(registry_url)[0][2]),
    ]


RULES = {
    "clock": (Step.parse("00:30", 30), Step.parse("22:00", 70)),
    "sunset": (Step.parse("sunset-20", 100), Step.parse("12:00", 0)),
    "sunrise": (Step.parse("sunrise+10", 0), Step.parse("18:00", 100)),
}
CHANGES = {"spring": date(2026, 3, 29), "autumn": date(2026, 10, 25)}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("place", ["groningen", "maastricht"])
def test_each_rule_sends_every_step_once_across_a_summer_time_change(
    registry: Registry, registry_url: str, rule: str, change: str, place: str
) -> None:
    where = GRONINGEN if place == "groningen" else MAASTRICHT
    registry.add_devices([_lamp(1, where=where)])
    day = CHANGES[change]
    steps = RULES[rule]
    schedule = Schedule("x", "x", steps)
    expected = [
        (at, step.level)
        for d in (day - timedelta(days=1), day, day + timedelta(days=1))
        for at, step in occurrences(schedule, d, *where)
    ]
    start = _local(day.year, day.month, day.day) - timedelta(hours=12)
    end = start + timedelta(hours=48)
    with ScheduleStore(registry_url) as store:
        store.create("GM0363", rule, steps, LampGroup())
        tick = timedelta(minutes=30)
        sent: list[tuple[datetime, int]] = []
        now = start
        while now < end:
            if store.dispatch("a", lease_s=LEASE, deadline_s=600, now=now).sent:
                progress = store.progress("lp-1")
                assert progress is not None
                sent.append((progress[1], progress[2]))
                # Sent at the first tick after the step fell, never before it.
                assert progress[1] <= now < progress[1] + tick or now == start
            now += tick
    # Every step that fell in the window, once each, in order (the first is what applied
    # at the start); a day has 23 or 25 hours here and the steps keep their local times.
    fell = [(at, level) for at, level in expected if start - timedelta(days=1) < at < end]
    in_force_at_start = max((p for p in fell if p[0] <= start), key=lambda p: p[0])
    assert sent == [in_force_at_start, *[p for p in fell if start < p[0] < end]]
    clock_steps = [at for at, _ in sent if rule == "clock"]
    for at in clock_steps:
        assert at.astimezone(LOCAL_ZONE).strftime("%H:%M") in {"00:30", "22:00"}


def test_two_schedulers_configured_alike_never_both_hold_the_lease(
    store: ScheduleStore, registry_url: str
) -> None:
    store.create("GM0363", "Night", NIGHT, LampGroup())
    config = SchedulerConfig("same-name", tick_s=1, lease_s=60)

    async def both() -> tuple[int, int, bool, bool]:
        first, second = Scheduler(config, store), Scheduler(config, store)
        sent = (await first.tick(), await second.tick())
        return (*sent, first.holding, second.holding)

    assert asyncio.run(both()) == (3, 0, True, False)
    assert len(_sent(registry_url)) == 3


def test_the_demo_gives_each_tenant_the_night_profile_once(
    registry: Registry, registry_url: str
) -> None:
    assert seed_night_schedules(registry_url, ["GM0363", "GM0344"]) == 2
    assert seed_night_schedules(registry_url, ["GM0363", "GM0344"]) == 0
    with ScheduleStore(registry_url) as store:
        made = store.schedules()
    assert sorted(s.tenant for s in made) == ["GM0344", "GM0363"]
    assert {s.group for s in made} == {LampGroup()}
