"""The command faults of the fault mix: deterministic from the seed, at their shares, apart
from the readings."""

from __future__ import annotations

from collections import Counter

import pytest

from simulators import Fault, FaultRates, SimClock, make_fleet
from simulators.device import SimulatedDevice

FLEET = make_fleet(2000, tenants=2, seed=4)
MIX = FaultRates(refuses_commands=0.1, never_answers=0.05, offline_spells=0.2)


def _faults(seed: int, rates: FaultRates) -> list[Fault | None]:
    clock = SimClock(1.8e9)
    return [SimulatedDevice(d, seed, clock, rates).command_fault for d in FLEET.devices]


def test_command_faults_follow_the_seed_at_their_shares() -> None:
    first = _faults(9, MIX)
    assert _faults(9, MIX) == first
    assert _faults(10, MIX) != first
    counts = Counter(first)
    total = len(first)
    assert counts[Fault.REFUSES_COMMANDS] / total == pytest.approx(0.1, abs=0.03)
    assert counts[Fault.NEVER_ANSWERS] / total == pytest.approx(0.05, abs=0.02)
    assert counts[Fault.OFFLINE_SPELLS] / total == pytest.approx(0.2, abs=0.04)
    assert set(_faults(9, FaultRates())) == {None}


def test_command_faults_leave_the_readings_alone() -> None:
    clock = SimClock(1.8e9)
    device = FLEET.devices[0]
    plain = SimulatedDevice(device, 9, clock, FaultRates(silent=0.1))
    mixed = SimulatedDevice(device, 9, clock, FaultRates(silent=0.1, offline_spells=0.5))
    assert plain.next_due == mixed.next_due
    assert plain.skew_s == mixed.skew_s


def test_command_faults_are_named_or_spread() -> None:
    named = FaultRates.parse("refuses_commands=0.01,never-answers=0.02,offline_spells=0.03")
    assert (named.refuses_commands, named.never_answers, named.offline_spells) == (
        0.01,
        0.02,
        0.03,
    )
    spread = FaultRates.spread(0.06)
    assert spread.refuses_commands == spread.never_answers == spread.offline_spells == 0.02
    with pytest.raises(ValueError, match="command fault"):
        FaultRates(refuses_commands=0.6, offline_spells=0.6)
