"""The episode faults (a polluted, loud or flooded street, a lamp burning by day or dark):
named in `--faults`, shares of the devices of their kind, and what they do to the readings."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime

import pytest

from simulators import Fault, FaultRates, SimClock, make_fleet
from simulators.behaviour import DeviceState
from simulators.device import SimulatedDevice
from simulators.faults import EPISODE_KINDS

FLEET = make_fleet(3000, tenants=2, seed=8)
NIGHT = datetime(2026, 11, 25, 1, 0, tzinfo=UTC).timestamp()  # 02:00 in Amsterdam, Wednesday
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


def _energetic_mean(levels: list[float]) -> float:
    return 10 * math.log10(sum(10 ** (v / 10) for v in levels) / len(levels))


def test_episodes_are_named_and_checked() -> None:
    rates = FaultRates.parse(
        "pollution-episode=0.1,loud_street=0.2,flooded=1,day_burner=0.3,dark=0.1"
    )
    assert (rates.pollution_episode, rates.loud_street, rates.flooded) == (0.1, 0.2, 1.0)
    assert (rates.day_burner, rates.dark) == (0.3, 0.1)
    with pytest.raises(ValueError, match="lamp fault"):
        FaultRates(day_burner=0.7, dark=0.4)
    # A total spread over the faults leaves the streets alone: episodes are asked for by name.
    spread = FaultRates.spread(0.5)
    assert all(getattr(spread, f.value) == 0.0 for f in EPISODE_KINDS)


def test_episodes_hit_their_kind_at_their_share() -> None:
    rates = FaultRates(pollution_episode=0.2, day_burner=0.1, dark=0.3)
    clock = SimClock(1.8e9)
    devices = [SimulatedDevice(d, 9, clock, rates) for d in FLEET.devices]
    by_kind: dict[str, Counter[Fault | None]] = {}
    for device in devices:
        by_kind.setdefault(device.device.kind, Counter())[device.state.episode] += 1
    for kind, counts in by_kind.items():
        wanted = {f for f, k in EPISODE_KINDS.items() if k == kind and getattr(rates, f.value)}
        assert set(counts) - {None} == wanted, kind
    lamps = by_kind["lamppost"]
    total = sum(lamps.values())
    assert lamps[Fault.DAY_BURNER] / total == pytest.approx(0.1, abs=0.03)
    assert lamps[Fault.DARK] / total == pytest.approx(0.3, abs=0.05)
    air = by_kind["air_quality"]
    assert air[Fault.POLLUTION_EPISODE] / sum(air.values()) == pytest.approx(0.2, abs=0.05)
    # The same seed, the same devices hit; the readings' faults are drawn apart.
    again = [SimulatedDevice(d, 9, clock, rates).state.episode for d in FLEET.devices]
    assert again == [d.state.episode for d in devices]


def _states(kind: str, episode: Fault | None) -> list[DeviceState]:
    states = []
    for device in (d for d in FLEET.devices if d.kind == kind):
        state = DeviceState(device, seed=3)
        state.episode = episode
        states.append(state)
    return states[:40]


def test_a_quiet_street_at_night_stays_under_the_night_noise_rule() -> None:
    # The built-in night-noise rule fires above 55 dB: a healthy street at 02:00 must not.
    for state in _states("noise", None):
        night = [state.reading(NIGHT + 60 * n)["laeq"] for n in range(15)]
        assert _energetic_mean(night) < 54.0, state.device.device_id
    for state in _states("noise", Fault.LOUD_STREET):
        night = [state.reading(NIGHT + 60 * n)["laeq"] for n in range(15)]
        assert _energetic_mean(night) > 60.0, state.device.device_id


def test_episodes_change_what_is_measured() -> None:
    for state in _states("air_quality", Fault.POLLUTION_EPISODE):
        assert state.reading(NIGHT)["pm25"] > 40.0
    for state in _states("water_level", Fault.FLOODED):
        assert state.reading(NIGHT)["level"] > 1.5
    for state in _states("lamppost", Fault.DAY_BURNER):
        assert state.reading(NOON)["dim_level"] > 0.0
        assert state.reading(NIGHT)["dim_level"] > 0.0
    for state in _states("lamppost", Fault.DARK):
        assert state.reading(NIGHT)["dim_level"] == 0.0
        assert state.reading(NIGHT + 60)["active_power"] < 1.0
    for state in _states("lamppost", None):
        assert state.reading(NOON)["dim_level"] == 0.0
        assert state.reading(NIGHT)["dim_level"] > 0.0
