"""Prometheus Alertmanager: alerts pushed to its API v2 (`POST /api/v2/alerts`).

Alertmanager forgets an alert whose `endsAt` has passed, so a firing alert is sent with an
`endsAt` a while ahead and sent again before then (the evaluator refreshes open alerts); a
resolved one is sent with `endsAt` its resolution time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from alerting.channels.base import Notice
from devices.alert_rules import Alert, AlertState


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def am_alert(
    alert: Alert,
    *,
    now: datetime,
    hold: timedelta,
    generator_url: str,
    routing: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One alert in Alertmanager's v2 form; `routing`: the tenant's own labels, which may set
    `severity` and add labels but never replace the ones that say what the alert is."""
    labels = {
        "severity": "warning",
        **(routing or {}),
        "alertname": alert.rule_name,
        "tenant": alert.tenant,
        "subject": alert.subject,
        "lantaarn_alert_id": alert.id,
        "lantaarn_rule_id": alert.rule_id,
    }
    if alert.device_id is not None:
        labels["device_id"] = alert.device_id
    ends = alert.resolved_at if alert.state is AlertState.RESOLVED else now + hold
    return {
        "labels": labels,
        "annotations": {"summary": alert.summary},
        "startsAt": _iso(alert.fired_at or alert.started_at),
        "endsAt": _iso(ends or now),
        "generatorURL": f"{generator_url.rstrip('/')}/v1/alerts/{alert.id}",
    }


class AlertmanagerChannel:
    """Pushes a batch of notices in one request to one Alertmanager."""

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        generator_url: str = "http://localhost:8000",
        hold: timedelta = timedelta(minutes=15),
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.generator_url = generator_url
        self.hold = hold
        self._timeout_s = timeout_s
        # Each tenant's routing labels (its alertmanager channels), set by the evaluator.
        self.routing: Mapping[str, Mapping[str, str]] = {}

    async def push(self, alerts: Sequence[Alert]) -> str | None:
        """Send the alerts as they are now; None when Alertmanager took them, else why not."""
        if not alerts:
            return None
        now = datetime.now(UTC)
        body = [
            am_alert(
                a,
                now=now,
                hold=self.hold,
                generator_url=self.generator_url,
                routing=self.routing.get(a.tenant),
            )
            for a in alerts
        ]
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                answer = await client.post(f"{self.url}/api/v2/alerts", json=body)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if answer.is_success else f"HTTP {answer.status_code}: {answer.text[:200]}"

    async def send(self, notices: Sequence[Notice]) -> list[str | None]:
        """Deliver all notices in one request (all succeed or fail together)."""
        error = await self.push([n.alert for n in notices])
        return [error] * len(notices)
