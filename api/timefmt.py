"""Timestamps on the API: UTC with `Z`, parsed from RFC 3339 query parameters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # Remembered: the times of a page or an event of readings fall in a few seconds, and
    # making a datetime and its text is most of the cost of a time.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_ns(ns: int) -> str:
    """RFC 3339 in UTC with `Z`, with as many decimals as the value needs (3, 6 or 9)."""
    seconds, rest = divmod(ns, _NS)
    base = _second(seconds)
    if rest == 0:
        return base + "Z"
    if rest % 1_000_000 == 0:
        return f"{base}.{rest // 1_000_000:03d}Z"
    if rest % 1000 == 0:
        return f"{base}.{rest // 1000:06d}Z"
    return f"{base}.{rest:09d}Z"


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime."""
    # Exact integer arithmetic (a float timestamp loses nanoseconds and rounds toward zero
    # before 1970).
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def now_ns() -> int:
    """The current time in ns since the epoch."""
    return to_ns(datetime.now(UTC))


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})"
)


def _rfc3339_only(value: object) -> object:
    # pydantic would also take epoch numbers and zone-less times; the API promises RFC 3339.
    if not isinstance(value, str) or not _RFC3339.fullmatch(value.strip()):
        raise ValueError("give an RFC 3339 time with a zone, e.g. 2026-11-28T12:00:00Z")
    return value


def _storable(value: datetime) -> datetime:
    # InfluxDB keeps nanoseconds in 64 bits: 1677-09-21 to 2262-04-11.
    if not 1678 <= value.year <= 2261:
        raise ValueError("times run from the year 1678 to 2261")
    return value


Moment = Annotated[datetime, BeforeValidator(_rfc3339_only), AfterValidator(_storable)]
