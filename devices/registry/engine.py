"""The one way to reach the registry's database: an SQLAlchemy engine for its URL."""

from __future__ import annotations

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine


def connect(url: str) -> Engine:
    """An engine for the registry's database; SQLite gets WAL, foreign keys and a busy wait
    (the API, workers and commands open the same file at once). A server's connections are
    tested before each use (a restarted PostgreSQL drops them); a file's cannot go stale, and
    testing them was a query more per use."""
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine
