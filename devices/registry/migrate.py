"""Bringing the registry's schema up to date with Alembic (the revisions in devices/migrations)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same for every process migrating one database.
_MIGRATION_LOCK: Final = 0x6C616E74


def migrate(connection: Connection) -> None:
    """Bring the registry's schema on `connection` to the newest revision (in its transaction)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    names = set(inspect(connection).get_table_names())
    if "tenants" in names and "alembic_version" not in names:
        # Made by create_all before we had migrations: that layout is revision 0001.
        log.info("registry predates migrations; marking it as revision 0001")
        command.stamp(config, "0001")
    command.upgrade(config, "head")


def upgrade(engine: Engine) -> None:
    """Migrate the database to the newest revision in one transaction; on PostgreSQL under an
    advisory lock, since several replicas may start at once: one migrates, the others wait."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        migrate(connection)
