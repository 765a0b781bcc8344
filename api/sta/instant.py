"""Instants to the nanosecond, as InfluxDB stores them (a datetime holds microseconds only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.timefmt import format_ns, to_ns

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, order=True)
class Instant:
    """A moment in ns since the epoch (UTC)."""

    ns: int

    @classmethod
    def of(cls, moment: datetime) -> Instant:
        """The instant of an aware datetime."""
        return cls(to_ns(moment))

    @property
    def datetime(self) -> datetime:
        """As an aware UTC datetime (to the microsecond)."""
        return _EPOCH + timedelta(microseconds=self.ns // 1000)

    def __str__(self) -> str:
        """RFC 3339 in UTC with `Z`, with as many decimals as it needs (0, 3, 6 or 9)."""
        return format_ns(self.ns)


@dataclass(frozen=True, slots=True)
class Interval:
    """A time interval [start, end)."""

    start: Instant
    end: Instant

    def __str__(self) -> str:
        """`start/end` as ISO 8601 writes an interval."""
        return f"{self.start}/{self.end}"
