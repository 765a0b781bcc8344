"""Sunrise and sunset: the computation lives in `devices.sun` (dimming schedules use it too)."""

from devices.sun import SunTimes, sun_times

__all__ = ["SunTimes", "sun_times"]
