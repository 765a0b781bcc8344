"""The scheduler: sends each dimming step when it is due, as a command through the outbox.

Every `tick_s` it takes (or renews) the one lease in the registry's database and stores a
`set_dim_level` command for each lamp whose step in force changed (devices.schedule_store);
the command service publishes them like any operator's command, and the audit trail names
the schedule as their giver. It runs in the API's lifespan (`LANTAARN_SCHEDULER__ENABLED`) or
alone (`lantaarn scheduler`); any number may run, one sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from devices.schedule_store import LeaseLost, ScheduleStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How the scheduler runs (seconds)."""

    name: str = "scheduler"  # shown in the lease and the logs, beside a token of the process
    tick_s: float = 15.0  # how often it looks for due steps
    lease_s: float = 60.0  # how long the lease lasts unrenewed (more than a tick)
    deadline_s: float = 900.0  # a scheduled command's deadline
    batch: int = 500  # lamps per sending transaction


class Scheduler:
    """Runs `ScheduleStore.dispatch` every tick until exit; an async context manager."""

    def __init__(
        self,
        config: SchedulerConfig,
        store: ScheduleStore,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.on_sent = on_sent  # e.g. wake the command service in the same process
        self.sent = 0
        self.holding = False
        # Unique per process, whatever the name: two schedulers configured alike must still
        # never both hold the lease. A crashed one's lease runs out (`lease_s`); a stopped one
        # gives it back.
        token = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.holder = f"{config.name[:40]}@{token}"
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Scheduler:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scheduler")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(SQLAlchemyError):
            await self.release()

    async def tick(self) -> int:
        """One round: how many commands it stored (0 when another scheduler holds the lease)."""
        c = self.config
        try:
            result = await asyncio.to_thread(
                self.store.dispatch,
                self.holder,
                lease_s=c.lease_s,
                deadline_s=c.deadline_s,
                chunk=c.batch,
            )
        except LeaseLost as exc:
            log.warning("%s; another scheduler sends", exc)
            self.holding = False
            return 0
        if result.held != self.holding:
            log.info(
                "scheduler %s %s the lease", self.holder, "took" if result.held else "does not hold"
            )
        self.holding = result.held
        if result.sent:
            self.sent += result.sent
            log.info("scheduler sent %d dimming step(s)", result.sent)
            if self.on_sent is not None:
                self.on_sent()
        return result.sent

    async def release(self) -> None:
        """Give the lease up (a clean stop): another scheduler may take over at once."""
        if self.holding:
            await asyncio.to_thread(self.store.release_lease, self.holder)
            self.holding = False

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except SQLAlchemyError as exc:
                log.warning("registry database failed in the scheduler: %s", exc)
            except Exception:  # a bad schedule must not stop the others for good
                log.exception("scheduler round failed; again next tick")
            await asyncio.sleep(self.config.tick_s)
