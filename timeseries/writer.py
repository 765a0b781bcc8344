"""Writing line protocol in batches: retry with backoff, split on 413, isolate refused lines."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from timeseries.client import InfluxClient
from timeseries.errors import InfluxRejected, InfluxTooLarge, InfluxUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, in seconds."""

    first_s: float = 0.2
    cap_s: float = 15.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """How long to wait before attempt number `attempt` (1-based) is retried."""
        ceiling = min(self.cap_s, self.first_s * 2 ** min(attempt, 20))
        wait = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security
        if retry_after is not None:
            wait = max(wait, min(retry_after, 300.0))
        return wait


@dataclass(slots=True)
class WriteOutcome:
    """What became of a batch: lines the database refused (with its reason), and retries made."""

    refused: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0


class BatchWriter:
    """Writes line protocol until InfluxDB accepts it; only refused lines come back.

    A database that stops answering without closing the connection (frozen, swapping, a
    network path gone quiet) would only show when the client's timeout ends the request, so a
    write still unanswered after `slow_after_s` seconds is logged and counted (`slow_writes`)
    and marks the writer `unavailable` until an answer comes.
    """

    def __init__(
        self, client: InfluxClient, backoff: Backoff | None = None, *, slow_after_s: float = 5.0
    ) -> None:
        self._client = client
        self._backoff = backoff or Backoff()
        self.slow_after_s = slow_after_s
        self.unavailable = False  # True while the database does not answer
        self.slow_writes = 0

    async def write(
        self, lines: Sequence[str], *, retention_policy: str | None = None
    ) -> WriteOutcome:
        """Store `lines`, retrying for as long as it takes; raises InfluxAuthFailed."""
        outcome = WriteOutcome()
        if lines:
            await self._write(list(lines), retention_policy, outcome)
        return outcome

    async def _write(self, lines: list[str], rp: str | None, outcome: WriteOutcome) -> None:
        attempt = 0
        body = ("\n".join(lines) + "\n").encode()
        while True:
            started = time.monotonic()
            watch = asyncio.get_running_loop().call_later(
                self.slow_after_s, self._slow, len(lines), started
            )
            try:
                try:
                    await self._client.write(body, retention_policy=rp)
                finally:
                    watch.cancel()
            except InfluxUnavailable as exc:
                attempt += 1
                outcome.retries += 1
                delay = self._backoff.delay(attempt, exc.retry_after)
                if not self.unavailable or attempt % 10 == 1:
                    log.warning("%s; retry %d in %.1f s", exc, attempt, delay)
                self.unavailable = True
                await asyncio.sleep(delay)
                continue
            except InfluxTooLarge:
                if len(lines) == 1:
                    outcome.refused.append((lines[0], "point too large for the database"))
                    return
                await self._halves(lines, rp, outcome)
                return
            except InfluxRejected as exc:
                # A 400 may be a partial write: the good lines are stored already. Rewriting
                # them is harmless (same series, same time, same values), so bisect until each
                # refused line stands alone.
                if len(lines) == 1:
                    outcome.refused.append((lines[0], str(exc)))
                    return
                await self._halves(lines, rp, outcome)
                return
            if self.unavailable:
                log.info(
                    "InfluxDB accepts writes again (this one took %.1f s)",
                    time.monotonic() - started,
                )
            self.unavailable = False
            return

    def _slow(self, lines: int, started: float) -> None:
        """A write is still unanswered after `slow_after_s`: say so, and count it."""
        self.slow_writes += 1
        self.unavailable = True
        log.warning(
            "InfluxDB has not answered a write of %d lines for %.0f s; still waiting",
            lines,
            time.monotonic() - started,
        )

    async def _halves(self, lines: list[str], rp: str | None, outcome: WriteOutcome) -> None:
        middle = len(lines) // 2
        await self._write(lines[:middle], rp, outcome)
        await self._write(lines[middle:], rp, outcome)
