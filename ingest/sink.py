"""The storage sink: raw readings, device status and rejections into InfluxDB."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from ingest.decode import Rejection, rejection_line
from ingest.reasons import Reason
from timeseries import BatchWriter
from timeseries.schema import RAW_RP

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Stores lines and rejections; returns only once they are safely stored.

    Lifecycle: constructed open; `store` may be awaited repeatedly; retries internally for as
    long as storage is unavailable, and raises only on a fatal error (bad credentials).
    """

    async def store(self, lines: Sequence[str], rejections: Sequence[Rejection]) -> list[Rejection]:
        """Store both; returns the rejections that storage itself added."""
        ...


class InfluxSink:
    """Writes to InfluxDB through the batched writer, in chunks of `chunk_lines`."""

    def __init__(self, writer: BatchWriter, chunk_lines: int = 5000, worker: str = "") -> None:
        self._writer = writer
        self._chunk = chunk_lines
        self._worker = worker
        self._last_ns = 0  # time of the last dead-letter point written: each gets its own

    @property
    def unavailable(self) -> bool:
        """Whether InfluxDB is not answering right now (the writer is retrying)."""
        return self._writer.unavailable

    async def store(self, lines: Sequence[str], rejections: Sequence[Rejection]) -> list[Rejection]:
        """Write raw lines, then the dead-letter; refused raw lines join the dead-letter."""
        added: list[Rejection] = []
        for start in range(0, len(lines), self._chunk):
            outcome = await self._writer.write(
                lines[start : start + self._chunk], retention_policy=RAW_RP
            )
            for line, why in outcome.refused:
                log.warning("InfluxDB refused a line: %s", why)
                added.append(
                    Rejection(
                        Reason.STORAGE_REFUSED,
                        "",
                        why[:200],
                        _line_time(line),
                        *_line_owner(line),
                        excerpt=line[:256].encode(),
                        count=_metric_values(line),
                    )
                )
        dead = [*rejections, *added]
        if dead:
            rows = []
            for rejection in dead:
                # Receive time, nudged forward by a nanosecond where two would share one (all
                # rejections of one message were received at once).
                self._last_ns = max(rejection.received_ns, self._last_ns + 1)
                rows.append(rejection_line(rejection, self._last_ns, self._worker))
            outcome = await self._writer.write(rows, retention_policy=RAW_RP)
            for _line, why in outcome.refused:
                log.error("InfluxDB refused a dead-letter point: %s", why)
        return added


def _line_time(line: str) -> int:
    try:
        return int(line.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0


def _line_owner(line: str) -> tuple[str, str]:
    """(tenant, device id) from a raw line's tags; ours are never escaped (ids are plain)."""
    head = line.split(" ", 1)[0].split(",")[1:]
    tags = dict(part.split("=", 1) for part in head if "=" in part)
    return tags.get("tenant", ""), tags.get("device_id", "")


def _metric_values(line: str) -> int:
    """How many metric values a raw line holds (its fields, less seq and ts_assigned)."""
    try:
        fields = line.split(" ")[1].split(",")
    except IndexError:
        return 1
    return max(1, sum(1 for f in fields if not f.startswith(("seq=", "ts_assigned="))))
