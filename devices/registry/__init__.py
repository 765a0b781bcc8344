"""The registry of tenants and devices, stored through SQLAlchemy (SQLite or PostgreSQL).

One module per part, each a class on the shared `Store` (connections, transactions, the
revision): tenants, devices, broker logins. `Registry` is all of them over one database. The
schema is Alembic's (devices/migrations); `Registry.open()` brings any database up to date.

A new part (schedules, command history, alert rules) is a module of its own here: its rows on
`rows.Base`, a migration in devices/migrations, a class on `Store`, and a base of `Registry`.
"""

from __future__ import annotations

from devices.registry.alert_channels import AlertChannels
from devices.registry.alerts import Alerts
from devices.registry.device_state import (
    SILENT_AFTER_INTERVALS,
    DevicePositions,
    DeviceState,
    DeviceStates,
    LiveStatus,
    Position,
    ReadingUpdate,
    StateChange,
    StateRecord,
    StatusCount,
    StatusRow,
    StatusUpdate,
    live_status,
)
from devices.registry.devices import DeviceChanges, Devices, Status
from devices.registry.engine import connect
from devices.registry.logins import BrokerLogins
from devices.registry.migrate import MIGRATIONS, migrate
from devices.registry.opendata import OpenDataPublications
from devices.registry.rules import (
    UPDATABLE,
    device_problems,
    tenant_problems,
    validate_device,
    validate_tenant,
)
from devices.registry.store import Store
from devices.registry.tenants import Tenants


class Registry(
    Tenants, Devices, BrokerLogins, OpenDataPublications, Alerts, AlertChannels, DeviceStates
):
    """Tenants, devices, their broker logins, the tenants' open data, alerting and each
    device's last state in a relational database; a context manager."""


__all__ = [
    "MIGRATIONS",
    "SILENT_AFTER_INTERVALS",
    "UPDATABLE",
    "AlertChannels",
    "Alerts",
    "BrokerLogins",
    "DeviceChanges",
    "DevicePositions",
    "DeviceState",
    "DeviceStates",
    "Devices",
    "LiveStatus",
    "OpenDataPublications",
    "Position",
    "ReadingUpdate",
    "Registry",
    "StateChange",
    "StateRecord",
    "Status",
    "StatusCount",
    "StatusRow",
    "StatusUpdate",
    "Store",
    "Tenants",
    "connect",
    "device_problems",
    "live_status",
    "migrate",
    "tenant_problems",
    "validate_device",
    "validate_tenant",
]
