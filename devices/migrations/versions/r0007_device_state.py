"""Each device's last reading and status (device_state), readings and rejections per tenant and
minute (tenant_minutes), and an index for one tenant's devices in id order.

Revision ID: l0007
Revises: a0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "l0007"
down_revision = "a0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the device-state tables (see devices/registry/device_state.py)."""
    op.create_table(
        "device_state",
        sa.Column("device_id", sa.String(63), primary_key=True),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("last_ns", sa.BigInteger(), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("status", sa.String(8), nullable=True),
        sa.Column("status_ns", sa.BigInteger(), nullable=True),
        sa.Column("changed_ns", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_device_state_tenant_changed", "device_state", ["tenant", "changed_ns"])
    op.create_index("ix_device_state_changed", "device_state", ["changed_ns"])
    op.create_table(
        "tenant_minutes",
        sa.Column("tenant", sa.String(32), primary_key=True),
        sa.Column("minute_ns", sa.BigInteger(), primary_key=True),
        sa.Column("readings", sa.BigInteger(), nullable=False),
        sa.Column("rejections", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_devices_tenant_id", "devices", ["tenant", "device_id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_devices_tenant_id", "devices")
    op.drop_table("tenant_minutes")
    op.drop_index("ix_device_state_changed", "device_state")
    op.drop_index("ix_device_state_tenant_changed", "device_state")
    op.drop_table("device_state")
