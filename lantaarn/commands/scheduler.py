"""`lantaarn scheduler`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from lantaarn.commands import Subcommands, install_stop
from lantaarn.settings import Settings

log = logging.getLogger(__name__)


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `scheduler`."""
    parser = commands.add_parser(
        "scheduler",
        help="send dimming schedule steps when due (one of any number holds the lease)",
    )
    parser.add_argument(
        "--name",
        default=settings.scheduler.name,
        help="this scheduler's name in the lease and logs (default %(default)s)",
    )
    parser.add_argument(
        "--once", action="store_true", help="one round (if it gets the lease), then stop"
    )
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the scheduler until stopped; commands go to the outbox for the command service."""
    from dataclasses import replace  # noqa: PLC0415

    from devices.schedule_store import ScheduleStore  # noqa: PLC0415
    from devices.scheduler import Scheduler  # noqa: PLC0415

    config = replace(settings.scheduler_config(), name=args.name)

    async def main() -> None:
        with ScheduleStore(settings.registry()) as store:
            scheduler = Scheduler(config, store)
            if args.once:
                sent = await scheduler.tick()
                held = scheduler.holding
                await scheduler.release()
                print(f"{sent} dimming step(s) sent" if held else "the lease is held elsewhere")  # noqa: T201
                return
            stop = asyncio.Event()
            install_stop(stop)
            log.info("scheduler %s: a look every %g s", scheduler.holder, config.tick_s)
            async with scheduler:
                await stop.wait()

    asyncio.run(main())
    return 0
