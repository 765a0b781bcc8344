"""Dimming schedule steps: clock times across the summer-time changes, sun steps at two
latitudes, and the step in force at a moment."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from devices.schedules import (
    LOCAL_ZONE,
    Schedule,
    Step,
    next_occurrence,
    occurrences,
    schedule_problems,
    step_at,
)
from devices.sun import sun_times

AMSTERDAM = (52.3728, 4.8936)
GRONINGEN = (53.2194, 6.5665)
MAASTRICHT = (50.8514, 5.6910)
# The example: full light at sunset, 40 % from 23:00, full again at 06:00, off at sunrise.
NIGHT = Schedule(
    "night",
    "Night profile",
    (
        Step.parse("sunset", 100),
        Step.parse("23:00", 40),
        Step.parse("06:00", 100),
        Step.parse("sunrise", 0),
    ),
)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LOCAL_ZONE)


def _only(schedule: Schedule, day: date, place: tuple[float, float] = AMSTERDAM) -> datetime:
    ((moment, _),) = occurrences(schedule, day, *place)
    return moment


def test_steps_are_written_and_read_alike_and_checked() -> None:
    for text in ("23:00", "00:05", "sunset", "sunrise-30", "sunset+15"):
        assert Step.parse(text, 50).when == text
    for bad in ("24:00", "7:00", "sunset+", "noon", "sunrise+1000"):
        with pytest.raises(ValueError, match="is not"):
            Step.parse(bad, 50)
    broken = Schedule(
        "x", "x", (Step.parse("sunset+400", 50), Step("clock", 60, 101), Step("clock", 60, 5))
    )
    assert [p.field for p in schedule_problems(broken)] == [
        "steps[0].at",
        "steps[1].level",
        "steps[2].at",
    ]
    assert schedule_problems(NIGHT) == []
    assert [p.field for p in schedule_problems(Schedule("e", "e", ()))] == ["steps"]


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [
        (date(2026, 3, 28), 22),  # winter time, UTC+1
        (date(2026, 3, 29), 21),  # summer time from 02:00 that night, UTC+2
        (date(2026, 10, 24), 21),
        (date(2026, 10, 25), 22),  # back to winter time at 03:00
    ],
)
def test_a_clock_step_keeps_its_local_time_across_the_summer_time_changes(
    day: date, utc_hour: int
) -> None:
    moment = _only(Schedule("s", "s", (Step.parse("23:00", 40),)), day)
    assert moment == _utc(day.year, day.month, day.day, utc_hour)


def test_a_skipped_clock_time_falls_at_the_change_and_a_repeated_one_once() -> None:
    half_past_two = Schedule("s", "s", (Step.parse("02:30", 40),))
    # 29 March 2026: the clock jumps from 02:00 to 03:00 (01:00 UTC); 02:30 never shows.
    assert _only(half_past_two, date(2026, 3, 29)) == _utc(2026, 3, 29, 1, 0)
    # 25 October 2026: 02:00-03:00 comes twice; the step falls the first time (summer time).
    assert _only(half_past_two, date(2026, 10, 25)) == _utc(2026, 10, 25, 0, 30)


@pytest.mark.parametrize("day", [date(2026, 12, 21), date(2026, 6, 21)])
def test_sun_steps_fall_at_each_lamps_own_sunset(day: date) -> None:
    dusk = Schedule("s", "s", (Step.parse("sunset+15", 100),))
    north, south = _only(dusk, day, GRONINGEN), _only(dusk, day, MAASTRICHT)
    for place, moment in ((GRONINGEN, north), (MAASTRICHT, south)):
        sunset = sun_times(day, *place).sunset
        assert sunset is not None
        assert moment == datetime.fromtimestamp(sunset, UTC) + timedelta(minutes=15)
    # A quarter of an hour apart across the country, and which comes first turns with the season.
    assert abs(north - south) > timedelta(minutes=9)
    assert (north < south) == (day.month == 12)


def test_no_sunset_no_sun_step() -> None:
    tromso = (69.6492, 18.9553)
    # Midnight sun: only the clock steps fall (06:00 and 23:00 local, summer time).
    assert occurrences(NIGHT, date(2026, 6, 21), *tromso) == [
        (_utc(2026, 6, 21, 4, 0), NIGHT.steps[2]),
        (_utc(2026, 6, 21, 21, 0), NIGHT.steps[1]),
    ]


@pytest.mark.parametrize(
    ("moment", "when", "level"),
    [
        (_local(2026, 12, 21, 22, 0), "sunset", 100),
        (_local(2026, 12, 22, 2, 0), "23:00", 40),  # from the evening before
        (_local(2026, 12, 22, 7, 0), "06:00", 100),  # still dark: sunrise is near 08:50
        (_local(2026, 12, 22, 12, 0), "sunrise", 0),
        (_local(2026, 3, 29, 2, 30) + timedelta(hours=1), "23:00", 40),  # the short night
        # Literal order in June: sunrise (05:20) comes before 06:00, which lights the lamp
        # all day. The module's docstring says so; anchor such steps to the sun instead.
        (_local(2026, 6, 21, 12, 0), "06:00", 100),
    ],
)
def test_the_step_in_force_is_the_last_that_fell(moment: datetime, when: str, level: int) -> None:
    step = step_at(NIGHT, moment, *AMSTERDAM)
    assert step is not None
    assert (step.when, step.level) == (when, level)


def test_an_offset_past_midnight_belongs_to_the_evening_it_started() -> None:
    late = Schedule("s", "s", (Step.parse("00:30", 30), Step.parse("sunset+360", 10)))
    # In June, sunset+6 h falls near 04:05 local the next morning, after 00:30.
    before = step_at(late, _local(2026, 6, 22, 3, 0), *AMSTERDAM)
    after = step_at(late, _local(2026, 6, 22, 5, 0), *AMSTERDAM)
    assert before is not None
    assert after is not None
    assert (before.when, after.when) == ("00:30", "sunset+360")


def test_the_next_step_is_the_first_to_fall_after_a_moment() -> None:
    coming = next_occurrence(NIGHT, _local(2026, 12, 21, 23, 30), *AMSTERDAM)
    assert coming is not None
    assert (coming[0], coming[1].when) == (_local(2026, 12, 22, 6, 0), "06:00")
    # After sunset (20:08) on the day of the spring change: 23:00 falls at 21:00 UTC.
    evening = next_occurrence(NIGHT, _local(2026, 3, 29, 20, 30), *AMSTERDAM)
    assert evening is not None
    assert (evening[0], evening[1].when) == (_utc(2026, 3, 29, 21, 0), "23:00")
