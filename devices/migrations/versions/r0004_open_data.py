"""Open-data publications: per tenant, the kinds and devices anyone may read, and their licence.

Revision ID: o0004
Revises: c0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "o0004"
down_revision = "c0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create open_data, one row per publishing tenant."""
    op.create_table(
        "open_data",
        sa.Column("tenant", sa.String(32), sa.ForeignKey("tenants.code"), primary_key=True),
        sa.Column("licence", sa.String(16), nullable=False),
        sa.Column("attribution", sa.String(300), nullable=False),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("devices", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop open_data."""
    op.drop_table("open_data")
