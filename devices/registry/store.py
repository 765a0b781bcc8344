"""The registry's database as the parts of the registry share it: connections, transactions
and the revision every writing transaction moves.

Every writing transaction first bumps the one `registry_state` row: that orders concurrent
writers (its row lock) and gives readers a cheap fingerprint of the whole registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from devices.registry.engine import connect
from devices.registry.migrate import upgrade
from devices.registry.rows import StateRow


class Database:
    """One engine on the registry's database; a context manager.

    `open` connects and brings the schema up to date (`_prepare`); `_begin` gives a connection
    in a transaction. The registry's parts and the stores beside it (commands, schedules, API
    keys) are built on it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _prepare(self, engine: Engine) -> None:
        """What opening does before the first use: migrate the schema to the newest revision."""
        upgrade(engine)

    def open(self) -> None:
        """Connect and prepare the schema."""
        engine = connect(self.url)
        try:
            self._prepare(engine)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine

    def close(self) -> None:
        """Release the connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed when the block ends without an error."""
        if self._engine is None:
            raise RuntimeError(f"the {type(self).__name__} is not open")
        with self._engine.begin() as conn:
            yield conn


class Store(Database):
    """An open connection to the registry's database; a context manager.

    The parts of the registry (tenants, devices, broker logins, ...) are classes on this base.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._sessions: sessionmaker[Session] | None = None

    def open(self) -> None:
        """Connect and migrate the schema to the newest revision."""
        super().open()
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the connections."""
        super().close()
        self._sessions = None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session in a transaction, committed when the block ends without an error."""
        if self._sessions is None:
            raise RuntimeError("the registry is not open")
        with self._sessions.begin() as session:
            yield session

    @staticmethod
    def _bump(session: Session) -> int:
        """Take the writers' lock (the state row) and return this transaction's revision."""
        session.execute(
            update(StateRow).where(StateRow.id == 1).values(revision=StateRow.revision + 1)
        )
        return int(session.scalars(select(StateRow.revision).where(StateRow.id == 1)).one())

    @staticmethod
    def _count(session: Session, delta: int) -> None:
        """Change the device count of the state row by `delta`."""
        session.execute(
            update(StateRow)
            .where(StateRow.id == 1)
            .values(device_count=StateRow.device_count + delta)
        )

    def ping(self) -> None:
        """Raise when the database does not answer."""
        with self._session() as session:
            session.execute(select(1))

    def revision(self) -> tuple[int, int]:
        """A cheap fingerprint of the registry: (revision, device count); any change moves it."""
        with self._session() as session:
            row = session.execute(
                select(StateRow.revision, StateRow.device_count).where(StateRow.id == 1)
            ).one_or_none()
            return (0, 0) if row is None else (int(row[0]), int(row[1]))
