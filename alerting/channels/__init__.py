"""Notification channels: where alerts go (webhook, e-mail, Prometheus Alertmanager)."""

from __future__ import annotations

from alerting.channels.alertmanager import AlertmanagerChannel
from alerting.channels.base import Channel, Notice, payload
from alerting.channels.email import EmailChannel, SmtpConfig
from alerting.channels.tenants import TenantChannels, TenantRouting, Unavailable
from alerting.channels.webhook import WebhookChannel, sign

__all__ = [
    "AlertmanagerChannel",
    "Channel",
    "EmailChannel",
    "Notice",
    "SmtpConfig",
    "TenantChannels",
    "TenantRouting",
    "Unavailable",
    "WebhookChannel",
    "payload",
    "sign",
]
