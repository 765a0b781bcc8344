"""The device-state clock: one row whose lock orders the writers of device_state, so that the
change stamps they give rows increase in the order the writers commit (see
devices/registry/device_state.py).

Revision ID: e0009
Revises: a0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0009"
down_revision = "a0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `device_state_clock` with its one row, at the newest stamp already given."""
    op.create_table(
        "device_state_clock",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("stamp_ns", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO device_state_clock (id, stamp_ns) "
        "SELECT 1, COALESCE(MAX(changed_ns), 0) FROM device_state"
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("device_state_clock")
