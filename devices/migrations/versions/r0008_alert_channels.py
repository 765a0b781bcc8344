"""The tenants' own notification channels; outbox channel names long enough to name them.

Revision ID: a0008
Revises: a0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0008"
down_revision = "l0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `alert_channels`; widen `alert_deliveries.channel` to 64 characters."""
    op.create_table(
        "alert_channels",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(32), sa.ForeignKey("tenants.code"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_alert_channels_tenant", "alert_channels", ["tenant"])
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.alter_column(
            "channel", existing_type=sa.String(16), type_=sa.String(64), existing_nullable=False
        )


def downgrade() -> None:
    """Drop the tenants' channels and their deliveries."""
    op.execute("DELETE FROM alert_deliveries WHERE channel LIKE '%:%'")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.alter_column(
            "channel", existing_type=sa.String(64), type_=sa.String(16), existing_nullable=False
        )
    op.drop_index("ix_alert_channels_tenant", table_name="alert_channels")
    op.drop_table("alert_channels")
