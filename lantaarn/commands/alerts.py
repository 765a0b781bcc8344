"""`lantaarn alerts`: the alert evaluator (rules over stored readings, then notifications).

Run one per machine or more: replicas share a lease in the registry, so one evaluates and
notifies at a time and another takes over within the lease's duration when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from lantaarn.commands import Subcommands, install_stop
from lantaarn.settings import Settings

log = logging.getLogger(__name__)


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `alerts`."""
    parser = commands.add_parser(
        "alerts",
        help="evaluate alert rules and send notifications",
        description=(
            f"Evaluate every enabled alert rule every {settings.alerts.interval_s:g} s "
            "(LANTAARN_ALERTS__INTERVAL_S) and send the notifications they owe (webhook, e-mail, "
            "Alertmanager; see the README)."
        ),
    )
    parser.add_argument(
        "--once", action="store_true", help="run one round (if this replica gets the lease)"
    )
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Evaluate until stopped (or once)."""
    from devices import Registry  # noqa: PLC0415
    from lantaarn.alerts import channels, evaluator  # noqa: PLC0415
    from timeseries import InfluxClient  # noqa: PLC0415

    try:
        channels(settings)
    except ValueError as exc:
        print(f"lantaarn alerts: {exc}")  # noqa: T201
        return 2

    async def main() -> int:
        with Registry(settings.registry()) as registry:
            # The evaluator only reads: the read-only login when there is one.
            async with InfluxClient(settings.influx_read_config()) as client:
                evaluating = evaluator(settings, registry, client)
                if args.once:
                    report = await evaluating.step()
                    if report is None:
                        print("another replica holds the lease; nothing done")  # noqa: T201
                    else:
                        print(  # noqa: T201
                            f"{report.rules} rule(s), {report.changed} alert change(s), "
                            f"{report.delivered} notification(s) sent, {report.failed} failed, "
                            f"{report.seconds:.2f} s"
                        )
                    return 0
                stop = asyncio.Event()
                install_stop(stop)
                log.info(
                    "alerts evaluator %s: %d channel(s), a round every %.0f s",
                    evaluating.config.holder,
                    len(evaluating.channels),
                    evaluating.config.interval_s,
                )
                await evaluating.run(stop)
                return 0

    return asyncio.run(main())
