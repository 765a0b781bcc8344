"""The tenants' own channels (devices.alert_channels) as channels the evaluator sends through.

A tenant's webhook is a guarded WebhookChannel (public addresses only, unless the platform
allows internal ones); its e-mail goes through the platform's SMTP server to its recipients, in
its language; its Alertmanager labels travel with its alerts on the platform's Alertmanager.
Each channel is named by its key (`webhook:<id>`), so its notifications are its own rows in the
outbox and no other tenant's alert is ever queued for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from alerting.channels.base import Channel, Notice
from alerting.channels.email import EmailChannel, Language, SmtpConfig
from alerting.channels.webhook import WebhookChannel
from devices.alert_channels import AlertChannel, ChannelType


class Unavailable:
    """A channel that cannot send here (e.g. e-mail without an SMTP server): every notice
    fails with the reason, visible on the alert."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    async def send(self, notices: Sequence[Notice]) -> list[str | None]:
        """Fail every notice."""
        return [self.reason] * len(notices)


@dataclass(frozen=True, slots=True)
class TenantRouting:
    """The tenants' channels of one round: what to send through, which channel names each
    tenant's alerts are queued for, and each tenant's Alertmanager routing labels."""

    channels: list[Channel] = field(default_factory=list)
    names: Mapping[str, Sequence[str]] = field(default_factory=dict)
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TenantChannels:
    """How the tenants' channels are sent: the platform's SMTP server (None: no e-mail), and
    whether tenants' webhooks may reach internal addresses."""

    smtp: SmtpConfig | None = None
    allow_internal: bool = False
    timeout_s: float = 5.0

    def channel(self, channel: AlertChannel) -> Channel | None:
        """The channel to send through (None for labels, which ride on Alertmanager)."""
        if channel.type is ChannelType.WEBHOOK:
            assert channel.url is not None
            return WebhookChannel(
                channel.url,
                (channel.secret or "").encode(),
                name=channel.key,
                guarded=True,
                allow_internal=self.allow_internal,
                timeout_s=self.timeout_s,
            )
        if channel.type is ChannelType.EMAIL:
            if self.smtp is None:
                return Unavailable(channel.key, "this platform has no SMTP server configured")
            language: Language = "en" if channel.language == "en" else "nl"
            return EmailChannel(
                replace(self.smtp, recipients=channel.recipients, language=language),
                name=channel.key,
            )
        return None

    def routing(self, channels: Sequence[AlertChannel]) -> TenantRouting:
        """The round's routing from the enabled channels of every tenant."""
        sending: list[Channel] = []
        names: dict[str, list[str]] = defaultdict(list)
        labels: dict[str, dict[str, str]] = defaultdict(dict)
        for configured in channels:
            if not configured.enabled:
                continue
            made = self.channel(configured)
            if made is None:
                labels[configured.tenant].update(configured.labels)
            else:
                sending.append(made)
                names[configured.tenant].append(made.name)
        return TenantRouting(sending, dict(names), dict(labels))
