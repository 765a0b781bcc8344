"""Telemetry payloads as devices write them: one reading, or a backlog split into batches."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import orjson

from devices import MAX_PAYLOAD_BYTES, MAX_READINGS

_BATCH_OPEN: Final = b'{"readings":['
_BATCH_CLOSE: Final = b"]}"
_NON_FINITE: Final = {math.inf: b"Infinity", -math.inf: b"-Infinity"}
_second_cache: dict[int, str] = {}


def rfc3339_ms(ts_ms: int) -> str:
    """An RFC 3339 UTC timestamp with milliseconds, from epoch milliseconds."""
    second, millis = divmod(ts_ms, 1000)
    prefix = _second_cache.get(second)
    if prefix is None:
        # Formatting dates is the costly part; a busy fleet shares each second many times.
        if len(_second_cache) > 100_000:
            _second_cache.clear()
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _second_cache[second] = prefix
    return f"{prefix}{millis:03d}Z"


def metrics_json(metrics: Mapping[str, float]) -> bytes:
    """The `metrics` object; non-finite values as the JSON5 literals NaN, Infinity, -Infinity.

    Standard JSON has no such literals, but devices send them and the platform must classify
    them, so a faulty device can write them (orjson would quietly write null instead).
    """
    try:
        if all(math.isfinite(v) for v in metrics.values()):
            return orjson.dumps(metrics)
    except TypeError:
        return orjson.dumps(metrics)
    parts = []
    for name, value in metrics.items():
        text = (
            orjson.dumps(value)
            if math.isfinite(value)
            else (b"NaN" if math.isnan(value) else _NON_FINITE[value])
        )
        parts.append(orjson.dumps(name) + b":" + text)
    return b"{" + b",".join(parts) + b"}"


def reading_json(ts_ms: int, seq: int, metrics: Mapping[str, float]) -> bytes:
    """One reading as a JSON object with an RFC 3339 UTC timestamp (epoch milliseconds in)."""
    return b'{"ts":"%s","seq":%d,"metrics":%s}' % (
        rfc3339_ms(ts_ms).encode(),
        seq,
        metrics_json(metrics),
    )


def telemetry_payload(ts_ms: int, seq: int, metrics: dict[str, float]) -> bytes:
    """A single-reading payload with an RFC 3339 UTC timestamp (epoch milliseconds in)."""
    return reading_json(ts_ms, seq, metrics)


def batches(
    readings: Sequence[bytes],
    *,
    max_readings: int = MAX_READINGS,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Iterator[tuple[int, int, bytes]]:
    """Split encoded readings into `{"readings": [...]}` payloads within both limits.

    Yields (first index, end index, payload). A single reading too big for any batch is
    yielded alone, oversize: the platform will say so.
    """
    start = 0
    while start < len(readings):
        size = len(_BATCH_OPEN) + len(_BATCH_CLOSE) + len(readings[start])
        end = start + 1
        while end < len(readings) and end - start < max_readings:
            grown = size + 1 + len(readings[end])  # a comma and the reading
            if grown > max_bytes:
                break
            size = grown
            end += 1
        yield start, end, _BATCH_OPEN + b",".join(readings[start:end]) + _BATCH_CLOSE
        start = end
