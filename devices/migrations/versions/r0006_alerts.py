"""Alert rules, alerts with their state changes, the notification outbox and evaluator leases.

Revision ID: a0006
Revises: s0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0006"
down_revision = "s0005"
branch_labels = None
depends_on = None


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the alerting tables (see devices/registry/alert_rows.py)."""
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(32), sa.ForeignKey("tenants.code"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("builtin", sa.String(64), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
    )
    op.create_index("ix_alert_rules_tenant", "alert_rules", ["tenant"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("rule_id", sa.String(36), nullable=False),
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(120), nullable=False),
        sa.Column("device_id", sa.String(63), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        _time("started_at"),
        _time("fired_at", nullable=True),
        _time("acknowledged_at", nullable=True),
        _time("resolved_at", nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_alerts_rule_state", "alerts", ["rule_id", "state"])
    op.create_index("ix_alerts_tenant_state", "alerts", ["tenant", "state"])
    op.create_index("ix_alerts_device", "alerts", ["device_id"])
    op.create_index("ix_alerts_started", "alerts", ["started_at"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "alert_id",
            sa.String(36),
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        _time("at"),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("by", sa.String(64), nullable=True),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "alert_id",
            sa.String(36),
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("next_at", nullable=True),
        _time("updated_at"),
    )
    op.create_index("ix_alert_deliveries_alert", "alert_deliveries", ["alert_id"])
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["state", "next_at"])
    op.create_table(
        "alert_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        _time("until"),
    )


def downgrade() -> None:
    """Remove what upgrade added."""
    for table in ("alert_leases", "alert_deliveries", "alert_events", "alerts", "alert_rules"):
        op.drop_table(table)
