"""Alert rules, alerts and their history, the notification outbox and the evaluator's lease.

Rules are rows of `alert_rules` (settings as JSON). An alert moves pending → firing →
acknowledged → resolved; each move is one row of `alert_events`, stored in the same transaction
as the alert's new state. A move to firing (and to resolved, after firing) queues one delivery
per notification channel in `alert_deliveries`, so what an evaluator decided and what it owes
the channels are never out of step, whichever replica sends them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import (
    DateTime,
    String,
    and_,
    column,
    delete,
    func,
    insert,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.engine import CursorResult, Result, RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from devices.alert_rules import (
    ACTIVE_STATES,
    Alert,
    AlertConflict,
    AlertEvent,
    AlertRule,
    AlertState,
    Change,
    Delivery,
    Direction,
    RuleType,
    rule_problems,
)
from devices.errors import InvalidDevice, NotFound, Problem
from devices.model import BoundingBox
from devices.registry.alert_rows import (
    alert_channels,
    alert_deliveries,
    alert_events,
    alert_leases,
    alert_rules,
    alerts,
    tenant_listing,
)
from devices.registry.rows import TenantRow, aware, stored_utc
from devices.registry.store import Store

# Columns of their own; every other field of a rule lives in the JSON `spec`.
_COLUMNS: Final = frozenset(
    {"id", "tenant", "name", "type", "kind", "enabled", "builtin", "revision"}
    | {"created_at", "updated_at"}
)
_SPEC: Final = tuple(f.name for f in fields(AlertRule) if f.name not in _COLUMNS)
# Properties a PATCH may change: all but the owner, the type and the bookkeeping.
RULE_UPDATABLE: Final = frozenset(
    {f.name for f in fields(AlertRule)}
    - {"id", "tenant", "type", "builtin", "revision"}
    - {"created_at", "updated_at"}
)
_CHUNK: Final = 500

# The command history's table (devices.command_history, migration r0003), named here by the
# columns read: that module builds on this package, so its Table cannot be imported here.
_commands = table(
    "commands",
    column("tenant", String),
    column("device_id", String),
    column("state", String),
    column("created_at", DateTime(timezone=True)),
    column("finished_at", DateTime(timezone=True)),
)
_UNOBEYED: Final = ("refused", "failed", "expired")


@dataclass(frozen=True, slots=True)
class CommandOutcomes:
    """How one device answered its commands of a window: counts by final state (done,
    refused, failed, expired), and when it last obeyed and last did not (UTC)."""

    counts: Mapping[str, int]
    last_obeyed_at: datetime | None
    last_unobeyed_at: datetime | None

    @property
    def unobeyed(self) -> int:
        """Commands refused, failed or expired."""
        return sum(self.counts.get(s, 0) for s in _UNOBEYED)


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed (a session hands back the cursor's result)."""
    return int(cast("CursorResult[Any]", result).rowcount)


def _spec(rule: AlertRule) -> str:
    out: dict[str, Any] = {}
    for name in _SPEC:
        value = getattr(rule, name)
        if isinstance(value, BoundingBox):
            value = [value.min_lon, value.min_lat, value.max_lon, value.max_lat]
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return json.dumps(out, sort_keys=True)


def _rule_of(row: RowMapping) -> AlertRule:
    spec = json.loads(row["spec"])
    if spec.get("bbox") is not None:
        spec["bbox"] = BoundingBox(*spec["bbox"])
    if spec.get("device_ids") is not None:
        spec["device_ids"] = tuple(spec["device_ids"])
    spec["direction"] = Direction(spec.get("direction", "above"))
    known = {k: v for k, v in spec.items() if k in _SPEC}
    return AlertRule(
        tenant=row["tenant"],
        name=row["name"],
        type=RuleType(row["type"]),
        kind=row["kind"],
        enabled=bool(row["enabled"]),
        builtin=row["builtin"],
        id=row["id"],
        revision=int(row["revision"]),
        created_at=aware(row["created_at"]),
        updated_at=aware(row["updated_at"]),
        **known,
    )


def _alert_of(
    row: RowMapping, events: Sequence[AlertEvent] = (), deliveries: Sequence[Delivery] = ()
) -> Alert:
    return Alert(
        id=row["id"],
        rule_id=row["rule_id"],
        rule_name=row["rule_name"],
        tenant=row["tenant"],
        subject=row["subject"],
        device_id=row["device_id"],
        state=AlertState(row["state"]),
        value=row["value"],
        summary=row["summary"],
        started_at=stored_utc(row["started_at"]),
        fired_at=aware(row["fired_at"]),
        acknowledged_at=aware(row["acknowledged_at"]),
        resolved_at=aware(row["resolved_at"]),
        note=row["note"],
        events=tuple(events),
        deliveries=tuple(deliveries),
    )


def _check(rule: AlertRule, session: Session) -> None:
    found = rule_problems(rule)
    if session.get(TenantRow, rule.tenant) is None:
        found.append(Problem("tenant", f"tenant {rule.tenant!r} does not exist"))
    if found:
        raise InvalidDevice.of(found)


class Alerts(Store):
    """The alerting part of the registry."""

    # ---- rules -------------------------------------------------------------------------

    def add_rule(self, rule: AlertRule, *, now: datetime | None = None) -> AlertRule:
        """Store a new rule (InvalidDevice listing every problem when it breaks one)."""
        now = now or datetime.now(UTC)
        rule = replace(rule, id=str(uuid.uuid4()), revision=1, created_at=now, updated_at=now)
        with self._session() as session:
            _check(rule, session)
            session.execute(
                insert(alert_rules).values(
                    id=rule.id,
                    tenant=rule.tenant,
                    name=rule.name,
                    type=rule.type.value,
                    kind=rule.kind,
                    spec=_spec(rule),
                    enabled=rule.enabled,
                    builtin=rule.builtin,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        return rule

    def rule(self, rule_id: str) -> AlertRule:
        """The rule with this id (NotFound when there is none)."""
        with self._session() as session:
            row = (
                session.execute(select(alert_rules).where(alert_rules.c.id == rule_id))
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise NotFound("alert rule", rule_id)
        return _rule_of(row)

    def rules(
        self, *, tenants: Collection[str] | None = None, enabled_only: bool = False
    ) -> list[AlertRule]:
        """Rules by tenant and name; only those of `tenants` when given."""
        query = tenant_listing(alert_rules, tenants, enabled_only)
        with self._session() as session:
            return [_rule_of(r) for r in session.execute(query).mappings()]

    def update_rule(
        self, rule_id: str, changes: Mapping[str, Any], *, now: datetime | None = None
    ) -> AlertRule:
        """Change some properties of a rule (all rules re-checked); its revision moves."""
        now = now or datetime.now(UTC)
        bad = sorted(set(changes) - RULE_UPDATABLE)
        if bad:
            raise InvalidDevice.of([Problem(name, f"{name} cannot be changed") for name in bad])
        with self._session() as session:
            row = (
                session.execute(
                    select(alert_rules).where(alert_rules.c.id == rule_id).with_for_update()
                )
                .mappings()
                .one_or_none()
            )
            if row is None:
                raise NotFound("alert rule", rule_id)
            rule = replace(_rule_of(row), **changes)
            _check(rule, session)
            rule = replace(rule, revision=rule.revision + 1, updated_at=now)
            session.execute(
                update(alert_rules)
                .where(alert_rules.c.id == rule_id)
                .values(
                    name=rule.name,
                    kind=rule.kind,
                    spec=_spec(rule),
                    enabled=rule.enabled,
                    revision=rule.revision,
                    updated_at=now,
                )
            )
            if not rule.enabled:
                for alert_id in session.scalars(
                    select(alerts.c.id).where(
                        alerts.c.rule_id == rule_id, alerts.c.state.in_(ACTIVE_STATES)
                    )
                ).all():
                    self._move(session, alert_id, AlertState.RESOLVED, now, note="rule disabled")
        return rule

    def delete_rule(self, rule_id: str, *, now: datetime | None = None) -> None:
        """Remove a rule; its open alerts are resolved (their history stays)."""
        now = now or datetime.now(UTC)
        with self._session() as session:
            gone = session.execute(delete(alert_rules).where(alert_rules.c.id == rule_id))
            if _changed(gone) == 0:
                raise NotFound("alert rule", rule_id)
            open_ids = list(
                session.scalars(
                    select(alerts.c.id).where(
                        alerts.c.rule_id == rule_id, alerts.c.state.in_(ACTIVE_STATES)
                    )
                )
            )
            for alert_id in open_ids:
                self._move(session, alert_id, AlertState.RESOLVED, now, note="rule deleted")

    # ---- alerts ------------------------------------------------------------------------

    def alerts(
        self,
        *,
        states: Collection[str] | None = None,
        tenants: Collection[str] | None = None,
        device_id: str | None = None,
        rule_id: str | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, newest first (by start, then id), filtered; `before` continues a page."""
        query = select(alerts).order_by(alerts.c.started_at.desc(), alerts.c.id.desc())
        if states is not None:
            query = query.where(alerts.c.state.in_(sorted(states)))
        if tenants is not None:
            query = query.where(alerts.c.tenant.in_(sorted(tenants)))
        if device_id is not None:
            query = query.where(alerts.c.device_id == device_id)
        if rule_id is not None:
            query = query.where(alerts.c.rule_id == rule_id)
        if before is not None:
            at, last_id = before
            query = query.where(
                or_(
                    alerts.c.started_at < at,
                    and_(alerts.c.started_at == at, alerts.c.id < last_id),
                )
            )
        with self._session() as session:
            rows = list(session.execute(query.limit(limit)).mappings())
        return [_alert_of(r) for r in rows]

    def alert(self, alert_id: str) -> Alert:
        """One alert with its events (oldest first) and deliveries."""
        with self._session() as session:
            row = (
                session.execute(select(alerts).where(alerts.c.id == alert_id))
                .mappings()
                .one_or_none()
            )
            if row is None:
                raise NotFound("alert", alert_id)
            events = [
                AlertEvent(AlertState(e["state"]), stored_utc(e["at"]), e["note"], e["by"])
                for e in session.execute(
                    select(alert_events)
                    .where(alert_events.c.alert_id == alert_id)
                    .order_by(alert_events.c.id)
                ).mappings()
            ]
            deliveries = [
                _delivery_of(d)
                for d in session.execute(
                    select(alert_deliveries)
                    .where(alert_deliveries.c.alert_id == alert_id)
                    .order_by(alert_deliveries.c.id)
                ).mappings()
            ]
        return _alert_of(row, events, deliveries)

    def open_alerts(self, rule_ids: Iterable[str] | None = None) -> dict[tuple[str, str], Alert]:
        """The open alerts (pending, firing, acknowledged) by (rule id, subject)."""
        query = select(alerts).where(alerts.c.state.in_(ACTIVE_STATES))
        ids = None if rule_ids is None else sorted(set(rule_ids))
        out: dict[tuple[str, str], Alert] = {}
        with self._session() as session:
            chunks = (
                [None] if ids is None else [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
            )
            for chunk in chunks:
                q = query if chunk is None else query.where(alerts.c.rule_id.in_(chunk))
                for row in session.execute(q).mappings():
                    alert = _alert_of(row)
                    out[(alert.rule_id, alert.subject)] = alert
        return out

    def acknowledge(
        self, alert_id: str, note: str, *, by: str | None, now: datetime | None = None
    ) -> Alert:
        """An operator takes a firing alert, with a note (AlertConflict unless it is firing)."""
        now = now or datetime.now(UTC)
        with self._session() as session:
            moved = session.execute(
                update(alerts)
                .where(alerts.c.id == alert_id, alerts.c.state == AlertState.FIRING.value)
                .values(state=AlertState.ACKNOWLEDGED.value, acknowledged_at=now, note=note)
            )
            if _changed(moved) == 0:
                state = session.scalar(select(alerts.c.state).where(alerts.c.id == alert_id))
                if state is None:
                    raise NotFound("alert", alert_id)
                raise AlertConflict(alert_id, f"is {state}; only a firing alert is acknowledged")
            session.execute(
                insert(alert_events).values(
                    alert_id=alert_id,
                    state=AlertState.ACKNOWLEDGED.value,
                    at=now,
                    note=note,
                    by=by,
                )
            )
        return self.alert(alert_id)

    def apply(
        self,
        changes: Sequence[Change],
        channels: Sequence[str],
        *,
        tenant_channels: Mapping[str, Sequence[str]] | None = None,
        now: datetime | None = None,
    ) -> list[str]:
        """Store the evaluator's decisions in one transaction; queue a delivery per channel for
        every alert that fires, and for every fired alert that resolves one per channel told it
        fired. `channels` are the platform's (every tenant's alerts), `tenant_channels` each
        tenant's own. Returns the ids of the alerts changed (new ones included)."""
        now = now or datetime.now(UTC)
        touched: list[str] = []
        own = tenant_channels or {}
        with self._session() as session:
            for change in changes:
                names = [*channels, *own.get(change.rule.tenant, ())]
                if change.alert_id is None:
                    alert_id = str(uuid.uuid4())
                    firing = change.state is AlertState.FIRING
                    session.execute(
                        insert(alerts).values(
                            id=alert_id,
                            rule_id=change.rule.id,
                            rule_name=change.rule.name,
                            tenant=change.rule.tenant,
                            subject=change.subject,
                            device_id=change.device_id,
                            state=change.state.value,
                            value=change.value,
                            summary=change.summary,
                            started_at=now,
                            fired_at=now if firing else None,
                        )
                    )
                    session.execute(
                        insert(alert_events).values(alert_id=alert_id, state=change.state, at=now)
                    )
                    if firing:
                        self._queue(session, alert_id, "firing", names, now)
                else:
                    alert_id = change.alert_id
                    session.execute(
                        update(alerts)
                        .where(alerts.c.id == alert_id)
                        .values(value=change.value, summary=change.summary)
                    )
                    self._move(
                        session, alert_id, change.state, now, note=change.note, channels=names
                    )
                touched.append(alert_id)
        return touched

    @classmethod
    def _move(
        cls,
        session: Session,
        alert_id: str,
        state: AlertState,
        now: datetime,
        *,
        note: str | None,
        channels: Sequence[str] = (),
    ) -> None:
        """Move an open alert to firing (notifying `channels`) or resolved (notifying the
        channels that were told it fired)."""
        row = (
            session.execute(
                select(alerts.c.state, alerts.c.fired_at).where(alerts.c.id == alert_id)
            )
            .mappings()
            .one_or_none()
        )
        if row is None or row["state"] not in ACTIVE_STATES or row["state"] == state.value:
            return
        if state is AlertState.FIRING and row["state"] != AlertState.PENDING.value:
            return  # an acknowledged alert stays acknowledged while its condition holds
        values: dict[str, Any] = {"state": state.value}
        if state is AlertState.FIRING:
            values["fired_at"] = now
        elif state is AlertState.RESOLVED:
            values["resolved_at"] = now
        session.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))
        session.execute(
            insert(alert_events).values(alert_id=alert_id, state=state.value, at=now, note=note)
        )
        if state is AlertState.FIRING:
            cls._queue(session, alert_id, "firing", channels, now)
        elif state is AlertState.RESOLVED and row["fired_at"] is not None:
            told = session.scalars(
                select(alert_deliveries.c.channel)
                .where(
                    alert_deliveries.c.alert_id == alert_id,
                    alert_deliveries.c.event == "firing",
                )
                .distinct()
            ).all()
            cls._queue(session, alert_id, "resolved", _still_sending(session, told), now)

    @staticmethod
    def _queue(
        session: Session, alert_id: str, event: str, channels: Sequence[str], now: datetime
    ) -> None:
        for channel in channels:
            session.execute(
                insert(alert_deliveries).values(
                    alert_id=alert_id,
                    channel=channel,
                    event=event,
                    state="pending",
                    attempts=0,
                    next_at=now,
                    updated_at=now,
                )
            )

    # ---- the command history, for command rules ---------------------------------------

    def command_outcomes(
        self, tenants: Collection[str], since: datetime
    ) -> dict[str, CommandOutcomes]:
        """Per device of `tenants`, how its commands created since `since` ended (those still
        open are left out). One grouped query on the index by tenant and creation time."""
        if not tenants:
            return {}
        query = (
            select(
                _commands.c.device_id,
                _commands.c.state,
                func.count(),
                func.max(_commands.c.finished_at),
            )
            .where(
                _commands.c.tenant.in_(sorted(tenants)),
                _commands.c.created_at >= since,
                _commands.c.state.in_(("done", *_UNOBEYED)),
            )
            .group_by(_commands.c.device_id, _commands.c.state)
        )
        counts: dict[str, dict[str, int]] = {}
        obeyed: dict[str, datetime] = {}
        unobeyed: dict[str, datetime] = {}
        with self._session() as session:
            for device_id, state, count, finished in session.execute(query):
                counts.setdefault(device_id, {})[state] = int(count)
                at = aware(finished)
                if at is None:
                    continue
                latest = obeyed if state == "done" else unobeyed
                if device_id not in latest or at > latest[device_id]:
                    latest[device_id] = at
        return {
            device_id: CommandOutcomes(per, obeyed.get(device_id), unobeyed.get(device_id))
            for device_id, per in counts.items()
        }

    # ---- the notification outbox -------------------------------------------------------

    def due_deliveries(
        self, channel: str, *, now: datetime | None = None, limit: int = 500
    ) -> list[tuple[int, Alert, str, int]]:
        """Pending deliveries of a channel whose time has come: (id, alert, event, attempts)."""
        now = now or datetime.now(UTC)
        query = (
            select(
                alert_deliveries.c.id.label("d_id"),
                alert_deliveries.c.event.label("d_event"),
                alert_deliveries.c.attempts.label("d_attempts"),
                *alerts.c,
            )
            .join(alerts, alerts.c.id == alert_deliveries.c.alert_id)
            .where(
                alert_deliveries.c.channel == channel,
                alert_deliveries.c.state == "pending",
                alert_deliveries.c.next_at <= now,
            )
            .order_by(alert_deliveries.c.id)
            .limit(limit)
        )
        with self._session() as session:
            rows = list(session.execute(query).mappings())
        return [
            (int(r["d_id"]), _alert_of(r), str(r["d_event"]), int(r["d_attempts"])) for r in rows
        ]

    def delivered(self, delivery_ids: Sequence[int], *, now: datetime | None = None) -> None:
        """Mark deliveries sent."""
        now = now or datetime.now(UTC)
        with self._session() as session:
            session.execute(
                update(alert_deliveries)
                .where(alert_deliveries.c.id.in_(list(delivery_ids)))
                .values(
                    state="delivered",
                    attempts=alert_deliveries.c.attempts + 1,
                    last_error=None,
                    next_at=None,
                    updated_at=now,
                )
            )

    def delivery_failed(
        self,
        delivery_ids: Sequence[int],
        error: str,
        *,
        retry_in: timedelta | None,
        now: datetime | None = None,
    ) -> None:
        """Record a failed attempt: try again after `retry_in`, or give up (None)."""
        now = now or datetime.now(UTC)
        with self._session() as session:
            session.execute(
                update(alert_deliveries)
                .where(alert_deliveries.c.id.in_(list(delivery_ids)))
                .values(
                    state="pending" if retry_in is not None else "failed",
                    attempts=alert_deliveries.c.attempts + 1,
                    last_error=error[:2000],
                    next_at=None if retry_in is None else now + retry_in,
                    updated_at=now,
                )
            )

    # ---- the evaluator's lease ---------------------------------------------------------

    def take_lease(
        self, name: str, holder: str, ttl: timedelta, *, now: datetime | None = None
    ) -> bool:
        """Take or renew the lease `name` for `holder` until now + ttl; False when another
        holder's lease has not run out. Replicas call this before every round."""
        now = now or datetime.now(UTC)
        until = now + ttl
        with self._session() as session:
            taken = session.execute(
                update(alert_leases)
                .where(
                    alert_leases.c.name == name,
                    or_(alert_leases.c.holder == holder, alert_leases.c.until < now),
                )
                .values(holder=holder, until=until)
            )
            if _changed(taken) == 1:
                return True
            if session.scalar(select(alert_leases.c.name).where(alert_leases.c.name == name)):
                return False
        try:
            with self._session() as session:
                session.execute(insert(alert_leases).values(name=name, holder=holder, until=until))
        except IntegrityError:
            return False  # another replica made the lease first
        return True

    def lease_holder(self, name: str, *, now: datetime | None = None) -> str | None:
        """Who holds the lease `name` now (None when no one's lease is running)."""
        now = now or datetime.now(UTC)
        with self._session() as session:
            return session.scalar(
                select(alert_leases.c.holder).where(
                    alert_leases.c.name == name, alert_leases.c.until >= now
                )
            )

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once (on a clean stop), when this holder has it."""
        with self._session() as session:
            session.execute(
                delete(alert_leases).where(
                    alert_leases.c.name == name, alert_leases.c.holder == holder
                )
            )


def _still_sending(session: Session, told: Collection[str]) -> list[str]:
    """The channels of `told` that still send: the platform's, and tenants' channels that
    exist and are switched on (a resolution is not queued where nothing would send it)."""
    own = {name.partition(":")[2]: name for name in told if ":" in name}
    alive: set[str] = set()
    if own:
        alive = {
            f"{kind}:{channel_id}"
            for channel_id, kind in session.execute(
                select(alert_channels.c.id, alert_channels.c.type).where(
                    alert_channels.c.id.in_(sorted(own)), alert_channels.c.enabled.is_(True)
                )
            )
        }
    return sorted(name for name in told if ":" not in name or name in alive)


def _delivery_of(row: RowMapping) -> Delivery:
    return Delivery(
        channel=row["channel"],
        event=row["event"],
        state=row["state"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        next_at=aware(row["next_at"]),
        updated_at=stored_utc(row["updated_at"]),
    )
