"""The device-state change indexes hold the state a change feed reads (newest reading's time,
last will and its time) beside the tenant, stamp and id: a feed's batch is read from the index
alone, a few neighbouring pages at its end, instead of one table page per changed device (each
just rewritten by a worker, so never in a reader's page cache). The values (`metrics`) stay out:
a feed reads them by id for the few devices its streams show.

Revision ID: g0011
Revises: f0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "g0011"
down_revision = "f0010"
branch_labels = None
depends_on = None

_STATE = ["last_ns", "status", "status_ns"]


def _make(tenant_columns: list[str], columns: list[str]) -> None:
    op.drop_index("ix_device_state_tenant_changed", table_name="device_state")
    op.drop_index("ix_device_state_changed", table_name="device_state")
    op.create_index(
        "ix_device_state_tenant_changed",
        "device_state",
        ["tenant", "changed_ns", "device_id", *tenant_columns],
    )
    op.create_index(
        "ix_device_state_changed", "device_state", ["changed_ns", "device_id", *columns]
    )


def upgrade() -> None:
    """Make both indexes again, with the state columns last."""
    _make(_STATE, _STATE)


def downgrade() -> None:
    """Back to (tenant, stamp, id) and (stamp, id)."""
    _make([], [])
