"""Points and their one encoding as line protocol."""

from __future__ import annotations

import dataclasses

import pytest

from timeseries.lineprotocol import Encoder, Point, encode, tags


def test_a_point_is_encoded_with_sorted_tags_and_typed_fields() -> None:
    point = Point(
        "air_quality",
        tags(tenant="GM0363", device_id="aq-1"),
        {"pm25": 7.4, "seq": 3, "ts_assigned": True, "note": 'a "b"'},
        1_795_867_200_250_000_000,
    )
    assert encode(point) == (
        "air_quality,device_id=aq-1,tenant=GM0363 "
        'pm25=7.4,seq=3i,ts_assigned=true,note="a \\"b\\"" 1795867200250000000'
    )


def test_names_and_values_that_need_escaping_are_escaped_every_time() -> None:
    encoder = Encoder()
    point = Point("my m", tags(**{"a b": "c,d", "empty": ""}), {"x=y": 1.0, "z": 2}, 5)
    expected = r"my\ m,a\ b=c\,d x\=y=1.0,z=2i 5"
    assert encoder.line(point) == expected
    assert encoder.line(point) == expected  # remembered, still the same


def test_a_point_is_frozen() -> None:
    point = Point("m", (), {"x": 1.0}, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.time_ns = 2  # type: ignore[misc]
    assert point == Point("m", (), {"x": 1.0}, 1)
