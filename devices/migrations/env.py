"""Alembic environment: migrates the connection `Registry.open()` hands over.

The registry runs migrations itself, inside its own transaction (and, on PostgreSQL, under an
advisory lock), so this environment never builds an engine or reads a URL of its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise TypeError("run the registry's migrations through devices.Registry.open()")
_migrate(_connection)
