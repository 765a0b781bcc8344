"""The ledger's expectation agrees with ingest's own decoder, fault by fault and in a mix."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from devices import MAX_PAYLOAD_BYTES, MAX_READINGS
from ingest.decode import Decoded, Decoder, TimeRules, prepare
from simulators import Fault, FaultRates, Ledger, Sent, SimClock, make_fleet
from simulators.device import SimulatedDevice
from simulators.payloads import batches, reading_json

FLEET = make_fleet(60, tenants=2, seed=9)
REGISTERED = {d.device_id: d for d in FLEET.devices}


def _publish(rates: FaultRates, ticks: int = 30) -> tuple[Ledger, Decoded]:
    """Every device's messages into a ledger and through ingest's decoder, as published."""
    now = time.time()
    # A day back: even the slowest kind (15 min) stays in the past over 60 ticks.
    clock = SimClock(now - 86400, 10.0, wall=lambda: now)
    ledger = Ledger()
    decoder = Decoder(prepare(FLEET.devices), TimeRules())
    decoded = Decoded()
    received = int(now * 1e9)
    for device in FLEET.devices:
        simulated = SimulatedDevice(device, 4, clock, rates)
        outgoing = [o for _ in range(ticks) for o in simulated.tick()]
        outgoing += simulated.drain()
        for out in outgoing:
            if out.connection:
                continue
            readings = [
                _sent(device.device_id, device.tenant, r.ts_ms, r.seq, r.metrics, r.fault)
                for r in out.readings
            ]
            ledger.add_message(
                out.topic, len(out.payload), received, readings, out.fault, out.copies
            )
            for _ in range(out.copies):
                decoder.decode(out.topic, out.payload, received, decoded)
    return ledger, decoded


def _sent(
    device_id: str, tenant: str, ts_ms: int, seq: int, metrics: dict[str, float], fault: object
) -> Sent:
    return Sent(
        device_id, tenant, ts_ms * 1_000_000, seq, metrics, None if fault is None else str(fault)
    )


def _reasons(decoded: Decoded) -> Counter[str]:
    counts: Counter[str] = Counter()
    for rejection in decoded.rejections:
        counts[rejection.reason.value] += rejection.count
    return counts


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.MALFORMED_JSON, "bad_json"),
        (Fault.OVERSIZE, "payload_too_large"),
        (Fault.FUTURE_TIMESTAMP, "timestamp_in_future"),
        (Fault.STALE_TIMESTAMP, "timestamp_too_old"),
        (Fault.OUT_OF_RANGE, "out_of_range"),
        (Fault.NOT_FINITE, "not_finite"),
        (Fault.UNKNOWN_METRIC, "unknown_metric"),
    ],
)
def test_each_fault_lands_on_its_reason(fault: Fault, reason: str) -> None:
    ledger, decoded = _publish(FaultRates(**{fault.value: 0.3}))
    expected = ledger.expected_outcome(REGISTERED)
    assert ledger.faults()[fault.value] > 10
    assert set(expected.rejected) == {reason}
    assert _reasons(decoded) == expected.rejected
    assert decoded.stored_values == expected.stored_values


def test_wrong_topics_are_each_kind_of_wrong() -> None:
    ledger, decoded = _publish(FaultRates(wrong_topic=0.3))
    expected = ledger.expected_outcome(REGISTERED)
    assert set(expected.rejected) == {"tenant_mismatch", "topic_invalid", "unknown_device"}
    assert _reasons(decoded) == expected.rejected


def test_a_duplicate_is_stored_twice_but_is_one_point() -> None:
    ledger, decoded = _publish(FaultRates(duplicate=0.3))
    expected = ledger.expected_outcome(REGISTERED)
    duplicated = sum(
        len(ledger.sent[i].metrics) for m in ledger.messages if m.copies == 2 for i in m.readings
    )
    assert duplicated > 0
    assert decoded.stored_values == expected.stored_values
    assert expected.stored_values == sum(len(p) for p in expected.points.values()) + duplicated
    assert not decoded.rejections


def test_flapping_devices_send_their_backlog_in_batches_within_the_limits() -> None:
    ledger, decoded = _publish(FaultRates(flap=0.2, out_of_range=0.05), ticks=60)
    batched = [m for m in ledger.messages if len(m.readings) > 1]
    assert batched
    assert all(m.size <= MAX_PAYLOAD_BYTES and len(m.readings) <= MAX_READINGS for m in batched)
    expected = ledger.expected_outcome(REGISTERED)
    assert decoded.stored_values == expected.stored_values
    assert _reasons(decoded) == expected.rejected


def test_a_mix_of_everything_reconciles_value_by_value() -> None:
    ledger, decoded = _publish(FaultRates.spread(0.3), ticks=40)
    expected = ledger.expected_outcome(REGISTERED)
    assert len(expected.rejected) >= 10
    assert _reasons(decoded) == expected.rejected
    assert decoded.stored_values == expected.stored_values
    sent_values = sum(
        len(ledger.sent[i].metrics) * m.copies for m in ledger.messages for i in m.readings
    )
    whole = sum(
        m.copies
        for m in ledger.messages
        if m.fault in {"malformed_json", "oversize", "wrong_topic"}
    )
    # A message rejected whole stands for 1 value in the dead-letter, whatever it carried.
    lost_in_whole = sum(
        len(ledger.sent[i].metrics) * m.copies
        for m in ledger.messages
        if m.fault in {"malformed_json", "oversize", "wrong_topic"}
        for i in m.readings
    )
    assert sent_values - lost_in_whole + whole == expected.stored_values + expected.rejected_values


def test_batches_respect_both_limits_and_non_finite_values_are_literals() -> None:
    readings = [reading_json(1_770_000_000_000 + n, n, {"x": 1}) for n in range(2500)]
    parts = list(batches(readings))
    assert [end - start for start, end, _ in parts] == [1000, 1000, 500]
    assert all(len(p) <= MAX_PAYLOAD_BYTES for _, _, p in parts)
    assert orjson.loads(parts[0][2])["readings"][0]["seq"] == 0
    fat = [
        reading_json(1_770_000_000_000, n, {f"m{k}": 1.0 for k in range(40)}) for n in range(200)
    ]
    fat_parts = list(batches(fat))
    assert len(fat_parts) > 1
    assert all(len(p) <= MAX_PAYLOAD_BYTES for _, _, p in fat_parts)
    assert b'"no2":NaN' in reading_json(0, 0, {"no2": float("nan")})
    assert b'"no2":-Infinity' in reading_json(0, 0, {"no2": float("-inf")})
