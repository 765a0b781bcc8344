"""What a rebuild of [first, last) makes known complete, given what was known before."""

from __future__ import annotations

from timeseries.rollups import Coverage, widened


def test_a_rebuild_widens_a_span_it_touches_and_starts_one_where_there_was_none() -> None:
    assert widened(None, 10, 20) == Coverage(10, 20)
    assert widened(Coverage(20, 30), 10, 20) == Coverage(10, 30)  # adjacent before
    assert widened(Coverage(20, 30), 25, 40) == Coverage(20, 40)  # overlapping the end
    assert widened(Coverage(20, 30), 0, 50) == Coverage(0, 50)  # around it


def test_a_rebuild_apart_from_the_span_or_inside_it_changes_nothing() -> None:
    assert widened(Coverage(20, 30), 0, 10) is None  # a gap [10, 20) may lack rows
    assert widened(Coverage(20, 30), 31, 40) is None
    assert widened(Coverage(20, 30), 22, 28) is None  # already known
    assert widened(None, 10, 10) is None  # no whole window
