"""Decoding and validation: each reading gets one fate; nothing a device sends raises."""

from __future__ import annotations

import math
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import Device
from ingest.decode import LANES, Decoded, Decoder, TimeRules, prepare
from ingest.reasons import Reason
from timeseries.lineprotocol import Encoder

NOW_NS = time.time_ns()
AQ = Device("aq-1", "GM0363", "air_quality", "Dam", 52.37, 4.89, interval_s=60.0)
LAMP = Device("lamp-1", "GM0363", "lamppost", "Lamp", 52.37, 4.89, extra_kinds=("noise",))
OLD = Device("old-1", "GM0363", "parking", "Gone", 52.0, 4.0, retired_at=None)
DECODER = Decoder(prepare([AQ, LAMP, OLD]), TimeRules())
TOPIC = "lantaarn/v1/GM0363/aq-1/telemetry"


def decode(payload: bytes | dict[str, object], topic: str = TOPIC) -> Decoded:
    out = Decoded()
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    DECODER.decode(topic, raw, NOW_NS, out)
    return out


def lines(out: Decoded) -> list[str]:
    """The decoded points as the sink writes them."""
    encoded = Encoder().lines(out.points)
    # The decoder encodes each point as it makes it: the same lines, the same order.
    assert out.lines == encoded
    return encoded


def reasons(out: Decoded) -> list[str]:
    return sorted(r.reason.value for r in out.rejections)


def test_a_valid_reading_becomes_one_line_with_every_metric() -> None:
    out = decode({"ts": "2026-11-28T12:00:00.250Z", "seq": 3, "metrics": {"pm25": 7.4, "no2": 21}})
    ts = 1_795_867_200_250_000_000
    assert lines(out) == [f"air_quality,device_id=aq-1,tenant=GM0363 pm25=7.4,no2=21.0,seq=3i {ts}"]
    assert out.stored_values == 2
    assert not out.rejections


def test_an_out_of_range_metric_is_rejected_alone() -> None:
    out = decode({"ts": NOW_NS / 1e9, "metrics": {"pm25": -3.0, "no2": 21.0, "co": 1.0}})
    assert reasons(out) == ["out_of_range", "unknown_metric"]
    assert out.stored_values == 1
    assert "no2=21.0" in lines(out)[0]
    assert "pm25" not in lines(out)[0]


def test_not_finite_values_are_named() -> None:
    out = decode(b'{"metrics": {"pm25": NaN, "no2": Infinity, "pm10": 3}}')
    assert reasons(out) == ["not_finite", "not_finite"]
    assert out.stored_values == 1
    assert "ts_assigned=true" in lines(out)[0]  # no ts: stamped with the receive time


def test_a_lamppost_with_a_noise_sensor_stores_each_metric_in_its_kind() -> None:
    out = decode(
        {"ts": "2026-11-28T12:00:00Z", "metrics": {"dim_level": 50, "laeq": 60.5}},
        "lantaarn/v1/GM0363/lamp-1/telemetry",
    )
    assert sorted(line.split(",")[0] for line in lines(out)) == ["lamppost", "noise"]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("lantaarn/v1/GM0363/aq-1/status", b"{}", Reason.TOPIC_INVALID),
        ("elsewhere/aq-1", b"{}", Reason.TOPIC_INVALID),
        ("lantaarn/v1/GM0363/nobody/telemetry", b"{}", Reason.UNKNOWN_DEVICE),
        ("lantaarn/v1/GM0344/aq-1/telemetry", b"{}", Reason.TENANT_MISMATCH),
        (TOPIC, b"{not json", Reason.BAD_JSON),
        (TOPIC, b'{"metrics": {"pm25": "high"}}', Reason.SCHEMA),
        (TOPIC, b'{"metrics": {"pm25": true}}', Reason.SCHEMA),
        (TOPIC, b'{"metrics": {}}', Reason.SCHEMA),
        (TOPIC, b'{"readings": []}', Reason.SCHEMA),
        (TOPIC, b'{"metrics": {"pm25": 1}, "readings": [{"metrics": {"pm25": 1}}]}', Reason.SCHEMA),
        (TOPIC, b'{"device": "other", "metrics": {"pm25": 1}}', Reason.SCHEMA),
        (TOPIC, b" " * (64 * 1024 + 1), Reason.PAYLOAD_TOO_LARGE),
        (
            TOPIC,
            b'{"ts": "2999-01-01T00:00:00Z", "metrics": {"pm25": 1}}',
            Reason.TIMESTAMP_IN_FUTURE,
        ),
        (TOPIC, b'{"ts": 1000, "metrics": {"pm25": 1}}', Reason.TIMESTAMP_TOO_OLD),
        (TOPIC, b'{"ts": "yesterday", "metrics": {"pm25": 1}}', Reason.TIMESTAMP_INVALID),
        (TOPIC, b'{"ts": "2026-11-28T12:00:00", "metrics": {"pm25": 1}}', Reason.TIMESTAMP_INVALID),
    ],
)
def test_each_fault_has_its_reason(topic: str, payload: bytes, reason: Reason) -> None:
    out = decode(payload, topic)
    assert [r.reason for r in out.rejections] == [reason]
    assert lines(out) == []


def test_a_retired_device_is_refused() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    decoder = Decoder(prepare([replace(OLD, retired_at=datetime.now(UTC))]))
    out = Decoded()
    decoder.decode(
        "lantaarn/v1/GM0363/old-1/telemetry", b'{"metrics": {"occupied": 1}}', NOW_NS, out
    )
    assert [r.reason for r in out.rejections] == [Reason.DEVICE_RETIRED]


def test_a_batch_payload_judges_each_reading() -> None:
    good = {"ts": NOW_NS / 1e9, "metrics": {"pm25": 1.0, "no2": 2.0}}
    future = {"ts": NOW_NS / 1e9 + 3600, "metrics": {"pm25": 1.0, "no2": 2.0}}
    out = decode({"readings": [good, future, good]})
    assert out.stored_values == 4
    assert [(r.reason, r.count) for r in out.rejections] == [(Reason.TIMESTAMP_IN_FUTURE, 2)]


topics = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda t, d, c: f"lantaarn/v1/{t}/{d}/{c}",
        st.sampled_from(["GM0363", "GM0344", "x", ""]),
        st.sampled_from(["aq-1", "lamp-1", "old-1", "nobody", "A"]),
        st.sampled_from(["telemetry", "status", "cmd", "x"]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(
        lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS) if _plain(v) else b"{"
    ),
    st.fixed_dictionaries(
        {"metrics": st.dictionaries(st.sampled_from(["pm25", "no2", "laeq", "x"]), json_values)},
        optional={"ts": json_values, "seq": json_values},
    ).map(lambda d: orjson.dumps(d) if _plain(d) else b"[]"),
)


def _plain(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(topic=topics, payload=payloads)
def test_anything_a_device_sends_is_classified_never_raised(topic: str, payload: bytes) -> None:
    out = Decoded()
    DECODER.decode(topic, payload, NOW_NS, out)  # must not raise
    # ...and must not need its last-resort guard: every input is classified on purpose.
    assert not [r for r in out.rejections if r.detail.startswith("undecodable")]
    # Every outcome is accounted for: stored values or rejections with a known reason.
    assert out.points or out.rejections
    for rejection in out.rejections:
        assert isinstance(rejection.reason, Reason)
        assert len(rejection.excerpt) <= 256
    for point in out.points:
        for name, value in point.fields.items():
            if name not in ("seq", "ts_assigned"):
                assert isinstance(value, float)
                assert math.isfinite(value)
    assert out.lines == Encoder().lines(out.points)  # encoded as decoded, one line a point


def test_readings_without_ts_received_together_get_times_of_their_own() -> None:
    workers = [Decoder(prepare([AQ]), lane=lane) for lane in (0, 1)]
    outs = [Decoded(), Decoded()]
    for n in range(50):
        payload = orjson.dumps({"seq": n, "metrics": {"pm25": float(n)}})
        for decoder, out in zip(workers, outs, strict=True):
            decoder.decode(TOPIC, payload, NOW_NS, out)  # one socket read: one receive time
    times = [p.time_ns for out in outs for p in out.points]
    assert len(set(times)) == 100  # also apart from the other worker's
    assert all(-LANES < t - NOW_NS < 50 * LANES for t in times)  # the receive time, nearly
    assert all(p.fields["ts_assigned"] is True for out in outs for p in out.points)
