"""The registry as the first releases made it with `create_all`: tenants and devices.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tenants and devices tables."""
    op.create_table(
        "tenants",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("ipv6_prefixes", sa.Text(), nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(63), primary_key=True),
        sa.Column("tenant", sa.String(32), sa.ForeignKey("tenants.code"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("ipv6_address", sa.String(45), nullable=True),
        sa.Column("interval_s", sa.Float(), nullable=True),
        sa.Column("extra_kinds", sa.Text(), nullable=False),
        sa.Column("firmware", sa.String(100), nullable=True),
        sa.Column("installed_on", sa.Date(), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("observation_goal", sa.Text(), nullable=True),
        sa.Column("legal_ground", sa.Text(), nullable=True),
        sa.Column("personal_data", sa.Boolean(), nullable=False),
        sa.Column("active_until", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
    )
    op.create_index("ix_devices_tenant", "devices", ["tenant"])
    op.create_index("ix_devices_kind", "devices", ["kind"])
    op.create_index("ix_devices_revision", "devices", ["revision"])


def downgrade() -> None:
    """Drop everything."""
    op.drop_table("devices")
    op.drop_table("tenants")
