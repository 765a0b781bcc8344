"""Sunrise and sunset for a place and a day: when lampposts switch on and off, and when
schedule steps anchored to the sun fall (devices.schedules).

The sunrise equation as NOAA and most almanacs give it (Meeus, simplified): accurate to about a
minute at Dutch latitudes, which is as close as a photocell agrees with the almanac anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

_J2000 = 2451545.0  # Julian day of 2000-01-01 12:00
_UNIX_EPOCH_JD = 2440587.5  # Julian day of 1970-01-01 00:00 UTC
_ORDINAL_TO_JD = 1721424.5  # date.toordinal() + this = Julian day at 00:00 UTC
_OBLIQUITY = math.radians(23.4397)
# The sun's centre 0.833 degrees below the horizon: refraction plus the solar disc's radius.
_HORIZON = math.radians(-0.833)


@dataclass(frozen=True, slots=True)
class SunTimes:
    """Sunrise and sunset of one day (epoch seconds, UTC); both None in polar day or night."""

    sunrise: float | None
    sunset: float | None
    always_up: bool = False  # midnight sun: no sunset that day

    def is_dark(self, t: float) -> bool:
        """Whether the sun is down at `t` (epoch seconds) on this day."""
        if self.sunrise is None or self.sunset is None:
            return not self.always_up
        return t < self.sunrise or t >= self.sunset


def sun_times(day: date, latitude: float, longitude: float) -> SunTimes:
    """Sunrise and sunset on `day` (UTC date) at a place (degrees north, degrees east)."""
    jd_midnight = day.toordinal() + _ORDINAL_TO_JD
    n = math.ceil(jd_midnight - _J2000 + 0.0008)
    mean_noon = n - longitude / 360.0
    anomaly = math.radians((357.5291 + 0.98560028 * mean_noon) % 360.0)
    centre = (
        1.9148 * math.sin(anomaly) + 0.0200 * math.sin(2 * anomaly) + 0.0003 * math.sin(3 * anomaly)
    )
    ecliptic = math.radians((math.degrees(anomaly) + centre + 180.0 + 102.9372) % 360.0)
    transit = _J2000 + mean_noon + 0.0053 * math.sin(anomaly) - 0.0069 * math.sin(2 * ecliptic)
    declination = math.asin(math.sin(ecliptic) * math.sin(_OBLIQUITY))
    phi = math.radians(latitude)
    cos_hour_angle = (math.sin(_HORIZON) - math.sin(phi) * math.sin(declination)) / (
        math.cos(phi) * math.cos(declination)
    )
    if cos_hour_angle < -1.0:
        return SunTimes(None, None, always_up=True)
    if cos_hour_angle > 1.0:
        return SunTimes(None, None, always_up=False)
    half_day = math.degrees(math.acos(cos_hour_angle)) / 360.0
    rise = (transit - half_day - _UNIX_EPOCH_JD) * 86400.0
    set_ = (transit + half_day - _UNIX_EPOCH_JD) * 86400.0
    return SunTimes(rise, set_)
