"""Commands to devices, their state changes (the audit trail) and group commands.

Revision ID: c0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create commands, command_events and command_groups with the indexes their queries use."""
    op.create_table(
        "command_groups",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenants", sa.Text(), nullable=False),
        sa.Column("selector", sa.Text(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("issued_by", sa.String(64), nullable=True),
        sa.Column("issued_role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_command_groups_created_at", "command_groups", ["created_at"])
    op.create_table(
        "commands",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("group_id", sa.String(36), nullable=True),
        sa.Column("tenant", sa.String(32), nullable=False),
        # Devices are never deleted (only retired), so a command's device always exists.
        sa.Column("device_id", sa.String(63), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("issued_by", sa.String(64), nullable=True),
        sa.Column("issued_role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_commands_group_state", "commands", ["group_id", "state"])
    op.create_index("ix_commands_device_created", "commands", ["device_id", "created_at"])
    op.create_index("ix_commands_tenant_created", "commands", ["tenant", "created_at"])
    op.create_index("ix_commands_created", "commands", ["created_at", "id"])
    # The outbox and the expiry sweep look for open commands by deadline.
    op.create_index("ix_commands_state_expires", "commands", ["state", "expires_at"])
    op.create_table(
        "command_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "command_id",
            sa.String(36),
            sa.ForeignKey("commands.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_command_events_command_id", "command_events", ["command_id"])


def downgrade() -> None:
    """Remove what upgrade added."""
    op.drop_table("command_events")
    op.drop_table("commands")
    op.drop_table("command_groups")
