"""Secrets and services at rest: InfluxDB wants logins, each with only the rights it needs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lantaarn.influx_users import InfluxLogin, ensure_influx_schema, ensure_influx_users
from lantaarn.localstack import Influx, private_influx
from lantaarn.settings import Settings
from tests.conftest import _SERVICES, require_program
from timeseries import Retention

ADMIN = InfluxLogin("lantaarn-admin", "admin-secret")
WRITER = InfluxLogin("lantaarn-ingest", "writer-secret")
READER = InfluxLogin("lantaarn-api", "reader-secret")


@pytest.fixture
def secured_influx(tmp_path: Path) -> Iterator[Influx]:
    """InfluxDB with authentication on, its admin, write and read logins and the schema."""
    require_program("influxd", "influxdb")
    database = private_influx(tmp_path / "influxdb", auth_enabled=True)
    _SERVICES.append(database.service)
    try:
        ensure_influx_users(database.url, "lantaarn", ADMIN, WRITER, READER)
        ensure_influx_users(database.url, "lantaarn", ADMIN, WRITER, READER)  # again: no harm
        asyncio.run(ensure_influx_schema(database.url, "lantaarn", ADMIN, Retention()))
        yield database
    finally:
        database.stop()
        _SERVICES.remove(database.service)


def _query(url: str, q: str, login: InfluxLogin | None) -> httpx.Response:
    auth = (login.username, login.password) if login else None
    return httpx.post(f"{url}/query", data={"q": q, "db": "lantaarn"}, auth=auth, timeout=10)


def _write(url: str, login: InfluxLogin | None) -> httpx.Response:
    auth = (login.username, login.password) if login else None
    return httpx.post(
        f"{url}/write", params={"db": "lantaarn"}, content=b"noise,tenant=t la=50", auth=auth
    )


def test_influx_refuses_anyone_without_a_login(secured_influx: Influx) -> None:
    assert _query(secured_influx.url, "SHOW DATABASES", None).status_code == 401
    assert _write(secured_influx.url, None).status_code == 401
    assert _query(secured_influx.url, "DROP DATABASE lantaarn", None).status_code == 401
    wrong = InfluxLogin(WRITER.username, "guess")
    assert _write(secured_influx.url, wrong).status_code == 401


def test_the_write_and_read_logins_have_only_their_rights(secured_influx: Influx) -> None:
    url = secured_influx.url
    assert _write(url, WRITER).status_code == 204
    assert "results" in _query(url, "SELECT * FROM noise", WRITER).json()  # rollups read raw
    assert _write(url, READER).status_code == 403
    read = _query(url, "SELECT * FROM noise", READER).json()
    assert read["results"][0]["series"][0]["values"]
    for login in (WRITER, READER):
        for statement in ("DROP DATABASE lantaarn", "CREATE USER x WITH PASSWORD 'y'",
                          "CREATE DATABASE other"):  # fmt: skip
            answer = _query(url, statement, login)
            assert answer.status_code == 403 or "error" in answer.text, (login, statement)


def test_the_api_reads_with_the_read_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANTAARN_INFLUX__USERNAME", WRITER.username)
    monkeypatch.setenv("LANTAARN_INFLUX__PASSWORD", WRITER.password)
    monkeypatch.setenv("LANTAARN_INFLUX__READ_USERNAME", READER.username)
    monkeypatch.setenv("LANTAARN_INFLUX__READ_PASSWORD", READER.password)
    settings = Settings()
    assert settings.influx_config().username == WRITER.username
    assert settings.influx_read_config().username == READER.username
