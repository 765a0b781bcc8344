"""A tenant's own notification channels, as the domain knows them (stored by
devices.registry.alert_channels; sent through by alerting.channels).

A municipality's operators say where its alerts go: a webhook of theirs (signed with a key the
platform makes and shows once), e-mail to their own recipients (through the platform's SMTP
server), or routing labels added to its alerts in the platform's Alertmanager. A tenant's
alerts go to its own channels and to the platform-wide ones the platform's operator configured;
never to another tenant's.

Webhook addresses are checked against server-side request forgery: unless the platform's
operator allows it (`allow_internal`), a tenant cannot point the platform at loopback, private,
link-local or otherwise non-public addresses, by IP literal or by a local name here, and the
sender checks what the name resolves to again before every request (alerting.channels.address).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from devices.errors import Problem
from devices.topics import TENANT_RE

_NAME_LIMIT: Final = 200
URL_LIMIT: Final = 2000
MAX_RECIPIENTS: Final = 50
MAX_LABELS: Final = 20
# A practical address check (the SMTP server has the last word): one @, a dotted domain.
_EMAIL = re.compile(
    r"[^@\s,;<>\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.[A-Za-z]{2,63}"
)
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
# Labels the platform sets on every alert it pushes; a tenant's routing labels add to them.
RESERVED_LABELS: Final = frozenset(
    {"alertname", "tenant", "subject", "device_id", "lantaarn_alert_id", "lantaarn_rule_id"}
)
# Names that are local by convention (RFC 6761, RFC 6762, common internal zones).
_LOCAL_SUFFIXES: Final = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


class ChannelType(StrEnum):
    """Where a tenant's channel sends its alerts."""

    WEBHOOK = "webhook"
    EMAIL = "email"
    ALERTMANAGER = "alertmanager"  # routing labels on the platform's Alertmanager


@dataclass(frozen=True, slots=True)
class AlertChannel:
    """A notification channel of one tenant. `secret` is the webhook's signing key (kept to
    sign; shown to the tenant once)."""

    tenant: str
    name: str
    type: ChannelType
    url: str | None = None  # webhook
    recipients: tuple[str, ...] = ()  # email
    language: str = "nl"  # email: nl or en
    labels: tuple[tuple[str, str], ...] = ()  # alertmanager: routing labels, sorted
    enabled: bool = True
    secret: str | None = field(default=None, repr=False)
    id: str = ""
    revision: int = 0
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """The channel's name in the notification outbox (`webhook:<id>`)."""
        return f"{self.type.value}:{self.id}"

    @property
    def secret_hint(self) -> str | None:
        """The last four characters of the signing key, to tell keys apart."""
        return None if not self.secret else f"…{self.secret[-4:]}"


def internal_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is not a public one (loopback, private, link-local, reserved...)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def url_problems(url: str, *, allow_internal: bool) -> list[str]:
    """What is wrong with a webhook URL (empty when it is fine)."""
    if len(url) > URL_LIMIT:
        return [f"a URL has at most {URL_LIMIT} characters"]
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return [f"not a URL: {exc}"]
    if parts.scheme not in ("https", "http"):
        return ["a webhook URL starts with https:// (or http://)"]
    if not host:
        return ["a webhook URL names a host"]
    if parts.username is not None or parts.password is not None:
        return ["a webhook URL carries no login; the signature proves the sender"]
    if allow_internal:
        return []
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(_LOCAL_SUFFIXES) or "." not in name:
            return [f"{host!r} is a local name; the platform calls public addresses only"]
        return []
    if internal_address(literal):
        return [f"{host} is not a public address; the platform calls public addresses only"]
    return []


def channel_problems(channel: AlertChannel, *, allow_internal: bool) -> list[Problem]:
    """Every rule the channel breaks (empty when it is fine); fields by attribute name."""
    found: list[Problem] = []
    if not TENANT_RE.fullmatch(channel.tenant):
        found.append(Problem("tenant", f"tenant code {channel.tenant!r} is not valid"))
    if not channel.name.strip() or len(channel.name) > _NAME_LIMIT:
        found.append(Problem("name", f"the name must be 1..{_NAME_LIMIT} characters"))
    if channel.type is ChannelType.WEBHOOK:
        if channel.url is None:
            found.append(Problem("url", "a webhook channel needs a url"))
        else:
            found += [
                Problem("url", p) for p in url_problems(channel.url, allow_internal=allow_internal)
            ]
    elif channel.url is not None:
        found.append(Problem("url", "only a webhook channel has a url"))
    if channel.type is ChannelType.EMAIL:
        if not 1 <= len(channel.recipients) <= MAX_RECIPIENTS:
            found.append(Problem("recipients", f"name 1..{MAX_RECIPIENTS} recipients"))
        bad = [r for r in channel.recipients if not _EMAIL.fullmatch(r)]
        if bad:
            found.append(Problem("recipients", f"not e-mail addresses: {', '.join(bad[:5])}"))
    elif channel.recipients:
        found.append(Problem("recipients", "only an email channel has recipients"))
    if channel.language not in ("nl", "en"):
        found.append(Problem("language", "language is nl or en"))
    if channel.type is ChannelType.ALERTMANAGER:
        if not 1 <= len(channel.labels) <= MAX_LABELS:
            found.append(Problem("labels", f"give 1..{MAX_LABELS} labels"))
        for name, value in channel.labels:
            if not _LABEL.fullmatch(name) or name.startswith("__"):
                found.append(Problem("labels", f"{name!r} is not a Prometheus label name"))
            elif name in RESERVED_LABELS:
                found.append(Problem("labels", f"the platform sets {name!r} itself"))
            if not 1 <= len(value) <= 200:
                found.append(Problem("labels", f"the value of {name!r} must be 1..200 characters"))
    elif channel.labels:
        found.append(Problem("labels", "only an alertmanager channel has labels"))
    return found
