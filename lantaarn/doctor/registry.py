"""The device registry: reachable, and its schema at the newest migration."""

from __future__ import annotations

from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

import devices.migrations
from lantaarn.doctor.findings import Finding, Status


def _hidden(url: str) -> str:
    """The URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{tail}"


def check_migrations(url: str) -> list[Finding]:
    """Compare the database's Alembic revision with the newest one this code ships."""
    check = "registry: migrations"
    script = ScriptDirectory(str(Path(devices.migrations.__file__).parent))
    heads = set(script.get_heads())
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as exc:
        return [
            Finding(
                "registry: reachable",
                Status.FAIL,
                f"cannot open {_hidden(url)}: {type(exc).__name__}",
                "check LANTAARN_REGISTRY_URL and that the database server runs",
            )
        ]
    finally:
        engine.dispose()
    if current == heads:
        return [Finding(check, Status.OK, f"at the newest revision ({', '.join(sorted(heads))})")]
    have = ", ".join(sorted(current)) or "none"
    return [
        Finding(
            check,
            Status.FAIL,
            f"the registry is at revision {have}; this version of lantaarn needs "
            f"{', '.join(sorted(heads))}",
            "start the API once (`systemctl restart lantaarn-api`): it migrates on start",
        )
    ]
