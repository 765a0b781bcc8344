"""Timestamps on the API: UTC with `Z`, parsed from RFC 3339 query parameters."""

from __future__ import annotations

from datetime import UTC, datetime

_NS = 1_000_000_000


def format_ns(ns: int) -> str:
    """RFC 3339 in UTC with `Z`, with as many decimals as the value needs (3, 6 or 9)."""
    seconds, rest = divmod(ns, _NS)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if rest == 0:
        return base + "Z"
    if rest % 1_000_000 == 0:
        return f"{base}.{rest // 1_000_000:03d}Z"
    if rest % 1000 == 0:
        return f"{base}.{rest // 1000:06d}Z"
    return f"{base}.{rest:09d}Z"


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime."""
    return int(moment.timestamp()) * _NS + moment.microsecond * 1000


def now_ns() -> int:
    """The current time in ns since the epoch."""
    return to_ns(datetime.now(UTC))
