"""Dimming schedules: steps at a clock time in Europe/Amsterdam or at an offset from the sun.

A schedule is a list of steps, each setting a dim level (0..100 %, 0 is off):
`sunset` (100), `23:00` (40), `06:00` (100), `sunrise` (0); a sun step may carry an offset in
minutes, `sunset+15`, `sunrise-30`. Sun steps fall at each lamp's own sunrise and sunset (from
its coordinates and the date), clock steps at the local wall-clock time, summer time included.

The rule is literal, so that a scheduler and an operator reading the schedule agree: at any
moment the level is that of the most recent step that fell. A clock time the spring change
skips (02:30 on the last Sunday of March) falls at the moment of the change; one the autumn
change repeats falls once, the first time. Steps are not reordered by the seasons: in June
`06:00 → 100` comes after a 05:20 sunrise, so such a schedule lights the lamp all day; a step
meant for the dark morning only should be anchored to the sun (`sunrise-60`).

Only the computation lives here; schedules are stored and assigned in devices.schedule_store
and sent by devices.scheduler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from devices.errors import Problem
from devices.sun import sun_times

LOCAL_ZONE: Final = ZoneInfo("Europe/Amsterdam")
Anchor = Literal["clock", "sunrise", "sunset"]
_STEP_RE: Final = re.compile(
    r"(?:(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d))"
    r"|(?:(?P<sun>sunrise|sunset)(?:(?P<sign>[+-])(?P<offset>\d{1,3}))?)"
)
MAX_OFFSET_MIN: Final = 360


@dataclass(frozen=True, slots=True)
class Step:
    """A step: when (a local clock time, or minutes from sunrise/sunset) and the level (%)."""

    anchor: Anchor
    minutes: int  # clock: minutes after local midnight; sun: offset, negative is before
    level: int

    @classmethod
    def parse(cls, when: str, level: int) -> Step:
        """`HH:MM`, `sunrise`, `sunset`, `sunset+15` or `sunrise-30`; ValueError if not."""
        match = _STEP_RE.fullmatch(when.strip())
        if match is None:
            raise ValueError(f"{when!r} is not HH:MM, sunrise or sunset (+/- minutes)")
        if match["hour"] is not None:
            return cls("clock", int(match["hour"]) * 60 + int(match["minute"]), level)
        offset = int(match["offset"] or 0) * (-1 if match["sign"] == "-" else 1)
        anchor: Anchor = "sunrise" if match["sun"] == "sunrise" else "sunset"
        return cls(anchor, offset, level)

    @property
    def when(self) -> str:
        """The step's time as written: `23:00`, `sunset`, `sunrise-30`."""
        if self.anchor == "clock":
            return f"{self.minutes // 60:02d}:{self.minutes % 60:02d}"
        if self.minutes == 0:
            return self.anchor
        return f"{self.anchor}{self.minutes:+d}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named list of steps."""

    schedule_id: str
    name: str
    steps: tuple[Step, ...]


def schedule_problems(schedule: Schedule) -> list[Problem]:
    """Every rule the schedule breaks (empty when it is fine)."""
    found: list[Problem] = []
    if not schedule.steps:
        found.append(Problem("steps", "a schedule needs at least one step"))
    seen: set[tuple[str, int]] = set()
    for index, step in enumerate(schedule.steps):
        where = f"steps[{index}]"
        if not 0 <= step.level <= 100:
            found.append(Problem(f"{where}.level", f"level {step.level} is outside 0..100"))
        if step.anchor == "clock" and not 0 <= step.minutes < 1440:
            found.append(Problem(f"{where}.at", "a clock time is 00:00..23:59"))
        if step.anchor != "clock" and abs(step.minutes) > MAX_OFFSET_MIN:
            found.append(
                Problem(f"{where}.at", f"an offset from the sun is at most {MAX_OFFSET_MIN} min")
            )
        key = (step.anchor, step.minutes)
        if key in seen:
            found.append(Problem(f"{where}.at", f"{step.when} appears twice"))
        seen.add(key)
    return found


def _clock_moment(day: date, minutes: int) -> datetime:
    """The UTC moment local `day` shows `minutes` after midnight (see the module's rule)."""
    wall = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=LOCAL_ZONE)
    first = wall.replace(fold=0).astimezone(UTC)
    # A skipped time: fold=0 reads it with the offset before the change, which lands after the
    # change; the change itself is the first moment the clock passes that time.
    if first.astimezone(LOCAL_ZONE).replace(tzinfo=None) != wall.replace(tzinfo=None):
        midnight = datetime.combine(day, time(), tzinfo=LOCAL_ZONE).astimezone(UTC)
        moment = midnight
        while (
            moment.astimezone(LOCAL_ZONE).utcoffset() == midnight.astimezone(LOCAL_ZONE).utcoffset()
        ):
            moment += timedelta(minutes=15)  # offsets change on quarter hours, here on the hour
        return moment
    return first


def occurrences(
    schedule: Schedule, day: date, latitude: float, longitude: float
) -> list[tuple[datetime, Step]]:
    """When each step falls on local day `day` at a lamp (degrees N, E), in time order (UTC).

    A sun step on a day without that sunrise or sunset (polar day or night) does not fall.
    """
    sun = sun_times(day, latitude, longitude)
    found: list[tuple[datetime, Step]] = []
    for step in schedule.steps:
        if step.anchor == "clock":
            found.append((_clock_moment(day, step.minutes), step))
            continue
        base = sun.sunrise if step.anchor == "sunrise" else sun.sunset
        if base is not None:
            moment = datetime.fromtimestamp(base, UTC) + timedelta(minutes=step.minutes)
            found.append((moment, step))
    found.sort(key=lambda pair: pair[0])
    return found


def latest_occurrence(
    schedule: Schedule, moment: datetime, latitude: float, longitude: float
) -> tuple[datetime, Step] | None:
    """The step in force at `moment` (aware) at a lamp and when it fell (UTC), or None."""
    local_day = moment.astimezone(LOCAL_ZONE).date()
    # An offset from the sun may carry a step past midnight either way, so the neighbouring
    # days' steps are looked at too; a step falls at least every day (bar polar sun steps).
    fell = [
        (at, step)
        for back in range(-1, 3)
        for at, step in occurrences(schedule, local_day - timedelta(days=back), latitude, longitude)
        if at <= moment
    ]
    return max(fell, key=lambda pair: pair[0]) if fell else None


def next_occurrence(
    schedule: Schedule, moment: datetime, latitude: float, longitude: float
) -> tuple[datetime, Step] | None:
    """The next step to fall after `moment` (aware) at a lamp and when (UTC), or None."""
    local_day = moment.astimezone(LOCAL_ZONE).date()
    coming = [
        (at, step)
        for ahead in range(-1, 3)
        for at, step in occurrences(
            schedule, local_day + timedelta(days=ahead), latitude, longitude
        )
        if at > moment
    ]
    return min(coming, key=lambda pair: pair[0]) if coming else None


def step_at(schedule: Schedule, moment: datetime, latitude: float, longitude: float) -> Step | None:
    """The step in force at `moment` (aware) at a lamp: the last one that fell, or None."""
    found = latest_occurrence(schedule, moment, latitude, longitude)
    return None if found is None else found[1]
