"""The alert evaluator as the settings describe it: its platform-wide channels and its timing.

`lantaarn alerts` and `lantaarn demo` both build their evaluator here, so the demo runs the
same evaluator, configured from the same `LANTAARN_ALERTS__*` settings, as a deployment.
"""

from __future__ import annotations

import os
import socket

from alerting import Evaluator, EvaluatorConfig
from alerting.channels import (
    AlertmanagerChannel,
    Channel,
    EmailChannel,
    SmtpConfig,
    TenantChannels,
    WebhookChannel,
)
from devices import Registry
from lantaarn.settings import Settings
from timeseries import InfluxClient


def channels(settings: Settings) -> list[Channel]:
    """The platform-wide notification channels the settings configure (ValueError when a
    setting is missing)."""
    a = settings.alerts
    out: list[Channel] = []
    if a.webhook_url:
        if a.webhook_secret is None:
            raise ValueError("LANTAARN_ALERTS__WEBHOOK_SECRET is required with a webhook URL")
        out.append(WebhookChannel(a.webhook_url, a.webhook_secret.get_secret_value().encode()))
    if a.smtp_host:
        if not a.smtp_to:
            raise ValueError("LANTAARN_ALERTS__SMTP_TO names no recipient")
        out.append(EmailChannel(smtp_config(settings, tuple(a.smtp_to), a.smtp_language)))
    if a.alertmanager_url:
        out.append(AlertmanagerChannel(a.alertmanager_url, generator_url=a.public_url))
    return out


def smtp_config(settings: Settings, recipients: tuple[str, ...], language: str) -> SmtpConfig:
    """The platform's SMTP server, sending to `recipients` in `language` (nl or en)."""
    a = settings.alerts
    if a.smtp_host is None:
        raise ValueError("no SMTP server is configured (LANTAARN_ALERTS__SMTP_HOST)")
    return SmtpConfig(
        a.smtp_host,
        a.smtp_port,
        a.smtp_from,
        recipients,
        language="en" if language == "en" else "nl",
        username=a.smtp_username,
        password=a.smtp_password.get_secret_value() if a.smtp_password else None,
        require_tls=a.smtp_require_tls,
        ca_file=a.smtp_ca_file,
    )


def evaluator(settings: Settings, registry: Registry, client: InfluxClient) -> Evaluator:
    """The evaluator the settings describe, on an open registry and InfluxDB client (ValueError
    for bad channel settings)."""
    a = settings.alerts
    config = EvaluatorConfig(
        a.replica or f"{socket.gethostname()}-{os.getpid()}",
        interval_s=a.interval_s,
        lease_s=a.lease_s,
    )
    own = TenantChannels(
        smtp=smtp_config(settings, (), "nl") if a.smtp_host else None,
        allow_internal=a.allow_internal_webhooks,
    )
    return Evaluator(registry, client, channels(settings), config, own)
