"""What every notification channel offers, and the alert as channels describe it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from devices.alert_rules import Alert


@dataclass(frozen=True, slots=True)
class Notice:
    """One queued delivery: the alert as it is now, and which transition it announces."""

    delivery_id: int
    alert: Alert
    event: str  # firing or resolved
    attempts: int


class Channel(Protocol):
    """A notification channel. `send` delivers a batch of notices (a channel may group them,
    as e-mail does) and answers, per notice in order, None when delivered or why it was not;
    it never raises for a failed delivery."""

    name: str

    async def send(self, notices: Sequence[Notice]) -> list[str | None]:
        """Deliver; per notice None (delivered) or the reason it failed."""
        ...


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(notice: Notice) -> dict[str, Any]:
    """The JSON document of a notice (the webhook's body), camelCase as the API."""
    alert = notice.alert
    return {
        "event": notice.event,
        "alert": {
            "id": alert.id,
            "state": alert.state.value,
            "ruleId": alert.rule_id,
            "ruleName": alert.rule_name,
            "tenant": alert.tenant,
            "subject": alert.subject,
            "deviceId": alert.device_id,
            "value": alert.value,
            "summary": alert.summary,
            "startedAt": _iso(alert.started_at),
            "firedAt": _iso(alert.fired_at),
            "acknowledgedAt": _iso(alert.acknowledged_at),
            "resolvedAt": _iso(alert.resolved_at),
        },
    }
