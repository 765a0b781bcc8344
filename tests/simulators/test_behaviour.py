"""Signals: within the catalogue, deterministic from the seed, shaped like a city's day and week."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from devices import DEVICE_KINDS
from simulators import FaultRates, SimClock, make_fleet
from simulators.behaviour import DeviceState, traffic_intensity
from simulators.device import SimulatedDevice

FLEET = make_fleet(len(DEVICE_KINDS), tenants=4, seed=5)  # the first devices cover every kind
WEDNESDAY_0300 = datetime(2026, 3, 4, 2, 0, tzinfo=UTC).timestamp()  # 03:00 local (CET)


def test_the_fleet_covers_every_kind_of_the_catalogue() -> None:
    assert {d.kind for d in FLEET.devices} == set(DEVICE_KINDS)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    start=st.floats(1.6e9, 2.0e9),
    step=st.floats(1.0, 7200.0),
)
def test_every_value_is_finite_and_within_its_metric_range(
    seed: int, start: float, step: float
) -> None:
    for device in FLEET.devices:
        state = DeviceState(device, seed)
        kind = DEVICE_KINDS[device.kind]
        for n in range(30):
            reading = state.reading(start + n * step)
            assert set(reading) == {m.name for m in kind.metrics}
            for metric in kind.metrics:
                value = reading[metric.name]
                assert math.isfinite(value)
                assert metric.minimum <= value <= metric.maximum, (metric.name, value)


def _run(seed: int, faults: FaultRates, readings: int = 40) -> list[tuple[str, bytes]]:
    clock = SimClock(1.77e9, 50.0, wall=lambda: 1.77e9 + 7200)
    out: list[tuple[str, bytes]] = []
    for device in make_fleet(40, tenants=2, seed=seed).devices:
        simulated = SimulatedDevice(device, seed, clock, faults)
        for _ in range(readings):
            out.extend((o.topic, o.payload) for o in simulated.tick())
    return out


def test_same_seed_same_messages_other_seed_others() -> None:
    faults = FaultRates.spread(0.2)
    first = _run(11, faults)
    assert first == _run(11, faults)
    assert first != _run(12, faults)


def test_faults_do_not_disturb_the_signals_of_healthy_readings() -> None:
    clean = {p for _, p in _run(11, FaultRates())}
    faulty = {p for _, p in _run(11, FaultRates(out_of_range=0.2))}
    # Readings the fault missed are the same bytes with and without faults elsewhere.
    assert len(clean & faulty) > 0.7 * len(faulty)


def test_commuter_peaks_on_weekdays_and_quieter_weekends() -> None:
    hour = 3600.0
    night = traffic_intensity(WEDNESDAY_0300)
    morning = traffic_intensity(WEDNESDAY_0300 + 5 * hour)  # 08:00
    midday = traffic_intensity(WEDNESDAY_0300 + 10 * hour)
    evening = traffic_intensity(WEDNESDAY_0300 + 14.5 * hour)  # 17:30
    sunday_morning = traffic_intensity(WEDNESDAY_0300 + 4 * 86400 + 5 * hour)
    assert morning > midday > night
    assert evening > midday
    assert sunday_morning < 0.5 * morning


def test_noise_and_no2_follow_traffic() -> None:
    noise = next(d for d in FLEET.devices if d.kind == "noise")
    air = next(d for d in FLEET.devices if d.kind == "air_quality")

    for device, metric in ((noise, "laeq"), (air, "no2")):
        quiet = DeviceState(device, seed=2)
        busy = DeviceState(device, seed=2)
        night = [quiet.reading(WEDNESDAY_0300 + 60 * n)[metric] for n in range(30)]
        rush = [busy.reading(WEDNESDAY_0300 + 5 * 3600 + 60 * n)[metric] for n in range(30)]
        assert sum(rush) / 30 > sum(night) / 30 + 5, metric


def test_counters_never_go_back_and_bins_get_emptied() -> None:
    counter = next(d for d in FLEET.devices if d.kind == "traffic_counter")
    bin_ = next(d for d in FLEET.devices if d.kind == "waste_bin")
    state = DeviceState(counter, seed=4)
    totals = [state.reading(WEDNESDAY_0300 + 60 * n) for n in range(24 * 60)]
    for name in ("pedestrians", "bicycles", "cars"):
        series = [t[name] for t in totals]
        assert series == sorted(series)
        assert series[-1] > 100
    bins = DeviceState(bin_, seed=4)
    fills = [bins.reading(WEDNESDAY_0300 + 900 * n)["fill_level"] for n in range(4 * 24 * 14)]
    drops = sum(1 for a, b in itertools.pairwise(fills) if a - b > 10)
    assert drops >= 3  # two collections a week, over two weeks
