"""`lantaarn alerts`: the alert evaluator (rules over stored readings, then notifications).

Run one per machine or more: replicas share a lease in the registry, so one evaluates and
notifies at a time and another takes over within the lease's duration when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING

from lantaarn.commands import Subcommands, install_stop
from lantaarn.settings import Settings

if TYPE_CHECKING:
    from alerting.channels import Channel

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


def channels(settings: Settings) -> list[Channel]:
    """The notification channels the settings configure."""
    from alerting.channels import (  # noqa: PLC0415
        AlertmanagerChannel,
        EmailChannel,
        SmtpConfig,
        WebhookChannel,
    )

    a = settings.alerts
    out: list[Channel] = []
    if a.webhook_url:
        if a.webhook_secret is None:
            raise ValueError("LANTAARN_ALERTS__WEBHOOK_SECRET is required with a webhook URL")
        out.append(WebhookChannel(a.webhook_url, a.webhook_secret.get_secret_value().encode()))
    if a.smtp_host:
        if not a.smtp_to:
            raise ValueError("LANTAARN_ALERTS__SMTP_TO names no recipient")
        out.append(
            EmailChannel(
                SmtpConfig(
                    a.smtp_host,
                    a.smtp_port,
                    a.smtp_from,
                    tuple(a.smtp_to),
                    language=a.smtp_language,
                    username=a.smtp_username,
                    password=a.smtp_password.get_secret_value() if a.smtp_password else None,
                    require_tls=a.smtp_require_tls,
                    ca_file=a.smtp_ca_file,
                )
            )
        )
    if a.alertmanager_url:
        out.append(AlertmanagerChannel(a.alertmanager_url, generator_url=a.public_url))
    return out


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Evaluate until stopped (or once)."""
    from alerting import Evaluator, EvaluatorConfig  # noqa: PLC0415
    from devices import Registry  # noqa: PLC0415
    from timeseries import InfluxClient  # noqa: PLC0415

    a = settings.alerts
    try:
        configured = channels(settings)
    except ValueError as exc:
        print(f"lantaarn alerts: {exc}")  # noqa: T201
        return 2
    config = EvaluatorConfig(
        a.replica or f"{socket.gethostname()}-{os.getpid()}",
        interval_s=a.interval_s,
        lease_s=a.lease_s,
    )

    async def main() -> int:
        with Registry(settings.registry()) as registry:
            async with InfluxClient(settings.influx_config()) as client:
                evaluator = Evaluator(registry, client, configured, config)
                if args.once:
                    report = await evaluator.step()
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
                    config.holder,
                    len(configured),
                    config.interval_s,
                )
                await evaluator.run(stop)
                return 0

    return asyncio.run(main())
