"""The device-state change indexes widened by the device id: (tenant, stamp, id) and (stamp, id),
the order a reader of changes reads them in, so that its next batch is an index range read in
order, without sorting the rows of one stamp (a worker's flush gives all its rows one stamp).

Revision ID: f0010
Revises: e0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "f0010"
down_revision = "e0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Make both indexes again, each with `device_id` last."""
    op.drop_index("ix_device_state_tenant_changed", table_name="device_state")
    op.drop_index("ix_device_state_changed", table_name="device_state")
    op.create_index(
        "ix_device_state_tenant_changed", "device_state", ["tenant", "changed_ns", "device_id"]
    )
    op.create_index("ix_device_state_changed", "device_state", ["changed_ns", "device_id"])


def downgrade() -> None:
    """Back to the stamp alone."""
    op.drop_index("ix_device_state_tenant_changed", table_name="device_state")
    op.drop_index("ix_device_state_changed", table_name="device_state")
    op.create_index("ix_device_state_tenant_changed", "device_state", ["tenant", "changed_ns"])
    op.create_index("ix_device_state_changed", "device_state", ["changed_ns"])
