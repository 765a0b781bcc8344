"""Broker logins of devices, a change counter for cheap fingerprints, a location index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the password hash column, the registry_state row and the location index."""
    with op.batch_alter_table("devices") as batch:
        # The Mosquitto-format PBKDF2 hash, so `broker-config` can write it without the password.
        batch.add_column(sa.Column("broker_password_hash", sa.String(300), nullable=True))
    op.create_index("ix_devices_location", "devices", ["longitude", "latitude"])
    # One row, updated in every writing transaction: its row lock orders concurrent writers,
    # so the revision strictly grows even with several API replicas on one PostgreSQL.
    state = op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("device_count", sa.BigInteger(), nullable=False),
    )
    bind = op.get_bind()
    top, count = bind.execute(
        sa.text("SELECT COALESCE(MAX(revision), 0), COUNT(*) FROM devices")
    ).one()
    op.bulk_insert(state, [{"id": 1, "revision": int(top), "device_count": int(count)}])


def downgrade() -> None:
    """Remove what upgrade added."""
    op.drop_table("registry_state")
    op.drop_index("ix_devices_location", "devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("broker_password_hash")
