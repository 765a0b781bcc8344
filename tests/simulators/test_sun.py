"""Sunrise and sunset against almanac times, and lampposts that follow them for their latitude."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from devices import Device
from simulators.behaviour import DeviceState
from simulators.sun import sun_times

AMSTERDAM = (52.3728, 4.8936)
TROMSO = (69.6492, 18.9553)


def _utc(day: date, hour: int, minute: int) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("day", "rise", "set_"),
    [
        # Almanac (timeanddate.com) for Amsterdam, in UTC.
        (date(2024, 6, 21), (3, 18), (20, 6)),
        (date(2024, 12, 21), (7, 48), (15, 29)),
        (date(2024, 3, 20), (5, 42), (17, 53)),
    ],
)
def test_amsterdam_sunrise_and_sunset_within_three_minutes(
    day: date, rise: tuple[int, int], set_: tuple[int, int]
) -> None:
    times = sun_times(day, *AMSTERDAM)
    assert times.sunrise is not None
    assert times.sunset is not None
    assert abs(times.sunrise - _utc(day, *rise)) < 180
    assert abs(times.sunset - _utc(day, *set_)) < 180


def test_polar_day_and_night() -> None:
    summer = sun_times(date(2024, 6, 21), *TROMSO)
    winter = sun_times(date(2024, 12, 21), *TROMSO)
    assert summer.always_up
    assert not summer.is_dark(_utc(date(2024, 6, 21), 23, 0))
    assert not winter.always_up
    assert winter.is_dark(_utc(date(2024, 12, 21), 11, 0))


def _lamppost(latitude: float, longitude: float) -> Device:
    return Device("t-lp-1", "GM0363", "lamppost", "lamp", latitude, longitude)


def test_lamppost_switches_at_sunset_and_sunrise_for_its_latitude() -> None:
    day = date(2024, 12, 21)
    times = sun_times(day, *AMSTERDAM)
    assert times.sunrise is not None
    assert times.sunset is not None
    state = DeviceState(_lamppost(*AMSTERDAM), seed=3)
    state.photocell_s = 0.0  # switch exactly at the almanac's moment
    t = _utc(day, 0, 0)
    state.reading(t)
    seen: list[tuple[float, float]] = []
    while t < _utc(day, 23, 59):
        t += 60
        reading = state.reading(t)
        seen.append((t, reading["dim_level"]))
    on_at = [t for t, dim in seen if dim > 0]
    off_at = [t for t, dim in seen if dim == 0]
    # Dark until sunrise, light until sunset, dark again after it (to the minute).
    assert max(t for t in off_at) >= times.sunset - 60
    assert min(t for t in off_at) - times.sunrise < 61
    assert all(t < times.sunrise or t >= times.sunset for t in on_at)
    # The night schedule: full in the evening, half after 23:00 local (22:00 UTC in winter).
    assert dict(seen)[_utc(day, 20, 0)] == 100.0
    assert dict(seen)[_utc(day, 22, 30)] == 50.0
    assert dict(seen)[_utc(day, 12, 0)] == 0.0


def test_a_lamppost_in_the_far_north_burns_all_winter_day_and_not_at_midsummer() -> None:
    winter = DeviceState(_lamppost(*TROMSO), seed=3)
    summer = DeviceState(_lamppost(*TROMSO), seed=3)
    noon_winter = _utc(date(2024, 12, 21), 11, 0)
    noon_summer = _utc(date(2024, 6, 21), 23, 0)
    assert winter.reading(noon_winter)["dim_level"] > 0
    midnight = summer.reading(noon_summer)
    assert midnight["dim_level"] == 0
    assert midnight["active_power"] < 1.0  # only the controller's standby
