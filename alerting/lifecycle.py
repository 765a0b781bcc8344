"""The life of an alert, decided from what the evaluator observed: a pure function.

pending (condition true, its "for" duration not yet passed) → firing → (acknowledged by an
operator) → resolved. A threshold resolves only once its value is back beyond the rule's
resolving threshold (hysteresis); a pending alert whose condition stops holding resolves
quietly (it never notified).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from devices.alert_rules import Alert, AlertRule, AlertState, Change


@dataclass(frozen=True, slots=True)
class Observation:
    """What one round saw of one subject (a device, or a group such as a tenant).

    `fires`: beyond the firing threshold now; `resolves`: beyond the resolving one. Neither:
    in the hysteresis band (or held, e.g. a device inside a silent group), nothing changes.
    """

    subject: str
    device_id: str | None
    value: float | None
    fires: bool
    resolves: bool
    summary: str


def decide(
    rule: AlertRule,
    observed: Mapping[str, Observation],
    open_alerts: Mapping[str, Alert],
    now: datetime,
    *,
    absent_resolves: bool,
) -> list[Change]:
    """The changes one round makes for one rule.

    `open_alerts` by subject; a subject with an open alert but no observation resolves when
    `absent_resolves` (silence and quality rules observe only what is wrong), and is left as it
    is otherwise (a threshold whose device sent nothing is the silence rule's business).
    """
    changes: list[Change] = []
    hold = timedelta(seconds=rule.for_s)
    for subject, seen in observed.items():
        alert = open_alerts.get(subject)
        if alert is None:
            if seen.fires:
                state = AlertState.FIRING if rule.for_s <= 0 else AlertState.PENDING
                changes.append(
                    Change(rule, subject, seen.device_id, state, seen.value, seen.summary)
                )
            continue
        if alert.state is AlertState.PENDING:
            if not seen.fires:
                changes.append(_resolve(rule, alert, seen, "condition cleared before firing"))
            elif now - alert.started_at >= hold:
                changes.append(
                    Change(
                        rule,
                        subject,
                        alert.device_id,
                        AlertState.FIRING,
                        seen.value,
                        seen.summary,
                        alert.id,
                    )
                )
        elif seen.resolves:
            changes.append(_resolve(rule, alert, seen, None))
    if absent_resolves:
        for subject, alert in open_alerts.items():
            if subject not in observed:
                changes.append(_resolve(rule, alert, None, None))
    return changes


def _resolve(rule: AlertRule, alert: Alert, seen: Observation | None, note: str | None) -> Change:
    return Change(
        rule,
        alert.subject,
        alert.device_id,
        AlertState.RESOLVED,
        alert.value if seen is None else seen.value,
        alert.summary if seen is None else seen.summary,
        alert.id,
        note,
    )
