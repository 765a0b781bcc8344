"""The alerting tables of the registry, on its own metadata (`rows.Base`).

Rules keep their type-specific settings as one JSON object (`spec`): the evaluator reads every
rule at once and no query filters on those settings. Alerts keep their current state beside an
append-only event list (every transition with its time); deliveries are the notification outbox;
`alert_leases` lets one of several evaluator replicas hold the right to evaluate and notify;
`alert_channels` are the tenants' own notification channels. Created by the migrations a0006
and a0008 (r0008_alert_channels).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    select,
)

from devices.registry.rows import Base

metadata = Base.metadata

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(32), ForeignKey("tenants.code"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False),
    Column("kind", String(32), nullable=True),
    Column("spec", Text, nullable=False),  # JSON object: the type's settings
    Column("enabled", Boolean, nullable=False),
    Column("builtin", String(64), nullable=True),
    Column("revision", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_alert_rules_tenant", "tenant"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    # No foreign key: an alert outlives a deleted rule (its history stays queryable).
    Column("rule_id", String(36), nullable=False),
    Column("rule_name", String(200), nullable=False),
    Column("tenant", String(32), nullable=False),
    Column("subject", String(120), nullable=False),
    Column("device_id", String(63), nullable=True),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("summary", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=True),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("note", Text, nullable=True),
    Index("ix_alerts_rule_state", "rule_id", "state"),
    Index("ix_alerts_tenant_state", "tenant", "state"),
    Index("ix_alerts_device", "device_id"),
    Index("ix_alerts_started", "started_at"),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=True),
    Column("by", String(64), nullable=True),
    Index("ix_alert_events_alert", "alert_id"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    # `webhook`, `email`, `alertmanager` (the platform's), or `webhook:<id>` (a tenant's).
    Column("channel", String(64), nullable=False),
    Column("event", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("next_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_alert_deliveries_alert", "alert_id"),
    Index("ix_alert_deliveries_due", "state", "next_at"),
)

alert_leases = Table(
    "alert_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
)

alert_channels = Table(
    "alert_channels",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(32), ForeignKey("tenants.code"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False),
    Column("spec", Text, nullable=False),  # JSON object: url, recipients, language, labels
    # The webhook's signing key: kept as it is, since signing needs it (the API shows it once).
    Column("secret", Text, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_alert_channels_tenant", "tenant"),
)


def tenant_listing(
    table: Table, tenants: Collection[str] | None, enabled_only: bool
) -> Select[Any]:
    """A tenant-owned table's rows by tenant, name and id (the alert rules, the channels): only
    those of `tenants` when given, only the enabled ones when asked."""
    query = select(table).order_by(table.c.tenant, table.c.name, table.c.id)
    if tenants is not None:
        query = query.where(table.c.tenant.in_(sorted(tenants)))
    if enabled_only:
        query = query.where(table.c.enabled.is_(True))
    return query
