"""Fixtures: registries on SQLite (in tmp) and on the local PostgreSQL (a schema per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from devices import Registry, Tenant
from tests.conftest import IN_CI

POSTGRES_URL = os.environ.get(
    "LANTAARN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
AMSTERDAM = Tenant("GM0363", "Amsterdam", ("2001:db8:363::/48",))
UTRECHT = Tenant("GM0344", "Utrecht", ("2001:db8:344::/48", "fd00:344::/32"))


def _postgres_schema() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL; its URL sets the search path there."""
    engine = create_engine(POSTGRES_URL)
    schema = f"lantaarn_test_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        engine.dispose()
        message = f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc.orig}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty registry database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    else:
        yield from _postgres_schema()


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    """An open registry with the tenants Amsterdam (GM0363) and Utrecht (GM0344)."""
    with Registry(registry_url) as opened:
        opened.add_tenant(AMSTERDAM)
        opened.add_tenant(UTRECHT)
        yield opened
