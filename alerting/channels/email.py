"""E-mail over SMTP: one message per alert group (a tenant's notices of one round), in Dutch or
English; STARTTLS whenever the server offers it (and required when `require_tls`)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Final, Literal

from alerting.channels.base import Notice

Language = Literal["nl", "en"]

_WORDS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "firing": "firing",
        "resolved": "resolved",
        "subject": "[lantaarn] {tenant}: {firing} firing, {resolved} resolved",
        "intro": "Alerts of tenant {tenant}:",
        "since": "since",
        "footer": "Acknowledge an alert with POST /v1/alerts/{{id}}/acknowledge.",
    },
    "nl": {
        "firing": "actief",
        "resolved": "opgelost",
        "subject": "[lantaarn] {tenant}: {firing} actief, {resolved} opgelost",
        "intro": "Meldingen van {tenant}:",
        "since": "sinds",
        "footer": "Bevestig een melding met POST /v1/alerts/{{id}}/acknowledge.",
    },
}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to send: server, sender, recipients, language, login, TLS."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    language: Language = "en"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    require_tls: bool = False
    ca_file: Path | None = None  # trust this CA (a private server's) instead of the system's
    timeout_s: float = 15.0


def message(config: SmtpConfig, tenant: str, notices: Sequence[Notice]) -> EmailMessage:
    """The one message for a tenant's group of notices."""
    words = _WORDS[config.language]
    firing = sum(1 for n in notices if n.event == "firing")
    mail = EmailMessage()
    mail["From"] = config.sender
    mail["To"] = ", ".join(config.recipients)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain="lantaarn.invalid")
    mail["Subject"] = words["subject"].format(
        tenant=tenant, firing=firing, resolved=len(notices) - firing
    )
    lines = [words["intro"].format(tenant=tenant), ""]
    for notice in notices:
        alert = notice.alert
        since = (alert.fired_at or alert.started_at).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(
            f"- [{words[notice.event]}] {alert.rule_name} — {alert.subject}: {alert.summary} "
            f"({words['since']} {since}; id {alert.id})"
        )
    lines += ["", words["footer"]]
    mail.set_content("\n".join(lines))
    return mail


class EmailChannel:
    """Sends one message per tenant for each batch of notices."""

    def __init__(self, config: SmtpConfig, *, name: str = "email") -> None:
        self.name = name
        self.config = config

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=None if self.config.ca_file is None else str(self.config.ca_file)
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _deliver(self, mail: EmailMessage) -> None:
        config = self.config
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            elif config.require_tls:
                raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            if config.username is not None:
                smtp.login(config.username, config.password or "")
            smtp.send_message(mail)

    async def send(self, notices: Sequence[Notice]) -> list[str | None]:
        """One message per tenant; its notices share the outcome."""
        groups: dict[str, list[int]] = defaultdict(list)
        for at, notice in enumerate(notices):
            groups[notice.alert.tenant].append(at)
        out: list[str | None] = [None] * len(notices)
        for tenant, positions in sorted(groups.items()):
            mail = message(self.config, tenant, [notices[i] for i in positions])
            try:
                await asyncio.to_thread(self._deliver, mail)
            except (OSError, smtplib.SMTPException) as exc:
                for i in positions:
                    out[i] = f"{type(exc).__name__}: {exc}"
        return out
