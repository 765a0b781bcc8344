"""The storage sink: raw readings, device status and rejections into InfluxDB."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final, Protocol

from ingest.decode import Rejection, rejection_point
from ingest.reasons import Reason
from timeseries import BatchWriter
from timeseries.lineprotocol import Encoder, Point
from timeseries.schema import RAW_RP

log = logging.getLogger(__name__)

# Messages whose rejections' times are remembered, and for how long (ns): a redelivery within
# these bounds stores its rejections again at the same times, so they replace themselves.
REMEMBERED_MESSAGES: Final = 100_000
REMEMBERED_FOR_NS: Final = 3600 * 1_000_000_000


class Sink(Protocol):
    """Stores points and rejections; returns only once they are safely stored.

    Lifecycle: constructed open; `store` may be awaited repeatedly; retries internally for as
    long as storage is unavailable, and raises only on a fatal error (bad credentials).
    """

    @property
    def unavailable(self) -> bool:
        """Whether storage does not answer right now (refused, or slower than a few seconds)."""
        ...

    @property
    def slow_writes(self) -> int:
        """How many writes took longer than a few seconds (see timeseries.BatchWriter)."""
        ...

    async def store(
        self,
        points: Sequence[Point],
        rejections: Sequence[Rejection],
        /,
        lines: Sequence[str] = (),
    ) -> list[Rejection]:
        """Store both; returns the rejections that storage itself added.

        `lines` are the line protocol of the first `len(lines)` points, encoded already by the
        stage that made them (the decoder encodes each point as it makes it, with the series key
        it prepared per device, rather than having it looked up again); the sink encodes the
        rest.
        """
        ...


class RejectionTimes:
    """Gives every rejection a time of its own, the same again when its message comes back.

    A rejection is stored at its message's receive time, nudged forward by a nanosecond where
    two would share one (all rejections of one message were received at once, and so were the
    messages of one socket read). A redelivered message is received later: its first time is
    looked up by the message's key, so its rejections land on the same points and replace
    themselves rather than being counted twice. Remembered for `REMEMBERED_FOR_NS` and at most
    `REMEMBERED_MESSAGES` messages, in this process only.
    """

    def __init__(self) -> None:
        self._first: dict[int, int] = {}  # message key -> time of its first rejection
        self._next_ns = 0  # the earliest time no rejection of this sink was given yet

    def times(self, rejections: Sequence[Rejection]) -> list[int]:
        """A time (ns) for each rejection, in order."""
        out: list[int] = []
        at = 0
        previous: int | None = None
        for rejection in rejections:
            key = rejection.message
            if previous is not None and key == previous and key != 0:
                at += 1  # the next rejection of the same message
            else:
                at = self._first_time(rejection)
            previous = key
            out.append(at)
            self._next_ns = max(self._next_ns, at + 1)
        return out

    def _first_time(self, rejection: Rejection) -> int:
        key = rejection.message
        first = self._first.get(key) if key else None
        if first is not None:
            return first
        at = max(rejection.received_ns, self._next_ns)
        if key:
            self._forget_before(at - REMEMBERED_FOR_NS)
            self._first[key] = at
        return at

    def _forget_before(self, oldest_ns: int) -> None:
        remembered = self._first
        # Insertion order is time order: the oldest entries are first.
        while remembered:
            key, at = next(iter(remembered.items()))
            if at >= oldest_ns and len(remembered) < REMEMBERED_MESSAGES:
                return
            del remembered[key]


class InfluxSink:
    """Writes to InfluxDB through the batched writer, in chunks of `chunk_lines`."""

    def __init__(self, writer: BatchWriter, chunk_lines: int, worker: str) -> None:
        self._writer = writer
        self._chunk = chunk_lines
        self._worker = worker
        self._encoder = Encoder()
        self._times = RejectionTimes()

    @property
    def unavailable(self) -> bool:
        """Whether InfluxDB is not answering right now (the writer is retrying or waiting)."""
        return self._writer.unavailable

    @property
    def slow_writes(self) -> int:
        """Writes InfluxDB took longer than the writer's `slow_after_s` to answer."""
        return self._writer.slow_writes

    async def store(
        self,
        points: Sequence[Point],
        rejections: Sequence[Rejection],
        /,
        lines: Sequence[str] = (),
    ) -> list[Rejection]:
        """Write raw points, then the dead-letter; refused raw points join the dead-letter.

        `lines`: those of the first points, encoded already (see `Sink.store`).
        """
        added: list[Rejection] = []
        if len(lines) < len(points):
            lines = [*lines, *self._encoder.lines(points[len(lines) :])]
        for start in range(0, len(lines), self._chunk):
            outcome = await self._writer.write(
                lines[start : start + self._chunk], retention_policy=RAW_RP
            )
            if not outcome.refused:
                continue
            refused_points = dict(zip(lines, points, strict=True))
            for line, why in outcome.refused:
                log.warning("InfluxDB refused a line: %s", why)
                added.append(_refused(refused_points[line], line, why))
        dead = [*rejections, *added]
        if dead:
            rows = [
                rejection_point(rejection, at, self._worker)
                for rejection, at in zip(dead, self._times.times(dead), strict=True)
            ]
            outcome = await self._writer.write(self._encoder.lines(rows), retention_policy=RAW_RP)
            for _line, why in outcome.refused:
                log.error("InfluxDB refused a dead-letter point: %s", why)
        return added


def _refused(point: Point, line: str, why: str) -> Rejection:
    """The rejection standing for a raw point InfluxDB refused."""
    owner = dict(point.tags)
    return Rejection(
        Reason.STORAGE_REFUSED,
        "",
        why[:200],
        point.time_ns,
        owner.get("tenant", ""),
        owner.get("device_id", ""),
        excerpt=line[:256].encode(),
        # its metric values: every field but the bookkeeping ones
        count=max(1, sum(1 for name in point.fields if name not in ("seq", "ts_assigned"))),
        message=hash(line),
    )
