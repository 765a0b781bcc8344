"""What each kind of simulated device reports at a moment: believable, deterministic signals.

Signals follow the rhythm of a Dutch city: local time (Europe/Amsterdam, with summer time),
weekday commuter peaks and quieter weekends, a shared weather per municipality that drives
particulate matter and rain, and the sun's position for each lamppost's own latitude.
Every value comes from the device's own random stream (seeded by the fleet seed and the
device id), so a fleet with the same seed reports the same readings at the same times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, cast
from zoneinfo import ZoneInfo

from devices import DEVICE_KINDS, Device
from devices.command_messages import AckStatus
from devices.commands_catalogue import command_problems
from simulators.faults import Fault
from simulators.sun import SunTimes, sun_times

LOCAL_ZONE: Final = ZoneInfo("Europe/Amsterdam")
DAY_S: Final = 86400.0
_TIDE_S: Final = 44712.0  # the principal lunar tide, M2: 12 h 25 min


@dataclass(frozen=True, slots=True)
class LocalTime:
    """Local wall-clock hour (0..24, fractional) and weekday (Monday 0) of a moment."""

    hour: float
    weekday: int


_local_cache: dict[int, tuple[float, int]] = {}


def local_time(t: float) -> LocalTime:
    """Local time in the Netherlands at `t` (epoch seconds)."""
    minute = int(t // 60)
    cached = _local_cache.get(minute)
    if cached is None:
        if len(_local_cache) > 200_000:
            _local_cache.clear()
        moment = datetime.fromtimestamp(minute * 60, UTC).astimezone(LOCAL_ZONE)
        cached = (moment.hour + moment.minute / 60.0, moment.weekday())
        _local_cache[minute] = cached
    hour, weekday = cached
    return LocalTime(hour + (t % 60) / 3600.0, weekday)


def _bump(hour: float, peak: float, width: float) -> float:
    return math.exp(-((hour - peak) ** 2) / (2 * width * width))


def traffic_intensity(t: float) -> float:
    """Road traffic relative to the busiest hour of a week, 0..1, at `t` (epoch seconds).

    Weekdays have a morning peak at 08:00 and a broader evening peak at 17:30; weekends a
    single broad early-afternoon hump and a livelier late evening.
    """
    local = local_time(t)
    h = local.hour
    night = 0.04
    if local.weekday < 5:
        day = 0.45 * _bump(h, 13.0, 3.5)
        peaks = _bump(h, 8.0, 0.9) + 0.9 * _bump(h, 17.5, 1.3)
        return min(1.0, night + day + 0.6 * peaks)
    return min(1.0, night + 0.55 * _bump(h, 14.0, 3.0) + 0.08 * _bump(h, 22.5, 1.5))


@dataclass(frozen=True, slots=True)
class Weather:
    """The weather over a municipality at a moment."""

    temperature: float  # Cel
    relative_humidity: float  # %
    wind_speed: float  # m/s
    wind_direction: float  # deg, where the wind comes from
    rain_rate: float  # mm/h


class CityWeather:
    """A municipality's weather: smooth, deterministic in (seed, city), shared by its devices.

    Slow pressure systems are sums of sines with seeded phases over periods of days; temperature
    follows the season and the day. Cached per simulated minute: a whole fleet asks often.
    """

    def __init__(self, seed: int, city: str) -> None:
        rng = random.Random(f"{seed}:weather:{city}")
        self._phases = [rng.uniform(0, 2 * math.pi) for _ in range(8)]
        self._cache: dict[int, Weather] = {}

    def at(self, t: float) -> Weather:
        """The weather at `t` (epoch seconds)."""
        minute = int(t // 60)
        cached = self._cache.get(minute)
        if cached is not None:
            return cached
        if len(self._cache) > 100_000:
            self._cache.clear()
        p = self._phases
        days = minute * 60 / DAY_S
        season = -math.cos(2 * math.pi * (days - 15) / 365.25)  # -1 mid January, +1 mid July
        hour = local_time(minute * 60.0).hour
        diurnal = -math.cos(2 * math.pi * (hour - 3.0) / 24.0)  # coldest near 03:00
        front = math.sin(2 * math.pi * days / 4.3 + p[0]) + 0.6 * math.sin(
            2 * math.pi * days / 9.7 + p[1]
        )
        temperature = 10.5 + 7.5 * season + (3.0 + season) * diurnal + 2.0 * front
        wind = 4.5 + 2.5 * front + 1.2 * math.sin(2 * math.pi * days / 1.7 + p[2]) + 0.8 * diurnal
        wetness = front + 0.7 * math.sin(2 * math.pi * days / 0.9 + p[3])
        rain = max(0.0, wetness - 0.9) * 2.5
        humidity = 78.0 - 12.0 * diurnal - 6.0 * season + 15.0 * min(1.0, rain)
        direction = (235.0 + 60.0 * math.sin(2 * math.pi * days / 6.1 + p[4])) % 360.0
        weather = Weather(
            round(temperature, 2),
            min(100.0, max(20.0, humidity)),
            max(0.0, wind),
            direction,
            rain,
        )
        self._cache[minute] = weather
        return weather


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


class DeviceState:
    """The running state of one simulated device: counters, levels and its own random stream.

    `reading(t)` must be called with non-decreasing `t` (epoch seconds): counters integrate the
    time between readings.
    """

    def __init__(self, device: Device, seed: int, weather: CityWeather | None = None) -> None:
        self.device = device
        self.rng = random.Random(f"{seed}:{device.device_id}")
        self.weather = weather or CityWeather(seed, device.tenant)
        self.last_t: float | None = None
        rng = self.rng
        kind = device.kind
        # Per-device character, fixed for its life.
        self.scale = rng.uniform(0.7, 1.3)  # how busy its street is
        self.totals: dict[str, float] = {}
        self._sun_day = -1
        self._sun = SunTimes(None, None)
        # What accepted commands set: None leaves it to the photocell and the default schedule.
        self.forced_on: bool | None = None
        self.dim_setting: float | None = None
        self.schedule_id: str | None = None
        self.interval_s: float | None = None
        # An episode fault (simulators.faults.EPISODE_KINDS) that changes what it measures.
        self.episode: Fault | None = None
        if kind == "lamppost":
            self.nominal_w = rng.choice((28.0, 36.0, 45.0, 58.0, 75.0, 110.0))
            self.totals["active_energy"] = rng.uniform(50, 4000)
            self.totals["operating_hours"] = rng.uniform(500, 40_000)
            self.photocell_s = rng.uniform(-600, 600)  # switches a little before or after
            self.failed_until = 0.0
        elif kind == "traffic_counter":
            self.totals = {"pedestrians": 0.0, "bicycles": 0.0, "cars": 0.0}
        elif kind == "parking":
            self.residential = rng.random() < 0.5
            self.occupied = float(rng.random() < 0.6)
        elif kind == "waste_bin":
            self.fill = rng.uniform(0, 60)
            self.fill_per_day = rng.uniform(8, 35)  # %/day
            self.collection_days = frozenset(rng.sample(range(7), 2))
            self.collection_hour = rng.uniform(7.0, 11.0)
            self.collected_day = -1
        elif kind == "weather":
            self.totals["rain"] = rng.uniform(0, 3000)
        elif kind == "water_level":
            self.datum = rng.uniform(-0.6, 0.6)  # m NAP of the water body
            self.tide = 0.8 if device.tenant == "GM0599" else rng.uniform(0.0, 0.05)
            self.tide_phase = rng.uniform(0, 2 * math.pi)
            self.wet = 0.0

    def sun(self, t: float) -> SunTimes:
        """Sunrise and sunset at this device on the UTC day of `t`."""
        day = int(t // DAY_S)
        if day != self._sun_day:
            moment = datetime.fromtimestamp(day * DAY_S, UTC).date()
            self._sun = sun_times(moment, self.device.latitude, self.device.longitude)
            self._sun_day = day
        return self._sun

    def lamp_on(self, t: float) -> bool:
        """Whether the lamp's photocell has it switched on at `t` (epoch seconds)."""
        return self.sun(t + self.photocell_s).is_dark(t + self.photocell_s)

    def obey(self, name: str, args: Mapping[str, object]) -> tuple[AckStatus, str]:
        """Carry out a command of the catalogue; (status, detail) for the device's answer.

        The platform checked the arguments already; a device checks again (as a real
        controller would), so a command that does not fit is refused, never half done.
        """
        if problems := command_problems(self.device.kind, name, args):
            return "refused", "; ".join(p.reason for p in problems)
        if name == "set_dim_level":
            self.dim_setting = float(cast("float", args["level"]))
            return "done", f"dim level {self.dim_setting:g} %"
        if name == "switch":
            self.forced_on = bool(args["on"])
            return "done", "lamp on" if self.forced_on else "lamp off"
        if name == "set_schedule":
            self.schedule_id = str(args["scheduleId"])
            self.dim_setting = None
            self.forced_on = None
            return "done", f"following schedule {self.schedule_id}"
        if name == "set_interval":
            self.interval_s = float(cast("float", args["seconds"]))
            return "done", f"reporting every {self.interval_s:g} s"
        return "done", "restarted"  # reboot: the simulated controller keeps its state

    def reading(self, t: float) -> dict[str, float]:
        """The metrics of the reading at `t` (epoch seconds), in catalogue units and ranges."""
        dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        kind = self.device.kind
        if kind == "lamppost":
            return self._lamppost(t, dt)
        if kind == "air_quality":
            return self._air_quality(t)
        if kind == "noise":
            return self._noise(t)
        if kind == "traffic_counter":
            return self._traffic(t, dt)
        if kind == "parking":
            return self._parking(t, dt)
        if kind == "waste_bin":
            return self._waste_bin(t, dt)
        if kind == "weather":
            return self._weather(t, dt)
        if kind == "water_level":
            return self._water_level(t, dt)
        # A kind added to the catalogue before the simulators learned it: mid-range values.
        return {m.name: (m.minimum + m.maximum) / 2 for m in DEVICE_KINDS[kind].metrics}

    def _lamppost(self, t: float, dt: float) -> dict[str, float]:
        rng = self.rng
        on = self.lamp_on(t) if self.forced_on is None else self.forced_on
        if self.episode is Fault.DAY_BURNER and self.forced_on is None:
            on = True  # the photocell is stuck; a command still switches it
        elif self.episode is Fault.DARK:
            on = False  # no supply: commands reach the controller, the lamp stays dark
        if self.failed_until <= t and on and rng.random() < 2e-4:
            # A failed lamp waits one to five days for the maintenance crew.
            self.failed_until = t + rng.uniform(1, 5) * DAY_S
        failed = self.failed_until > t
        dim = 0.0
        if on and self.dim_setting is not None:
            dim = self.dim_setting
        elif on:
            hour = local_time(t).hour
            # The common Dutch schedule: full light in the evening, half from 23:00 to 06:00.
            dim = 50.0 if (hour >= 23.0 or hour < 6.0) else 100.0
        lit = on and not failed and dim > 0.0
        standby = 0.4 + rng.uniform(0.0, 0.2)
        power = standby + (self.nominal_w * dim / 100.0 * rng.uniform(0.97, 1.03) if lit else 0.0)
        energy = self.totals["active_energy"] + power * dt / 3.6e6  # W*s to kW.h
        hours = self.totals["operating_hours"] + (dt / 3600.0 if lit else 0.0)
        self.totals["active_energy"], self.totals["operating_hours"] = energy, hours
        return {
            "dim_level": dim,
            "active_power": round(power, 1),
            "active_energy": round(energy, 4),
            "operating_hours": round(hours, 4),
            "lamp_failure": 1.0 if failed else 0.0,
            "supply_voltage": round(231.0 + rng.gauss(0, 1.8), 1),
        }

    def _air_quality(self, t: float) -> dict[str, float]:
        rng = self.rng
        w = self.weather.at(t)
        traffic = traffic_intensity(t) * self.scale
        # Still air and no rain let particles build up; wind and rain clear them.
        stagnation = 3.0 / (1.5 + w.wind_speed)
        washout = 1.0 / (1.0 + 0.8 * w.rain_rate)
        pm25 = (5.0 + 9.0 * stagnation + 4.0 * traffic) * washout + rng.gauss(0, 0.8)
        pm10 = pm25 * 1.6 + 3.0 * traffic + rng.gauss(0, 1.5)
        no2 = 9.0 + 42.0 * traffic * stagnation + rng.gauss(0, 2.5)
        if self.episode is Fault.POLLUTION_EPISODE:
            # A fire, a building site or a smog day: fine dust far above the WHO guideline.
            pm25 += 45.0
            pm10 += 60.0
        return {
            "pm25": round(_clamp(pm25, 0.5, 1000.0), 1),
            "pm10": round(_clamp(pm10, 1.0, 2000.0), 1),
            "no2": round(_clamp(no2, 1.0, 2000.0), 1),
            "temperature": round(w.temperature + 0.8 + rng.gauss(0, 0.2), 2),
            "relative_humidity": round(_clamp(w.relative_humidity + rng.gauss(0, 1.5), 0, 100), 1),
        }

    def _noise(self, t: float) -> dict[str, float]:
        rng = self.rng
        traffic = traffic_intensity(t) * self.scale
        # Sound energies add: a quiet background plus traffic, then back to decibels. Traffic
        # noise falls faster than traffic: at night (4 % of the busiest hour) a street is near
        # 50 dB, under the night-noise rule's 55 dB; at the busiest hour near 70 dB.
        background = 10 ** (3.8 + 0.05 * rng.random())
        energy = background + 10**7.0 * traffic**1.5
        if self.episode is Fault.LOUD_STREET:
            energy += 10**6.8  # a 68 dB source close by: a party, a generator, night works
        laeq = 10 * math.log10(energy) + rng.gauss(0, 1.0)
        la90 = laeq - 4.0 - 6.0 * traffic - abs(rng.gauss(0, 1.0))
        la10 = laeq + 1.5 + 2.0 * traffic + abs(rng.gauss(0, 0.8))
        lamax = la10 + 6.0 + abs(rng.gauss(0, 5.0))
        return {
            "laeq": round(_clamp(laeq, 20, 140), 1),
            "lamax": round(_clamp(lamax, 20, 150), 1),
            "la10": round(_clamp(la10, 20, 145), 1),
            "la90": round(_clamp(la90, 15, 140), 1),
        }

    def _traffic(self, t: float, dt: float) -> dict[str, float]:
        rng = self.rng
        intensity = traffic_intensity(t) * self.scale
        weekend = local_time(t).weekday >= 5
        out = {}
        # Passers-by per minute at the busiest hour, per class; weekends favour walkers.
        for name, peak in (
            ("pedestrians", 55.0 if weekend else 40.0),
            ("bicycles", 45.0 if weekend else 70.0),
            ("cars", 30.0),
        ):
            mean = peak * intensity * dt / 60.0
            count = max(0, round(rng.gauss(mean, math.sqrt(mean)))) if mean > 0 else 0
            total = self.totals[name] + count
            self.totals[name] = total
            out[name] = total
        return out

    def _parking(self, t: float, dt: float) -> dict[str, float]:
        rng = self.rng
        hour = local_time(t).hour
        if self.residential:
            wanted = 0.55 + 0.35 * _bump(hour, 2.0, 4.0) + 0.35 * _bump(hour, 26.0, 4.0)
        else:
            wanted = 0.15 + 0.75 * _bump(hour, 13.0, 3.5)
        # A bay changes state at about one event per hour, leaning toward the wanted occupancy.
        chance = min(1.0, dt / 3600.0)
        if self.occupied:
            if rng.random() < chance * (1.0 - wanted) * 2:
                self.occupied = 0.0
        elif rng.random() < chance * wanted * 2:
            self.occupied = 1.0
        return {"occupied": self.occupied}

    def _waste_bin(self, t: float, dt: float) -> dict[str, float]:
        rng = self.rng
        local = local_time(t)
        day = int(t // DAY_S)
        busy = 1.0 + 0.8 * traffic_intensity(t)
        self.fill = min(100.0, self.fill + self.fill_per_day * busy * dt / DAY_S * 0.75)
        if (
            local.weekday in self.collection_days
            and local.hour >= self.collection_hour
            and self.collected_day != day
        ):
            self.collected_day = day
            self.fill = rng.uniform(0.0, 4.0)
        sensed = self.fill + rng.gauss(0, 0.8)  # an ultrasonic sensor sees a rough surface
        return {"fill_level": round(_clamp(sensed, 0.0, 100.0), 1)}

    def _weather(self, t: float, dt: float) -> dict[str, float]:
        rng = self.rng
        w = self.weather.at(t)
        rain = self.totals["rain"] + w.rain_rate * dt / 3600.0
        self.totals["rain"] = rain
        return {
            "temperature": round(w.temperature + rng.gauss(0, 0.15), 2),
            "relative_humidity": round(_clamp(w.relative_humidity + rng.gauss(0, 1.0), 0, 100), 1),
            "wind_speed": round(max(0.0, w.wind_speed * self.scale + rng.gauss(0, 0.6)), 1),
            "wind_direction": round((w.wind_direction + rng.gauss(0, 12.0)) % 360.0, 1),
            "rain": round(rain, 2),
        }

    def _water_level(self, t: float, dt: float) -> dict[str, float]:
        rng = self.rng
        w = self.weather.at(t)
        # Rain raises the water slowly; pumping stations bring it back over about a day.
        self.wet = self.wet * math.exp(-dt / DAY_S) + w.rain_rate * dt / 3600.0 * 0.004
        tide = self.tide * math.sin(2 * math.pi * t / _TIDE_S + self.tide_phase)
        level = self.datum + tide + self.wet + rng.gauss(0, 0.005)
        if self.episode is Fault.FLOODED:
            # A burst dike or a pumping station down: the water stands at 2 m NAP or higher.
            level = max(level + 1.0, 2.0)
        return {"level": round(_clamp(level, -20.0, 50.0), 3)}
