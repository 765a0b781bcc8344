"""Dimming schedules, what the scheduler last sent each lamp, and the scheduler's lease.

Revision ID: s0005
Revises: o0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0005"
down_revision = "o0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create schedules, schedule_progress and scheduler_lease."""
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(32), sa.ForeignKey("tenants.code"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("lamp_group", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_schedules_tenant", "schedules", ["tenant"])
    op.create_table(
        "schedule_progress",
        sa.Column("device_id", sa.String(63), sa.ForeignKey("devices.device_id"), primary_key=True),
        sa.Column("schedule_id", sa.String(36), nullable=False),
        sa.Column("step_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("command_id", sa.String(36), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Remove what upgrade added."""
    op.drop_table("scheduler_lease")
    op.drop_table("schedule_progress")
    op.drop_table("schedules")
