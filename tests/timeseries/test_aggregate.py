"""The numpy aggregation agrees with a plain reference, whatever the order of the samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import Aggregation
from tests.timeseries.reference import Sample, reference
from timeseries.aggregate import STATS, Windows, aggregate, merge

NS = 1_000_000_000
WIDTH = 60 * NS
START = 1_800_000_000 * NS - (1_800_000_000 * NS) % WIDTH

VALUES = {
    Aggregation.GAUGE: st.floats(-50, 1000, allow_nan=False),
    Aggregation.LEVEL_DB: st.floats(20, 140, allow_nan=False),
    Aggregation.ANGLE: st.floats(0, 360, allow_nan=False),
    Aggregation.COUNTER: st.integers(0, 10_000).map(float),
    Aggregation.STATE: st.sampled_from([0.0, 1.0]),
}


def samples_of(kind: Aggregation) -> st.SearchStrategy[list[Sample]]:
    # Distinct (series, time) pairs, times from one window before START (context) to 4 after.
    sample = st.tuples(
        st.integers(0, 4), st.integers(START - WIDTH, START + 4 * WIDTH - 1), VALUES[kind]
    )
    return st.lists(sample, max_size=80, unique_by=lambda s: (s[0], s[1]))


def run(kind: Aggregation, samples: list[Sample]) -> dict[tuple[int, int], dict[str, float]]:
    series = np.array([s[0] for s in samples], dtype=np.int64)
    ts = np.array([s[1] for s in samples], dtype=np.int64)
    values = np.array([s[2] for s in samples], dtype=np.float64)
    groups = aggregate(kind, series, ts, values, Windows(START, WIDTH))
    return {
        (int(groups.series[i]), int(groups.window_start_ns[i])): {
            name: float(groups.stats[name][i]) for name in STATS[kind]
        }
        for i in range(len(groups))
    }


def assert_same(
    got: dict[tuple[int, int], dict[str, float]], want: dict[tuple[int, int], dict[str, float]]
) -> None:
    assert got.keys() == want.keys()
    for key, stats in want.items():
        for name, value in stats.items():
            if math.isnan(value):
                assert math.isnan(got[key][name]), (key, name)
            elif name == "circular_mean" and stats["r"] < 1e-6:
                continue  # no mean direction when the angles cancel out
            elif name == "circular_mean":
                difference = abs(got[key][name] - value) % 360
                assert min(difference, 360 - difference) == pytest.approx(0, abs=1e-6)
            else:
                assert got[key][name] == pytest.approx(value, rel=1e-9, abs=1e-6), (key, name)


@pytest.mark.parametrize("kind", list(Aggregation))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_numpy_aggregation_equals_the_reference(kind: Aggregation, data: st.DataObject) -> None:
    samples = data.draw(samples_of(kind))
    want = reference(kind, samples, START, WIDTH)
    assert_same(run(kind, samples), want)
    shuffled = data.draw(st.permutations(samples))
    assert_same(run(kind, shuffled), want)


def test_energetic_mean_is_not_the_arithmetic_mean() -> None:
    got = run(Aggregation.LEVEL_DB, [(0, START, 40.0), (0, START + NS, 80.0)])
    # 10*log10((10^4 + 10^8)/2) = 76.99 dB: the loud second dominates, as the ear hears it.
    assert got[(0, START)]["energetic_mean"] == pytest.approx(76.9901, abs=1e-4)


def test_circular_mean_of_north_crosses_zero() -> None:
    got = run(Aggregation.ANGLE, [(0, START, 350.0), (0, START + NS, 10.0)])
    assert got[(0, START)]["circular_mean"] == pytest.approx(0.0, abs=1e-9) or got[(0, START)][
        "circular_mean"
    ] == pytest.approx(360.0, abs=1e-9)


def test_counter_increase_survives_a_reset_and_uses_the_previous_window() -> None:
    samples = [(0, START - NS, 100.0), (0, START + NS, 130.0), (0, START + 2 * NS, 5.0)]
    got = run(Aggregation.COUNTER, samples)
    # 100 -> 130 is +30; the fall to 5 is a reset, so +5: 35 in all.
    assert got[(0, START)]["increase"] == 35.0
    assert got[(0, START)]["last"] == 5.0


def test_state_share_of_time_on() -> None:
    # On from the previous window, off at 15 s, on again at 45 s: on for 15 + 15 of 60 s.
    samples = [(0, START - NS, 1.0), (0, START + 15 * NS, 0.0), (0, START + 45 * NS, 1.0)]
    got = run(Aggregation.STATE, samples)
    assert got[(0, START)]["share_on"] == pytest.approx(0.5)
    assert got[(0, START)]["covered_s"] == pytest.approx(60.0)


@pytest.mark.parametrize("kind", list(Aggregation))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_merging_minutes_equals_aggregating_the_quarter_hour(
    kind: Aggregation, data: st.DataObject
) -> None:
    samples = data.draw(samples_of(kind))
    series = np.array([s[0] for s in samples], dtype=np.int64)
    ts = np.array([s[1] for s in samples], dtype=np.int64)
    values = np.array([s[2] for s in samples], dtype=np.float64)
    minutes = aggregate(kind, series, ts, values, Windows(START, WIDTH))
    # Four-minute buckets per series, from the one-minute rows.
    four = 4 * WIDTH
    bucket = minutes.series * 10**6 + (minutes.window_start_ns - START) // four
    keys, merged = merge(kind, bucket.astype(np.int64), minutes.stats)
    direct = aggregate(kind, series, ts, values, Windows(START, four))
    want = {
        (int(direct.series[i]), int(direct.window_start_ns[i])): {
            name: float(direct.stats[name][i]) for name in STATS[kind]
        }
        for i in range(len(direct))
    }
    got = {
        (int(k // 10**6), START + int(k % 10**6) * four): {
            name: float(merged[name][i]) for name in STATS[kind]
        }
        for i, k in enumerate(keys)
    }
    if kind is Aggregation.STATE:
        # A state held through minutes without readings has no minute rows to carry it, so
        # the merged share covers less time than a direct aggregation; count and last agree.
        for stats in (*got.values(), *want.values()):
            del stats["share_on"], stats["covered_s"]
    assert_same(got, want)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_merging_states_is_exact_when_every_minute_has_a_reading(data: st.DataObject) -> None:
    # With a reading in every minute no held state goes uncarried, so the share of time on
    # merged from minute rows equals the direct one.
    samples = [
        (
            s,
            START + m * WIDTH + data.draw(st.integers(0, WIDTH - 1)),
            data.draw(VALUES[Aggregation.STATE]),
        )
        for s in range(3)
        for m in range(8)
    ]
    samples = list({(s, t): (s, t, v) for s, t, v in samples}.values())
    series = np.array([s[0] for s in samples], dtype=np.int64)
    ts = np.array([s[1] for s in samples], dtype=np.int64)
    values = np.array([s[2] for s in samples], dtype=np.float64)
    minutes = aggregate(Aggregation.STATE, series, ts, values, Windows(START, WIDTH))
    four = 4 * WIDTH
    bucket = minutes.series * 10**6 + (minutes.window_start_ns - START) // four
    keys, merged = merge(Aggregation.STATE, bucket.astype(np.int64), minutes.stats)
    direct = aggregate(Aggregation.STATE, series, ts, values, Windows(START, four))
    want = {
        (int(direct.series[i]), int(direct.window_start_ns[i])): direct.stats["share_on"][i]
        for i in range(len(direct))
    }
    for i, k in enumerate(keys):
        key = (int(k // 10**6), START + int(k % 10**6) * four)
        assert merged["share_on"][i] == pytest.approx(want[key], rel=1e-9, abs=1e-12)
