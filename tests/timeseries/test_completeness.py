"""Counting lost readings from `seq`: properties of timeseries.completeness.count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timeseries.completeness import REORDER, count

NS = 1_000_000_000
DISPLACE = REORDER // 4  # how far (in positions) a reading may arrive out of order


@st.composite
def device_stream(draw: st.DrawFn) -> tuple[list[int], int]:
    """One device's seq values in arrival order and how many interior readings were dropped.

    Epochs (a restart sets seq back to 0) long enough that a restart is told from reordering;
    each epoch is shuffled locally, gets duplicates and loses some readings.
    """
    epochs = draw(st.integers(1, 3))
    sent: list[int] = []
    dropped = 0
    for k in range(epochs):
        # The first epoch may begin anywhere (the device was running before the period).
        base = draw(st.integers(0, 10**6)) if k == 0 else 0
        length = draw(st.integers(3 * REORDER, 3 * REORDER + 200))
        seqs = list(range(base, base + length))
        drops = draw(st.sets(st.integers(1, length - 2), max_size=40))
        # Dropping the first or last reading of an epoch cannot be seen (nothing bounds it).
        kept = [s for i, s in enumerate(seqs) if i not in drops]
        dropped += len(drops)
        jitter = draw(st.lists(st.floats(0, DISPLACE), min_size=len(kept), max_size=len(kept)))
        order = sorted(range(len(kept)), key=lambda i: i + jitter[i])
        shuffled = [kept[i] for i in order]
        # Duplicates (a redelivery) shortly after the original.
        for at in draw(st.lists(st.integers(0, len(shuffled) - 1), max_size=20)):
            shuffled.insert(min(len(shuffled), at + draw(st.integers(1, DISPLACE))), shuffled[at])
        sent.extend(shuffled)
    return sent, dropped


def _arrays(streams: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    device, ts, seq = [], [], []
    for d, stream in enumerate(streams):
        for i, s in enumerate(stream):
            device.append(d)
            ts.append(i * NS)  # one reading a second, in arrival order
            seq.append(s)
    return np.asarray(device), np.asarray(ts), np.asarray(seq)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(device_stream(), min_size=1, max_size=4))
def test_only_dropped_readings_count_as_missing(streams: list[tuple[list[int], int]]) -> None:
    device, ts, seq = _arrays([s for s, _ in streams])
    counts = count(device, ts, seq, 0, int(ts.max()) + NS)
    for d, (stream, dropped) in enumerate(streams):
        mine = counts.device == d
        assert int(counts.missing[mine].sum()) == dropped
        # Each distinct reading of an epoch is received once, duplicates or not.
        assert int(counts.received[mine].sum()) <= len(stream)
    assert (counts.expected >= counts.received).all()


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(device_stream())
def test_windows_add_up_to_the_whole(stream: tuple[list[int], int]) -> None:
    """Split into minutes, the figures sum to those of one window over the whole period."""
    device, ts, seq = _arrays([stream[0]])
    end = int(ts.max()) + NS
    whole = count(device, ts, seq, 0, end, width_ns=end)
    minutes = count(device, ts, seq, 0, end)
    assert int(minutes.received.sum()) == int(whole.received.sum())
    assert int(minutes.expected.sum()) == int(whole.expected.sum())


def test_restart_is_not_a_gap_and_a_drop_is() -> None:
    before = list(range(500, 800))
    after = list(range(200))
    device, ts, seq = _arrays([[*before, *after]])
    counts = count(device, ts, seq, 0, len(ts) * NS)
    assert int(counts.missing.sum()) == 0
    assert int(counts.received.sum()) == 500

    with_drop = [*before, *after[:50], *after[51:]]
    device, ts, seq = _arrays([with_drop])
    counts = count(device, ts, seq, 0, len(ts) * NS)
    assert int(counts.missing.sum()) == 1


def test_a_hole_across_a_window_edge_counts_in_the_later_window() -> None:
    # seq 0..59 in the first minute, 61..119 in the second: 60 is missing, seen in minute two.
    seqs = [s for s in range(120) if s != 60]
    device, ts, seq = _arrays([seqs])
    ts = np.asarray([s * NS for s in seqs])
    counts = count(device, ts, seq, 60 * NS, 120 * NS)  # the first minute is only context
    assert counts.window_start_ns.tolist() == [60 * NS]
    assert counts.received.tolist() == [59]
    assert counts.expected.tolist() == [60]


def test_late_redelivered_duplicate_is_not_a_restart() -> None:
    # 450 comes back long after (a redelivery stamped with its receive time), then 601 follows.
    seqs = [*range(300, 601), 450, *range(601, 700)]
    device, ts, seq = _arrays([seqs])
    counts = count(device, ts, seq, 0, len(ts) * NS)
    assert int(counts.missing.sum()) == 0
