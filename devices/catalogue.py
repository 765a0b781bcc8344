"""The metric catalogue: device kinds, their metrics, units, valid ranges and aggregation kinds.

This module is the one source of truth for what a device may report. Validation, aggregation,
the API's `/v1/device-kinds`, the dashboard's labels and the simulators all read it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class Aggregation(enum.StrEnum):
    """How readings of a metric combine over a window."""

    GAUGE = "gauge"  # count, mean, min, max, stddev
    LEVEL_DB = "level_db"  # energetic mean: 10*log10(mean(10^(L/10)))
    ANGLE = "angle"  # circular mean, degrees
    COUNTER = "counter"  # increase over the window, surviving resets
    STATE = "state"  # last value and the share of time on


@dataclass(frozen=True, slots=True)
class Metric:
    """One quantity a device reports, with its UCUM unit and physically valid range."""

    name: str
    unit: str  # UCUM case-sensitive code
    minimum: float
    maximum: float
    aggregation: Aggregation
    description: str
    label: str


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """A kind of device: what it measures and how often it usually reports (seconds)."""

    name: str
    label: str
    description: str
    metrics: tuple[Metric, ...]
    interval_s: float
    # Readings that tell about people (counts of passers-by from a camera or a radar): such a
    # kind can never be published as open data, whatever a tenant asks.
    personal_data: bool = False

    def metric(self, name: str) -> Metric | None:
        """The metric of this kind called `name`, or None."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        return None


_G = Aggregation.GAUGE


def _temperature() -> Metric:
    return Metric("temperature", "Cel", -50.0, 70.0, _G, "Air temperature", "Temperature")


def _humidity() -> Metric:
    return Metric(
        "relative_humidity",
        "%",
        0.0,
        100.0,
        _G,
        "Relative humidity of the air",
        "Relative humidity",
    )


def _level(name: str, description: str, label: str) -> Metric:
    return Metric(name, "dB", 0.0, 160.0, Aggregation.LEVEL_DB, description, label)


def _count(name: str, label: str) -> Metric:
    return Metric(
        name,
        "{count}",
        0.0,
        1e12,
        Aggregation.COUNTER,
        f"Running total of {label.lower()} counted since the device started",
        label,
    )


_KINDS: tuple[DeviceKind, ...] = (
    DeviceKind(
        "air_quality",
        "Air quality",
        "Particulate matter, nitrogen dioxide and climate sensor",
        (
            Metric("pm25", "ug/m3", 0.0, 1000.0, _G, "Particulate matter up to 2.5 um", "PM2.5"),
            Metric("pm10", "ug/m3", 0.0, 2000.0, _G, "Particulate matter up to 10 um", "PM10"),
            Metric("no2", "ug/m3", 0.0, 2000.0, _G, "Nitrogen dioxide", "NO2"),
            _temperature(),
            _humidity(),
        ),
        60.0,
    ),
    DeviceKind(
        "noise",
        "Noise",
        "Sound level meter, A-weighted levels over the reporting interval",
        (
            _level("laeq", "Equivalent continuous A-weighted sound level", "LAeq"),
            _level("lamax", "Maximum A-weighted sound level", "LAmax"),
            _level("la10", "A-weighted level exceeded 10% of the time", "LA10"),
            _level("la90", "A-weighted level exceeded 90% of the time", "LA90"),
        ),
        60.0,
    ),
    DeviceKind(
        "lamppost",
        "Lamppost",
        "Smart street light controller (metric names after TALQ)",
        (
            Metric("dim_level", "%", 0.0, 100.0, _G, "Light output as share of full", "Dim level"),
            Metric("active_power", "W", 0.0, 5000.0, _G, "Electrical power drawn", "Power"),
            Metric(
                "active_energy",
                "kW.h",
                0.0,
                1e9,
                Aggregation.COUNTER,
                "Energy meter reading",
                "Energy",
            ),
            Metric(
                "operating_hours",
                "h",
                0.0,
                1e7,
                Aggregation.COUNTER,
                "Burning hours of the lamp",
                "Burning hours",
            ),
            Metric(
                "lamp_failure",
                "1",
                0.0,
                1.0,
                Aggregation.STATE,
                "1 while the lamp reports a failure",
                "Lamp failure",
            ),
            Metric("supply_voltage", "V", 0.0, 500.0, _G, "Mains supply voltage", "Voltage"),
        ),
        300.0,
    ),
    DeviceKind(
        "traffic_counter",
        "Traffic counter",
        "Counts passing road users per class",
        (
            _count("pedestrians", "Pedestrians"),
            _count("bicycles", "Bicycles"),
            _count("cars", "Cars"),
        ),
        60.0,
        personal_data=True,
    ),
    DeviceKind(
        "parking",
        "Parking sensor",
        "Occupancy of one parking bay",
        (
            Metric(
                "occupied",
                "1",
                0.0,
                1.0,
                Aggregation.STATE,
                "1 while a vehicle is parked",
                "Occupied",
            ),
        ),
        120.0,
    ),
    DeviceKind(
        "waste_bin",
        "Waste bin",
        "Fill level sensor of an underground or street bin",
        (Metric("fill_level", "%", 0.0, 100.0, _G, "How full the bin is", "Fill level"),),
        900.0,
    ),
    DeviceKind(
        "weather",
        "Weather station",
        "Local weather station",
        (
            _temperature(),
            _humidity(),
            Metric("wind_speed", "m/s", 0.0, 75.0, _G, "Mean wind speed", "Wind speed"),
            Metric(
                "wind_direction",
                "deg",
                0.0,
                360.0,
                Aggregation.ANGLE,
                "Direction the wind comes from, clockwise from north",
                "Wind direction",
            ),
            Metric(
                "rain",
                "mm",
                0.0,
                1e6,
                Aggregation.COUNTER,
                "Rain gauge total since the device started",
                "Rain",
            ),
        ),
        60.0,
    ),
    DeviceKind(
        "water_level",
        "Water level",
        "Surface water level gauge",
        (Metric("level", "m", -20.0, 50.0, _G, "Water level relative to NAP", "Water level"),),
        300.0,
    ),
)

DEVICE_KINDS: Mapping[str, DeviceKind] = MappingProxyType({k.name: k for k in _KINDS})


def device_kind(name: str) -> DeviceKind | None:
    """The device kind called `name`, or None."""
    return DEVICE_KINDS.get(name)
